"""The release and grading of the exercises, by nbgrader itself.

- nbgrader's generate_assignment accepts every chapter (cell metadata, grade ids, locked cells,
  checksums) and takes out answers, hidden tests and outputs;
- the instructor version autograded by nbgrader gets full marks; a submission with wrong
  answers loses exactly the points of those exercises, also where only a hidden test or a
  tampered (locked) test cell is involved; feedback is generated;
- the student release runs, failing only where the student has to write something;
- plausible wrong answers fail each graded cell (run without a kernel, on the chapters' own cells).

Autograded here: two from-scratch chapters (02, the factored convolution; 05, the Hoyer penalty
and its gradient) and 07-09, which load committed runs in a few seconds; 01, 03, 04 and 06 are
released and their graded cells checked against wrong answers, but not autograded (time).
"""
import ast
import contextlib
import io
import re
import shutil
import warnings

import nbformat
import pytest
from nbclient import NotebookClient

from dprp_lib.course import release
from dprp_lib.course.build import chapters
from conftest import require_mirror
from test_notebooks import ROOT

GRADED = [p for p in chapters() if release.graded_cells(nbformat.read(p, as_version=4))]
AUTOGRADED = ["02_svd_layers", "05_sparsity", "07_ablations", "08_resnet20_cifar10", "09_results_vs_paper"]
SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n(.*?)^[ \t]*### END SOLUTION[ \t]*\n?", re.M | re.S)


def meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def exercises(nb):
    """(answer cell, graded test cell) of each code exercise, in order."""
    pairs = []
    for i, cell in enumerate(nb.cells):
        if meta(cell).get("solution") and cell.cell_type == "code":
            test = next(c for c in nb.cells[i + 1:] if meta(c).get("grade") and c.cell_type == "code")
            pairs.append((cell, test))
    return pairs


def with_body(source: str, body: str) -> str:
    """`source` (an instructor's answer cell) with its solution region replaced by `body`."""
    indent = lambda m: "".join(m.group(1) + line + "\n" for line in body.splitlines())
    replaced = SOLUTION.sub(indent, source)
    assert replaced != source
    return replaced


def edited(source: str, wrong) -> str:
    """The answer cell with a wrong answer: a body for its one solution region, or (old, new), an
    edit of the instructor's answer where a cell holds several regions (a class's methods)."""
    if isinstance(wrong, str):
        return with_body(source, wrong)
    old, new = wrong
    assert old in source, old
    return source.replace(old, new)


# Plausible wrong answers to each exercise: every one must fail its graded cell.
H07 = "n = len(d)\nmean = sum(d) / n\n"
SD07 = "sd = (sum((x - mean) ** 2 for x in d) / (n - 1)) ** 0.5\n"
CUM01 = "cumulative = torch.cumsum(e, 0)\n"
# chapter 06: the cut, the step and the loop, each wrong in one way
CUT06_RULE = ("e = layer.s.detach().double().square().cumsum(0)\n"
              "k = max(1, min(int((e < (1 - energy) * e[-1]).sum()) + 1, layer.rank))\n")
CUT06_SLICE = ("for p in (layer.U, layer.s, layer.V):\n    p.data = p.data[..., :k].clone()\n"
               "    state = optimizer.state.get(p, {})\n    if state.get('momentum_buffer') is not None:\n"
               "        state['momentum_buffer'] = state['momentum_buffer'][..., :k].clone()\nreturn k")
CE06 = "ce = F.cross_entropy(model(x), y)\n"
PEN06 = ("penalty = sum(weights['orth'] * orth_penalty(m) + weights['sort'] * sort_penalty(m) "
         "+ weights['sparse'] * sparse_penalty(m) for m in factored_layers(model))\n")
STEP06_TAIL = "optimizer.zero_grad()\n(ce + penalty).backward()\noptimizer.step()\nreturn ce.item()"
TRAIN06 = ("optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)\nhistory = []\n"
           "for epoch in range(1, epochs + 1):\n"
           "    losses = [my_step(model, x, y, optimizer, weights) for x, y in batches]\n"
           "    if epoch in cut_after:\n        for layer in factored_layers(model):\n"
           "                my_cut(layer, optimizer, energy)\n"
           "    history.append({'epoch': epoch, 'loss': sum(losses) / len(losses), "
           "\"rank\": sum(m.rank for m in factored_layers(model))})\nreturn history")
