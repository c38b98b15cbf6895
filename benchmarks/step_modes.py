"""Does compiling remove DPRP's launch-bound training step? One step timed eager and compiled.

On an H200 a DPRP step costs about 4.5 dense steps (results/benchmarks/speed-cuda.json): ResNet-20
at batch 128 is many small kernels, and the factored layers and the three penalties add many more.
This measures, in one process and one run (nothing else should run meanwhile), the training step
(forward, penalties, backward, SGD) of dense ResNet-20 and of DPRP at full rank and after a cut to
half of every rank (the shapes change, so compiled code is compiled again, as after each cut of a
run), in each mode:

  eager             as the training loop runs today
  compile           torch.compile of the model (the training loop's `compile=True`)
  compile+penalty   the model and the penalties compiled
  *-graphs          the same with mode="reduce-overhead": CUDA graphs, recaptured for new shapes

and reports each mode's DPRP/dense ratio, its speed against eager, and what the first steps cost
(compilation or capture). Writes JSON and prints the table.

    python benchmarks/step_modes.py --device cuda        # the GPU question: results/benchmarks/step-modes-cuda.json
    python benchmarks/step_modes.py --device cpu --modes eager compile
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import dprp_lib as dprp
from dprp_lib.engine.train import resolve_device

MODES = ("eager", "compile", "compile+penalty", "compile-graphs", "compile+penalty-graphs")
KINDS = ("dense", "dprp full rank", "dprp half rank")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(kind: str, model_name: str, device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = dprp.models.build_model(model_name).to(device)
    if kind != "dense":
        dprp.svdify(model)
    if kind == "dprp half rank":
        for _, layer in dprp.svd_layers(model):
            layer.truncate(max(1, layer.max_rank // 2))
    return model.to(memory_format=torch.channels_last)


def make_step(kind: str, mode: str, model, x, y):
    """One training step in `mode`; penalties only for DPRP."""
    graphs = mode.endswith("-graphs")
    options = {"mode": "reduce-overhead"} if graphs else {}
    forward = torch.compile(model, **options) if mode != "eager" else model
    reg = None if kind == "dense" else dprp.Regularizer(orth=1.0, sort=1.0, sparse=1e-4)
    penalty = None
    if reg is not None:
        penalty = (lambda m: reg(m)[0])
        if mode.startswith("compile+penalty"):
            penalty = torch.compile(penalty, **options)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        loss = F.cross_entropy(forward(x), y)
        if penalty is not None:
            loss = loss + penalty(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def measure(step, device, warmup: int, repeats: int, rounds: int) -> dict:
    """The first `warmup` steps' total time (compilation, capture) and the median over `rounds` of
    the mean step time of `repeats` steps after them."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    first = time.perf_counter() - t0
    means = []
    for _ in range(rounds):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            step()
        sync(device)
        means.append((time.perf_counter() - t0) / repeats)
    means.sort()
    return {"step_s": means[len(means) // 2], "first_steps_s": first}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--warmup", type=int, default=3, help="steps before timing (compilation happens here)")
    p.add_argument("--repeats", type=int, default=20, help="steps per timing round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None, help="JSON path (default results/benchmarks/step-modes-<device>.json)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    times = {}
    for mode in args.modes:
        for kind in KINDS:
            torch.compiler.reset()  # each measurement compiles from nothing, as a fresh run would
            model = build(kind, args.model, device)
            t = times[f"{mode} | {kind}"] = measure(make_step(kind, mode, model, x, y), device,
                                                    args.warmup, args.repeats, args.rounds)
            # as it goes: a device call cut short by its time limit still says what it measured
            print(f"  {mode} | {kind}: {1000 * t['step_s']:.2f} ms a step, first steps {t['first_steps_s']:.1f} s",
                  flush=True)
    rows = []
    for mode in args.modes:
        dense = times[f"{mode} | dense"]["step_s"]
        for kind in KINDS:
            t = times[f"{mode} | {kind}"]
            rows.append({"mode": mode, "step": kind, "ms": 1000 * t["step_s"],
                         "vs dense (same mode)": t["step_s"] / dense,
                         "vs eager (same step)": times[f"eager | {kind}"]["step_s"] / t["step_s"]
                         if f"eager | {kind}" in times else None,
                         "first steps s": t["first_steps_s"]})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"device": name, "torch": torch.__version__, "model": args.model, "batch_size": args.batch_size,
              "warmup": args.warmup, "repeats": args.repeats, "rounds": args.rounds, "rows": rows}
    print(f"{args.model}, batch {args.batch_size}, {name}, float32 + channels_last; "
          f"speed-up against eager is eager's step time over this mode's")
    print(f"{'mode':<24}{'step':<16}{'ms':>8}{'/dense':>8}{'speed-up':>10}{'first steps s':>15}")
    for r in rows:
        speedup = f"{r['vs eager (same step)']:.2f}×" if r["vs eager (same step)"] else "—"
        print(f"{r['mode']:<24}{r['step']:<16}{r['ms']:>8.2f}{r['vs dense (same mode)']:>8.2f}{speedup:>10}"
              f"{r['first steps s']:>15.1f}")
    out = Path(args.out or f"results/benchmarks/step-modes-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