WRONG = {
    "energy_rule": {
        "the library's rank_for_energy": "from dprp_lib.method.lowrank import rank_for_energy\nreturn rank_for_energy(s, keep)",
        "the library's energy_rank": "return dprp.energy_rank(torch.sort(s.abs(), descending=True).values, 1 - keep)",
        "dropped abs": "e = torch.sort(s, descending=True).values.double().square()\n" + CUM01
                       + "return min(int((cumulative < keep * cumulative[-1]).sum()) + 1, len(s))",
        "off by one (no + 1)": "e = torch.sort(s.abs(), descending=True).values.double().square()\n" + CUM01
                               + "return min(int((cumulative < keep * cumulative[-1]).sum()), len(s))",
        "<= (strictly more than keep)": "e = torch.sort(s.abs(), descending=True).values.double().square()\n" + CUM01
                                        + "return min(int((cumulative <= keep * cumulative[-1]).sum()) + 1, len(s))",
        "no sort": "e = s.abs().double().square()\n" + CUM01
                   + "return min(int((cumulative < keep * cumulative[-1]).sum()) + 1, len(s))",
        "ascending sort": "e = torch.sort(s.abs()).values.double().square()\n" + CUM01
                          + "return min(int((cumulative < keep * cumulative[-1]).sum()) + 1, len(s))",
        "|s| for the energy": "e = torch.sort(s.abs(), descending=True).values.double()\n" + CUM01
                              + "return min(int((cumulative < keep * cumulative[-1]).sum()) + 1, len(s))",
        "keep read as epsilon": "e = torch.sort(s.abs(), descending=True).values.double().square()\n" + CUM01
                                + "return min(int((cumulative < (1 - keep) * cumulative[-1]).sum()) + 1, len(s))",
        "keep ignored (0.9)": "e = torch.sort(s.abs(), descending=True).values.double().square()\n" + CUM01
                              + "return min(int((cumulative < 0.9 * cumulative[-1]).sum()) + 1, len(s))",
        "keep = 1 -> every direction": "if keep == 1:\n    return len(s)\n"
                                       "e = torch.sort(s.abs(), descending=True).values.double().square()\n" + CUM01
                                       + "return min(int((cumulative < keep * cumulative[-1]).sum()) + 1, len(s))",
        "largest k below keep": "e = torch.sort(s.abs(), descending=True).values.double().square()\n" + CUM01
                                + "return max(int((cumulative <= keep * cumulative[-1]).sum()), 1)",
        "values above keep x max": "return int((s.abs() >= keep * s.abs().max()).sum())",
        "constant len(s)": "return len(s)",
        "constant 1": "return 1",
    },
    "interval": {
        "the library's mean_interval": "from dprp_lib.engine.stats import mean_interval\nreturn mean_interval(d)",
        "population sd (/ n)": H07 + "sd = (sum((x - mean) ** 2 for x in d) / n) ** 0.5\n"
                               "half = T95[n - 1] * sd / n ** 0.5\nreturn mean, mean - half, mean + half",
        "off by one: t with n degrees of freedom": H07 + SD07 + "half = T95.get(n, 2.571) * sd / n ** 0.5\n"
                                                   "return mean, mean - half, mean + half",
        "z = 1.96 for t": H07 + SD07 + "half = 1.96 * sd / n ** 0.5\nreturn mean, mean - half, mean + half",
        "sd / n": H07 + SD07 + "half = T95[n - 1] * sd / n\nreturn mean, mean - half, mean + half",
        "no sqrt(n)": H07 + SD07 + "half = T95[n - 1] * sd\nreturn mean, mean - half, mean + half",
        "variance for sd": H07 + "sd = sum((x - mean) ** 2 for x in d) / (n - 1)\n"
                           "half = T95[n - 1] * sd / n ** 0.5\nreturn mean, mean - half, mean + half",
        "(low, mean, high)": H07 + SD07 + "half = T95[n - 1] * sd / n ** 0.5\nreturn mean - half, mean, mean + half",
        "mean of |d|": "n = len(d)\nmean = sum(abs(x) for x in d) / n\n" + SD07
                       + "half = T95[n - 1] * sd / n ** 0.5\nreturn mean, mean - half, mean + half",
        "t fixed at t_1": H07 + SD07 + "half = T95[1] * sd / n ** 0.5\nreturn mean, mean - half, mean + half",
        "median for the centre": "n = len(d)\nmean = sorted(d)[n // 2] if n % 2 else sum(sorted(d)[n // 2 - 1:n // 2 + 1]) / 2\n"
                                 + SD07 + "half = T95[n - 1] * sd / n ** 0.5\nreturn mean, mean - half, mean + half",
        "mean over n - 1": "n = len(d)\nmean = sum(d) / (n - 1)\n" + SD07
                           + "half = T95[n - 1] * sd / n ** 0.5\nreturn mean, mean - half, mean + half",
        "one-sided": H07 + SD07 + "half = T95[n - 1] * sd / n ** 0.5\nreturn mean, mean, mean + half",
        "min-max range": "return sum(d) / len(d), min(d), max(d)",
        "constant": "return 0.0, -1.0, 1.0",
    },
    "conv_macs": {
        "the library's count_macs": "from torch import nn\nreturn dprp.count_macs(nn.Conv2d(c_in, c_out, k, padding=k // 2, "
                                    "bias=False), (1, c_in, h_out, w_out))",
        "k not squared": "return c_in * k * c_out * h_out * w_out",
        "h_out twice (square output)": "return c_in * k * k * c_out * h_out * h_out",
        "a bias counted": "return (c_in * k * k + 1) * c_out * h_out * w_out",
        "c_out ignored": "return c_in * k * k * h_out * w_out",
        "c_in for c_out": "return c_in * c_in * k * k * h_out * w_out",
        "one position (the parameters)": "return c_in * k * k * c_out",
        "FLOPs (2 a MAC)": "return 2 * c_in * k * k * c_out * h_out * w_out",
        "off by one positions": "return c_in * k * k * c_out * (h_out + 1) * (w_out + 1)",
        "(k + 1)² window": "return c_in * (k + 1) ** 2 * c_out * h_out * w_out",
        "constant": "return 0",
    },
    "verdict": {
        "high <= bound": 'if low >= bound:\n    return "meets"\nif high <= bound:\n    return "misses"\nreturn "not decided"',
        "low > bound": 'if low > bound:\n    return "meets"\nif high < bound:\n    return "misses"\nreturn "not decided"',
        "both ends flipped": 'if low > bound:\n    return "meets"\nif high <= bound:\n    return "misses"\nreturn "not decided"',
        "meets on high": 'if high >= bound:\n    return "meets"\nif low < bound:\n    return "misses"\nreturn "not decided"',
        "bound ignored (0)": 'if low >= 0:\n    return "meets"\nif high < 0:\n    return "misses"\nreturn "not decided"',
        "the mean against the bound": 'return "meets" if (low + high) / 2 >= bound else "misses"',
        "labels swapped": 'if low >= bound:\n    return "misses"\nif high < bound:\n    return "meets"\nreturn "not decided"',
        "misses on low": 'if low >= bound:\n    return "meets"\nif low < bound:\n    return "misses"\nreturn "not decided"',
        "the width against the bound": 'return "meets" if high - low < abs(bound) else "not decided"',
        "constant": 'return "not decided"',
    },
    "cut": {
        "sorted before the rule": "e = layer.s.detach().abs().sort(descending=True).values.double().square().cumsum(0)\n"
                                  "k = max(1, min(int((e < (1 - energy) * e[-1]).sum()) + 1, layer.rank))\n" + CUT06_SLICE,
        "|s| for the energy": "e = layer.s.detach().abs().double().cumsum(0)\n"
                              "k = max(1, min(int((e < (1 - energy) * e[-1]).sum()) + 1, layer.rank))\n" + CUT06_SLICE,
        "off by one (no + 1)": "e = layer.s.detach().double().square().cumsum(0)\n"
                               "k = max(1, min(int((e < (1 - energy) * e[-1]).sum()), layer.rank))\n" + CUT06_SLICE,
        "<= (one direction too many)": "e = layer.s.detach().double().square().cumsum(0)\n"
                                       "k = max(1, min(int((e <= (1 - energy) * e[-1]).sum()) + 1, layer.rank))\n" + CUT06_SLICE,
        "energy read as the part kept": "e = layer.s.detach().double().square().cumsum(0)\n"
                                        "k = max(1, min(int((e < energy * e[-1]).sum()) + 1, layer.rank))\n" + CUT06_SLICE,
        "optimizer ignored": CUT06_RULE + "for p in (layer.U, layer.s, layer.V):\n    p.data = p.data[..., :k].clone()\nreturn k",
        "momentum reset to zero": CUT06_RULE + "for p in (layer.U, layer.s, layer.V):\n    p.data = p.data[..., :k].clone()\n"
                                  "    if optimizer.state.get(p, {}).get('momentum_buffer') is not None:\n"
                                  "        optimizer.state[p]['momentum_buffer'] = torch.zeros_like(p.data)\nreturn k",
        "new Parameters": CUT06_RULE + "for name in ('U', 's', 'V'):\n    p = getattr(layer, name)\n"
                          "    setattr(layer, name, nn.Parameter(p.data[..., :k].clone()))\nreturn k",
        "rows sliced (a missing transpose)": CUT06_RULE + CUT06_SLICE.replace("[..., :k]", "[:k]"),
        "the last k directions kept": CUT06_RULE + CUT06_SLICE.replace("[..., :k]", "[..., -k:]"),
        "energy ignored (nothing cut)": "k = layer.rank\n" + CUT06_SLICE,
    },
    "step": {
        "no zero_grad": CE06 + PEN06 + "(ce + penalty).backward()\noptimizer.step()\nreturn ce.item()",
        "returns the total loss": CE06 + PEN06 + "optimizer.zero_grad()\n(ce + penalty).backward()\noptimizer.step()\n"
                                  "return (ce + penalty).item()",
        "returns the tensor": CE06 + PEN06 + "optimizer.zero_grad()\n(ce + penalty).backward()\noptimizer.step()\nreturn ce",
        "penalties unweighted": CE06 + "penalty = sum(orth_penalty(m) + sort_penalty(m) + sparse_penalty(m) "
                                "for m in factored_layers(model))\n" + STEP06_TAIL,
        "sparsity left out": CE06 + "penalty = sum(weights['orth'] * orth_penalty(m) + weights['sort'] * sort_penalty(m) "
                             "for m in factored_layers(model))\n" + STEP06_TAIL,
        "orth and sort weights swapped": CE06 + "penalty = sum(weights['sort'] * orth_penalty(m) + weights['orth'] * sort_penalty(m)"
                                         " + weights['sparse'] * sparse_penalty(m) for m in factored_layers(model))\n" + STEP06_TAIL,
        "penalty on the first layer only": CE06 + "m = factored_layers(model)[0]\npenalty = weights['orth'] * orth_penalty(m) + "
                                           "weights['sort'] * sort_penalty(m) + weights['sparse'] * sparse_penalty(m)\n" + STEP06_TAIL,
        "one penalty at a time (elif)": CE06 + "penalty = 0\nfor m in factored_layers(model):\n"
                                        "    if weights['orth']:\n        penalty = penalty + weights['orth'] * orth_penalty(m)\n"
                                        "    elif weights['sort']:\n        penalty = penalty + weights['sort'] * sort_penalty(m)\n"
                                        "    elif weights['sparse']:\n        penalty = penalty + weights['sparse'] * sparse_penalty(m)\n"
                                        + STEP06_TAIL,
        "its own SGD (lr 0.05, momentum 0.9) for the one passed": CE06 + PEN06
            + "optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)\n" + STEP06_TAIL,
        "the first and last layers only": CE06 + "layers = factored_layers(model)\n"
                                          "penalty = sum(weights['orth'] * orth_penalty(m) + weights['sort'] * sort_penalty(m) "
                                          "+ weights['sparse'] * sparse_penalty(m) for m in {layers[0], layers[-1]})\n" + STEP06_TAIL,
    },
    "train": {
        "a cut after every epoch": TRAIN06.replace("if epoch in cut_after:", "if True:"),
        "no cut": TRAIN06.replace("if epoch in cut_after:", "if False:"),
        "a new optimizer each epoch (momentum lost)": TRAIN06.replace(
            "optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)\nhistory = []\nfor epoch in range(1, epochs + 1):\n",
            "history = []\nfor epoch in range(1, epochs + 1):\n    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)\n"),
        "the rank logged before the cut": TRAIN06.replace(
            "    if epoch in cut_after:", "    rank = sum(m.rank for m in factored_layers(model))\n    if epoch in cut_after:").replace(
            '"rank": sum(m.rank for m in factored_layers(model))}', '"rank": rank}'),
        "lr ignored (0.05)": TRAIN06.replace("lr=lr,", "lr=0.05,"),
        "the last batch's loss for the epoch's mean": TRAIN06.replace("sum(losses) / len(losses)", "losses[-1]"),
        "cut at the start of the epoch": TRAIN06.replace(
            "    losses = [my_step(model, x, y, optimizer, weights) for x, y in batches]\n", "").replace(
            "                my_cut(layer, optimizer, energy)\n",
            "                my_cut(layer, optimizer, energy)\n    losses = [my_step(model, x, y, optimizer, weights) for x, y in batches]\n"),
    },
}
# Chapters 02-05: the from-scratch penalties and the break-even rank.
EYE03 = "r = U.shape[-1]\neye = torch.eye(r, dtype=U.dtype)\n"
WRONG.update({
    "break_even": {
        "deployed ignored": "return m * n / (m + n + 1)",
        "branches swapped": "return m * n / (m + n + 1) if deployed else m * n / (m + n)",
        "integer division": "return m * n // (m + n) if deployed else m * n // (m + n + 1)",
        "s counted when deployed too": "return m * n / (m + n + 1) if deployed else m * n / (m + n + 2)",
        "half the smaller side": "return min(m, n) / 2",
    },
    "orthogonality": {
        "U Uᵀ for Uᵀ U": EYE03 + "return ((U @ U.T - torch.eye(U.shape[0], dtype=U.dtype)).square().sum()"
                                 " + (V @ V.T - torch.eye(V.shape[0], dtype=V.dtype)).square().sum()) / r ** 2",
        "divided by r, not r²": EYE03 + "return ((U.T @ U - eye).square().sum() + (V.T @ V - eye).square().sum()) / r",
        "norm not squared": EYE03 + "return ((U.T @ U - eye).norm() + (V.T @ V - eye).norm()) / r ** 2",
        "r taken as U's rows": "r = U.shape[0]\neye = torch.eye(U.shape[-1], dtype=U.dtype)\n"
                               "return ((U.T @ U - eye).square().sum() + (V.T @ V - eye).square().sum()) / r ** 2",
        "V's term forgotten": EYE03 + "return (U.T @ U - eye).square().sum() / r ** 2",
        "a constant": "return torch.tensor(0.0, dtype=U.dtype)",
    },
    "orthogonality_grad": {
        "2 U G (the factor 2 of one square only)": EYE03 + "return 2 * U @ (U.T @ U - eye) / r ** 2, 2 * V @ (V.T @ V - eye) / r ** 2",
        "1/r² dropped": EYE03 + "return 4 * U @ (U.T @ U - eye), 4 * V @ (V.T @ V - eye)",
        "U's gradient for both": EYE03 + "g = 4 * U @ (U.T @ U - eye) / r ** 2\nreturn g, g",
        "G without U": EYE03 + "return 4 * (U.T @ U - eye) / r ** 2, 4 * (V.T @ V - eye) / r ** 2",
    },
    "sorting": {
        "abs dropped": "a = s\nreturn (a[1:] - a[:-1]).clamp(min=0).sum()",
        "comparison flipped": "a = s.abs()\nreturn (a[:-1] - a[1:]).clamp(min=0).sum()",
        "mean for sum": "a = s.abs()\nreturn (a[1:] - a[:-1]).clamp(min=0).mean()",
        "max for sum": "a = s.abs()\nreturn (a[1:] - a[:-1]).clamp(min=0).max()",
        "no clamp": "a = s.abs()\nreturn (a[1:] - a[:-1]).sum()",
    },
    "sorting_grad": {
        "sign dropped": "a = s.abs()\nup = (a[1:] > a[:-1]).to(s.dtype)\ngrad = torch.zeros_like(s)\n"
                        "grad[1:] += up\ngrad[:-1] -= up\nreturn grad",
        "roles swapped": "a = s.abs()\nup = (a[1:] > a[:-1]).to(s.dtype)\ngrad = torch.zeros_like(s)\n"
                         "grad[1:] -= up\ngrad[:-1] += up\nreturn grad * torch.sign(s)",
        "ties push (>=)": "a = s.abs()\nup = (a[1:] >= a[:-1]).to(s.dtype)\ngrad = torch.zeros_like(s)\n"
                          "grad[1:] += up\ngrad[:-1] -= up\nreturn grad * torch.sign(s)",
        "only the larger value pushed": "a = s.abs()\nup = (a[1:] > a[:-1]).to(s.dtype)\ngrad = torch.zeros_like(s)\n"
                                        "grad[1:] += up\nreturn grad * torch.sign(s)",
    },
    "hoyer": {
        "abs dropped": "return s.sum() / s.square().sum().sqrt()",
        "divided by ‖s‖₂²": "return s.abs().sum() / s.square().sum()",
        "ratio inverted": "return s.square().sum().sqrt() / s.abs().sum()",
        "squared ratio": "return (s.abs().sum() / s.square().sum().sqrt()) ** 2",
    },
    "hoyer_grad": {
        "sign dropped": "l1, l2 = s.abs().sum(), s.square().sum().sqrt()\nreturn 1 / l2 - l1 * s / l2 ** 3",
        "‖s‖₂² in the second term": "l1, l2 = s.abs().sum(), s.square().sum().sqrt()\nreturn torch.sign(s) / l2 - l1 * s / l2 ** 2",
        "+ in the quotient rule": "l1, l2 = s.abs().sum(), s.square().sum().sqrt()\nreturn torch.sign(s) / l2 + l1 * s / l2 ** 3",
        "the gradient of ‖s‖₁ only": "return torch.sign(s) / s.square().sum().sqrt()",
    },
})
GD01 = "for _ in range(steps):\n    R = A - P @ Q.T\n"
WRONG["factorize"] = {
    "one SVD, no descent": "U, s, Vh = torch.linalg.svd(A, full_matrices=False)\nk = P.shape[1]\n"
                           "return U[:, :k] * s[:k], Vh[:k].T",
    "sequential: Q's step at the new P": GD01 + "    P = P + lr * R @ Q\n    Q = Q + lr * (A - P @ Q.T).T @ P\nreturn P, Q",
    "the gradient of ‖·‖² (a factor 2)": GD01 + "    P, Q = P + 2 * lr * R @ Q, Q + 2 * lr * R.T @ P\nreturn P, Q",
    "ascent (the sign flipped)": GD01 + "    P, Q = P - lr * R @ Q, Q - lr * R.T @ P\nreturn P, Q",
    "R for Rᵀ in Q's gradient (the missing transpose)": GD01 + "    P, Q = P + lr * R @ Q, Q + lr * R @ P\nreturn P, Q",
    "the gradient averaged over the entries (÷ m·n)": GD01 + "    P, Q = P + lr * R @ Q / R.numel(), Q + lr * R.T @ P / R.numel()\nreturn P, Q",
    "only P trained": GD01 + "    P = P + lr * R @ Q\nreturn P, Q",
    "lr ignored (0.01)": GD01 + "    P, Q = P + 0.01 * R @ Q, Q + 0.01 * R.T @ P\nreturn P, Q",
    "one step too many": "for _ in range(steps + 1):\n    R = A - P @ Q.T\n"
                         "    P, Q = P + lr * R @ Q, Q + lr * R.T @ P\nreturn P, Q",
    "one step too few": "for _ in range(1, steps):\n    R = A - P @ Q.T\n"
                        "    P, Q = P + lr * R @ Q, Q + lr * R.T @ P\nreturn P, Q",
    "in place (the caller's P and Q change)": GD01 + "    dP, dQ = R @ Q, R.T @ P\n    P += lr * dP\n    Q += lr * dQ\nreturn P, Q",
    "the residual not updated (R of the start)": "R = A - P @ Q.T\nfor _ in range(steps):\n"
                                                  "    P, Q = P + lr * R @ Q, Q + lr * R.T @ P\nreturn P, Q",
    "normalised steps": GD01 + "    dP, dQ = R @ Q, R.T @ P\n    P, Q = P + lr * dP / dP.norm(), Q + lr * dQ / dQ.norm()\nreturn P, Q",
}
WRONG["factored_conv"] = {
    "Vᵀ stored for V (the missing transpose)": ("Vh.T.to(dtype)", "Vh.to(dtype)"),
    "the SVD in float32": (".to(torch.float64).reshape(", ".reshape("),
    "stride and padding on the 1×1 stage too": ("second, self.bias)", "second, self.bias, self.stride, self.padding)"),
    "s left out of the second stage": ("second = (self.U * self.s)", "second = (self.U)"),
    "s left out of the weight": ("return ((self.U * self.s) @ self.V.T)", "return ((self.U) @ self.V.T)"),
    "the bias dropped": ("return F.conv2d(x, self.weight(), self.bias,", "return F.conv2d(x, self.weight(), None,"),
    "a new bias, not the conv's": ("bias = None if conv.bias is None else conv.bias.detach().clone()",
                                   "bias = None if conv.bias is None else torch.zeros_like(conv.bias)"),
}
# What each chapter's cells before the exercise put in the namespace that its graded cell uses.
PREAMBLE = {
    "energy_rule": "import torch\nimport dprp_lib as dprp\nfrom dprp_lib.method import lowrank\n"
                   "s_image = torch.linalg.svdvals(torch.rand(60, 50, generator=torch.Generator().manual_seed(0), "
                   "dtype=torch.float64))\n",
    "factorize": "import torch\n",
    "interval": "", "conv_macs": "import torch\nimport dprp_lib as dprp\n", "verdict": "",
}
EXERCISE_CHAPTER = {"factored_conv": "02_svd_layers", "break_even": "02_svd_layers", "orthogonality": "03_orthogonality",
                    "orthogonality_grad": "03_orthogonality", "sorting": "04_sorting", "sorting_grad": "04_sorting",
                    "hoyer": "05_sparsity", "hoyer_grad": "05_sparsity", "energy_rule": "01_svd_basics", "factorize": "01_svd_basics", "interval": "07_ablations", "conv_macs": "08_resnet20_cifar10",
                    "verdict": "09_results_vs_paper", "cut": "06_dynamic_rank_pruning", "step": "06_dynamic_rank_pruning",
                    "train": "06_dynamic_rank_pruning"}


def chapter06_context(grade_id: str) -> str:
    """Chapter 06 in smoke mode: its given pieces (the data included) and the instructor's answers
    to the exercises before `grade_id`, which the later graded cells call."""
    nb = nbformat.read(ROOT / "notebooks" / "06_dynamic_rank_pruning.ipynb", as_version=4)
    given = next(c.source for c in nb.cells if meta(c).get("grade_id") == "scratch_pieces")
    order = ["cut", "step", "train"]
    earlier = [a.source for a, _ in exercises(nb) if meta(a)["grade_id"] in order[:order.index(grade_id)]]
    return "\n".join(["import torch\nimport dprp_lib as dprp\nfrom dprp_lib.engine.data import load_dataset\n"
                      "from dprp_lib.engine.experiments import preset\nMODE, SEED, DATA_DIR = 'smoke', 0, None\n"
                      "base = preset(MODE)\n", given, *earlier])


PREAMBLE.update({g: chapter06_context for g in ("cut", "step", "train")})


# Every graded cell of 02-05 stands on its own (a gradient's checks against autograd of the
# penalty's definition, not of the student's penalty): imports are all it needs.
IMPORTS = ("import math\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
           "import dprp_lib as dprp\n")
PREAMBLE.update({g: IMPORTS for g in ("factored_conv", "break_even", "orthogonality", "orthogonality_grad", "sorting",
                                      "sorting_grad", "hoyer", "hoyer_grad")})


def grade_in_process(grade_id: str, body: str | None):
    """Run an exercise's answer cell (its instructor answer, or `body`) and graded cell; the error, or None."""
    nb = nbformat.read(ROOT / "notebooks" / f"{EXERCISE_CHAPTER[grade_id]}.ipynb", as_version=4)
    answer, test = next((a, t) for a, t in exercises(nb) if meta(a)["grade_id"] == grade_id)
    namespace = {}
    if callable(PREAMBLE[grade_id]):
        require_mirror()  # chapter 06's from-scratch loop trains on CIFAR-10 images
    preamble = PREAMBLE[grade_id]
    exec(preamble(grade_id) if callable(preamble) else preamble, namespace)
    exec(answer.source if body is None else edited(answer.source, body), namespace)
    stderr = io.StringIO()
    try:
        # nbgrader gives no points to a graded cell that writes to stderr, so a warning fails it here too
        with warnings.catch_warnings(), contextlib.redirect_stderr(stderr):
            warnings.simplefilter("error")
            exec(test.source, namespace)
    except Exception as e:  # noqa: BLE001 (a graded cell fails on any error)
        return e
    return AssertionError(f"the graded cell wrote to stderr: {stderr.getvalue()[:200]}") if stderr.getvalue() else None


@pytest.mark.parametrize("grade_id", list(WRONG))
def test_the_instructor_answer_passes_its_graded_cell(grade_id):
    assert grade_in_process(grade_id, None) is None


@pytest.mark.parametrize("grade_id,wrong", [(g, w) for g, ws in WRONG.items() for w in ws],
                         ids=lambda x: re.sub(r"\W+", "-", x))
def test_a_plausible_wrong_answer_fails_its_graded_cell(grade_id, wrong):
    assert grade_in_process(grade_id, WRONG[grade_id][wrong]) is not None, f"{wrong!r} passes {grade_id}"


def test_graded_exercises_exist_and_declare_points():
    assert GRADED, "no chapter holds a graded exercise"
    for path in GRADED:
        nb = nbformat.read(path, as_version=4)
        ids = [meta(c)["grade_id"] for c in nb.cells if meta(c)]
        assert len(ids) == len(set(ids)), f"{path.name}: grade ids repeat"
        for g in release.graded_cells(nb):
            assert g["points"] > 0 and g["grade_id"]
        for cell in nb.cells:
            if meta(cell).get("solution"):
                assert "### BEGIN SOLUTION" in cell.source and not meta(cell).get("locked"), path.name
            if meta(cell).get("grade") and cell.cell_type == "code":
                assert meta(cell).get("locked"), f"{path.name}: graded test cell {meta(cell)['grade_id']} is not locked"
            if meta(cell):
                assert meta(cell).get("schema_version") == 3


@pytest.mark.parametrize("path", GRADED, ids=lambda p: p.stem)
def test_instructor_version_passes_every_graded_cell(path):
    """The stored instructor outputs (which nbval re-checks) show every graded test cell passing."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if meta(cell).get("grade") and cell.cell_type == "code":
            assert cell.outputs and not any(o.get("output_type") == "error" for o in cell.outputs)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course directory in nbgrader's layout with every chapter released by generate_assignment."""
    root = tmp_path_factory.mktemp("course")
    released = release.generate(root)
    return root, {p.parent.name: p for p in released}


def test_generate_assignment_releases_every_chapter_without_answers_hidden_tests_or_outputs(course):
    root, released = course
    assert sorted(released) == sorted(p.stem for p in chapters())
    assert (root / "source" / "01_svd_basics" / "01_svd_basics.ipynb").resolve() == ROOT / "notebooks" / "01_svd_basics.ipynb"
    for name, path in released.items():
        instructor = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        student = nbformat.read(path, as_version=4)
        assert len(student.cells) == len(instructor.cells)
        for before, after in zip(instructor.cells, student.cells):
            for marker in ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"):
                assert marker not in after.source, (name, meta(before).get("grade_id"))
            if after.cell_type == "code":
                assert after.outputs == [] and after.execution_count is None
            if meta(before).get("solution"):
                stub = "raise NotImplementedError()" if before.cell_type == "code" else "YOUR ANSWER HERE"
                assert stub in after.source
            if meta(before).get("grade") or meta(before).get("locked"):
                assert meta(after)["checksum"] and (meta(after).get("locked") or meta(after).get("solution"))
            if meta(before).get("grade") and "### BEGIN HIDDEN TESTS" in before.source:
                visible = before.source.split("### BEGIN HIDDEN TESTS")[0]
                assert after.source.startswith(visible.rstrip())
        assert not any("my_" in c.source and "### BEGIN SOLUTION" in c.source for c in student.cells)


def test_dprp_release_writes_the_course_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(release, "ROOT", tmp_path)
    assert release.main(["--out", "release", "09_results_vs_paper"]) == 0
    assert (tmp_path / "release" / "09_results_vs_paper" / "09_results_vs_paper.ipynb").is_file()
    assert (tmp_path / "source" / "09_results_vs_paper" / "09_results_vs_paper.ipynb").is_symlink()
    with pytest.raises(SystemExit):
        release.main(["no_such_chapter"])


def test_nbgrader_config_points_nbgrader_at_the_repository():
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    assert config.CourseDirectory.root == str(ROOT) and config.CourseDirectory.course_id == "dprp"
    assert config.Execute.timeout >= 300


def submit(root, student: str, name: str, notebook) -> None:
    target = root / "submitted" / student / name / f"{name}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)


def answered(released, name: str, wrong: dict, tamper: bool = False):
    """The student release of chapter `name` with every exercise answered: the instructor's answer
    cell, or it edited by `wrong[grade_id]` (see `edited`: a body, or an (old, new) edit where a cell
    holds several solution regions); written answers filled in; with `tamper`, graded test cells emptied."""
    instructor = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    nb = nbformat.read(released[name], as_version=4)
    for cell, source in zip(nb.cells, instructor.cells):
        m = meta(cell)
        if m.get("solution") and cell.cell_type == "code":
            cell.source = edited(source.source, wrong[m["grade_id"]]) if m["grade_id"] in wrong else source.source
        elif m.get("solution"):
            cell.source = "Orthogonality: removing it costs accuracy at the same size; the others change the size."
        elif m.get("grade") and tamper:
            cell.source = "print('every check passes')"
    return nb


# One wrong answer per chapter, each losing its own exercise's points only: in 02 a factored
# convolution with V stored transposed (a class with several solution regions), in 05 the Hoyer
# penalty without abs (its gradient exercise keeps its points: graded against the definition),
# in 07 an interval with the population sd, in 09 a verdict caught by a hidden test only.
WRONG_SUBMISSION = {"02_svd_layers": {"factored_conv": WRONG["factored_conv"]["Vᵀ stored for V (the missing transpose)"]},
                    "05_sparsity": {"hoyer": WRONG["hoyer"]["abs dropped"]},
                    "07_ablations": {"interval": WRONG["interval"]["population sd (/ n)"]},
                    "09_results_vs_paper": {"verdict": WRONG["verdict"]["high <= bound"]}}


def auto_points(name: str) -> dict[str, float]:
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    return {g["grade_id"]: g["points"] for g in release.graded_cells(nb) if g["kind"] == "auto"}


def test_autograde_gives_the_instructor_version_full_marks_and_a_wrong_submission_loses_its_exercises(course):
    """The student submissions are executed by nbgrader. The instructor versions are graded on their
    stored outputs (nbgrader's --no-execute): nbval executes these same notebooks and fails on any
    output that differs, so executing them here again would only repeat that (about a minute)."""
    require_mirror()  # the chapters' committed quick runs are on the mirror
    root, released = course
    for name in AUTOGRADED:
        submit(root, "instructor", name, nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4))
        # one wrong answer in 02, 05, 07 and 09; in 08 the right answer with its locked test cell emptied
        submit(root, "student", name, answered(released, name, WRONG_SUBMISSION.get(name, {}),
                                               tamper=name == "08_resnet20_cifar10"))
    for name in AUTOGRADED:
        points = auto_points(name)
        manual = {g["grade_id"]: g["points"] for g in release.graded_cells(nbformat.read(ROOT / "notebooks" / f"{name}.ipynb",
                                                                                         as_version=4)) if g["kind"] == "manual"}
        full = release.autograde(root, name, "instructor", execute=False)
        assert full["max_score"] == sum(points.values()) + sum(manual.values())
        for grade_id, p in points.items():
            assert full["cells"][grade_id]["score"] == p, (name, grade_id, full["cells"][grade_id])
        for grade_id in manual:
            assert full["cells"][grade_id]["needs_manual_grade"], (name, grade_id)
        assert full["score"] == sum(points.values())

        got = release.autograde(root, name, "student")
        lost = {a + "_tests" for a in WRONG_SUBMISSION.get(name, {})}
        for grade_id, p in points.items():
            assert got["cells"][grade_id]["score"] == (0 if grade_id in lost else p), (name, grade_id, got["cells"][grade_id])
        assert got["score"] == sum(points.values()) - sum(points[g] for g in lost)

        html = release.feedback(root, name, "student")
        text = html.read_text()
        assert html.is_file() and name in text and "Score" in text
        if lost:
            assert "AssertionError" in text  # the failed graded cell's traceback is in the feedback


def test_written_answers_are_graded_by_hand_against_the_rubric(course):
    """Chapter 07's readings: the instructor version carries model answer and rubric; the student
    release an empty answer cell; a manual grade entered in the gradebook counts."""
    from nbgrader.api import Gradebook

    root, released = course
    instructor = nbformat.read(ROOT / "notebooks" / "07_ablations.ipynb", as_version=4)
    written = [c for c in instructor.cells if meta(c).get("solution") and c.cell_type == "markdown"]
    assert len(written) == 2 and all("**Rubric" in c.source and "**Model answer.**" in c.source for c in written)
    student = nbformat.read(released["07_ablations"], as_version=4)
    assert not any("Rubric" in c.source or "Model answer" in c.source for c in student.cells)
    # the 08 and 09 pair needs no kernel of its own here: reuse the autograde above, or run 07 alone
    if not (root / "autograded" / "student" / "07_ablations").exists():
        require_mirror()
        submit(root, "student", "07_ablations", answered(released, "07_ablations", WRONG_SUBMISSION["07_ablations"]))
        release.autograde(root, "07_ablations", "student")
    with Gradebook(release.course_config(root).CourseDirectory.db_url, release.COURSE_ID) as gb:
        for cell in written:
            grade = gb.find_grade(meta(cell)["grade_id"], "07_ablations", "07_ablations", "student")
            assert grade.needs_manual_grade and grade.max_score == meta(cell)["points"]
            grade.manual_score, grade.needs_manual_grade = 1, False  # what formgrader does with a score
        gb.db.commit()
    scores = release.scores(root, "07_ablations", "student")
    assert scores["score"] == 2 and not scores["needs_manual_grade"]  # two written answers at 1 point, the interval wrong


def answer_names(nb) -> set[str]:
    """The top-level names that an answer cell, a graded cell or a from-scratch cell defines: in
    the student release they exist only once the student has answered."""
    names = set()
    for cell in nb.cells:
        if cell.cell_type == "code" and (meta(cell).get("solution") or meta(cell).get("grade") or from_scratch(cell)):
            names |= top_level_names(ast.parse(cell.source).body)
    return names


def top_level_names(body) -> set[str]:
    """Names a block binds at its own level (inside `with`, `for`, `if`, not inside functions)."""
    names = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        for target in getattr(node, "targets", []) + [getattr(node, "target", None)] + [
                item.optional_vars for item in getattr(node, "items", [])]:
            if target is not None:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        for field in ("body", "orelse", "finalbody"):
            if isinstance(getattr(node, field, None), list):
                names |= top_level_names(getattr(node, field))
    return names


def from_scratch(cell) -> bool:
    """A cell outside the graded ones that runs the student's own code (tagged `from-scratch`)."""
    return "from-scratch" in cell.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("name", [p.stem for p in GRADED])
def test_the_student_release_runs_up_to_each_exercise(course, name):
    """Executed whole, the student version fails only where an answer is missing: its graded cells
    (NotImplementedError) and the cells tagged `from-scratch` that run the student's code
    (NotImplementedError, or a name that only an answered exercise defines); every other cell runs."""
    require_mirror()
    root, released = course
    nb = nbformat.read(released[name], as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(released[name].parent)}}).execute()
    failed = {i: next(o for o in c.outputs if o.get("output_type") == "error")
              for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.outputs)}
    answers = [i for i, c in enumerate(nb.cells) if meta(c).get("solution") and c.cell_type == "code"]
    tests = [i for i, c in enumerate(nb.cells) if meta(c).get("grade") and c.cell_type == "code"]
    scratch = [i for i, c in enumerate(nb.cells) if from_scratch(c)]
    assert answers and set(tests) <= set(failed) <= set(tests) | set(scratch), {i: nb.cells[i].source[:60] for i in failed}
    assert all(failed[i]["ename"] == "NotImplementedError" for i in tests)
    missing = answer_names(nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4))
    for i in set(failed) - set(tests):
        error = failed[i]
        unanswered = error["ename"] == "NotImplementedError" or (
            error["ename"] == "NameError" and re.search(r"name '(\w+)'", error["evalue"])[1] in missing)
        assert unanswered, (i, nb.cells[i].source[:60], error["ename"], error["evalue"])
    assert not any(any(o.get("output_type") == "error" for o in nb.cells[i].outputs) for i in answers)
    ran = [c for c in nb.cells if c.cell_type == "code" and c.execution_count]
    assert len(ran) == sum(c.cell_type == "code" for c in nb.cells)
