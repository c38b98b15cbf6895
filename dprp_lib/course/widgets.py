"""Interactive panels: thin views over library functions.

Each panel computes through the library, keeps what it computed in `.result` (so tests can
drive its controls headlessly and check it), and draws with plots.py. The figure is shown
as a PNG in an Image widget rather than through an Output widget: Output capture relies on
comm messages that headless executors (papermill, nbclient) handle unreliably. Controls over
anything slow use continuous_update=False. Display a panel by leaving it last in a cell.

A panel needs a live kernel to compute. For pages exported without one (`make course` sets
DPRP_STATIC_PANELS=1), the panel also carries a static version: every view precomputed, and
plain HTML controls that switch between them, with no kernel and no network.
"""
from __future__ import annotations

import base64
import copy
import html
import io
import itertools
import json
import os
import uuid

import ipywidgets as W
import torch
from IPython.display import display

from ..method.layers import SVDConv2d, SVDLinear, svd_layers
from ..method.lowrank import energy_rank, low_rank, relative_error, storage
from ..method.metrics import deployed_params
from ..method.pruning import prune_ranks
from ..method.regularizers import layer_orthogonality
from . import plots



# What switches a static panel's views in the page (PANEL_ID: the panel's element id).
_PANEL_SCRIPT = """(function () {
  var root = document.getElementById("PANEL_ID");
  var frames = JSON.parse(root.querySelector(".dprp-panel-frames").textContent);
  var inputs = Array.prototype.slice.call(root.querySelectorAll("select, input"));
  function value(el) {
    var options = JSON.parse(el.dataset.options);
    return el.tagName === "SELECT" ? options[el.selectedIndex] : options[Number(el.value)];
  }
  function setValue(el, v) {
    var i = JSON.parse(el.dataset.options).indexOf(v);
    if (el.tagName === "SELECT") el.selectedIndex = i; else el.value = String(i);
  }
  function show(event) {
    var key = inputs.map(value).join("|");
    if (!frames[key] && event) {  // as the live panel does: keep the changed control, adjust the others
      var i = inputs.indexOf(event.target), wanted = value(event.target);
      var match = Object.keys(frames).filter(function (k) { return k.split("|")[i] === wanted; })[0];
      if (match) { match.split("|").forEach(function (v, j) { setValue(inputs[j], v); }); key = match; }
    }
    inputs.forEach(function (el) { if (el.nextElementSibling && el.nextElementSibling.tagName === "OUTPUT")
      el.nextElementSibling.textContent = value(el); });
    var frame = frames[key];
    root.querySelector(".dprp-panel-info").innerHTML = frame ? frame.info : "<em>no precomputed view for this combination</em>";
    if (frame) root.querySelector(".dprp-panel-picture").src = "data:image/png;base64," + frame.png;
  }
  inputs.forEach(function (el) { el.addEventListener("input", show); el.addEventListener("change", show); });
})();"""

class Panel:
    """Controls, an HTML line of numbers and a figure area; subclasses define `compute`."""

    controls: list

    def _build(self):
        self.info = W.HTML()
        self.picture = W.Image(format="png")
        for c in self.controls:
            c.observe(lambda change: self.update(), names="value")
        self.widget = W.VBox([W.HBox(self.controls), self.info, self.picture])
        self.update()

    def update(self):
        self.result, self.figure, text = self.compute()
        self.info.value = text
        png = io.BytesIO()
        self.figure.savefig(png, format="png")
        self.picture.value = png.getvalue()

    def views(self) -> list[tuple]:
        """Every combination of control values the static version shows."""
        return list(itertools.product(*(c.options for c in self.controls)))

    def static_html(self) -> str:
        """The panel as self-contained HTML: each view precomputed, switched by plain controls."""
        views = self.views()
        frames = self._frames(views)
        pid = f"dprp-panel-{uuid.uuid4().hex[:8]}"
        controls = [self._control_html(i, c, views) for i, c in enumerate(self.controls)]
        now = "|".join(str(c.value) for c in self.controls)
        first = frames.get(now) or next(iter(frames.values()))
        frames_json = json.dumps(frames).replace("</", "<\\/")  # cannot end the script element early
        return f"""<div class="dprp-panel" id="{pid}">
<p class="dprp-panel-note"><em>Precomputed panel: each view was computed when this page was built.
Open the notebook in JupyterLab (<code>make lab</code>) to compute your own.</em></p>
<div class="dprp-panel-controls">{" ".join(controls)}</div>
<div class="dprp-panel-info">{first["info"]}</div>
<img class="dprp-panel-picture" alt="panel figure" src="data:image/png;base64,{first["png"]}">
<script type="application/json" class="dprp-panel-frames">{frames_json}</script>
<script>{_PANEL_SCRIPT.replace("PANEL_ID", pid)}</script>
</div>"""

    def _frames(self, views) -> dict:
        """{"value|value|...": {"info", "png"}} for every view, the controls restored afterwards."""
        saved = [c.value for c in self.controls]
        frames = {}
        try:
            for view in views:
                for control, value in zip(self.controls, view):
                    control.value = value
                self.update()  # the observers may already have; the last state is what counts
                png = base64.b64encode(bytes(self.picture.value)).decode()
                frames["|".join(map(str, view))] = {"info": self.info.value, "png": png}
        finally:
            for control, value in zip(self.controls, saved):
                control.value = value
            self.update()
        return frames

    @staticmethod
    def _control_html(i: int, c, views) -> str:
        """Control i as plain HTML over the values the views give it: a select or a range."""
        values = list(dict.fromkeys(v[i] for v in views))
        if all(isinstance(v, (int, float)) for v in values):
            values.sort()
        options = [str(v) for v in values]
        label = html.escape(c.description or f"control {i + 1}")
        current = options.index(str(c.value)) if str(c.value) in options else 0
        if isinstance(c, W.Dropdown):
            opts = "".join(f'<option{" selected" if j == current else ""}>{html.escape(o)}</option>'
                           for j, o in enumerate(options))
            return (f'<label>{label} <select data-options="{html.escape(json.dumps(options))}">'
                    f"{opts}</select></label>")
        # sliders: a range over the option list, its value shown beside it
        return (f'<label>{label} <input type="range" min="0" max="{len(options) - 1}" step="1" '
                f'value="{current}" data-options="{html.escape(json.dumps(options))}">'
                f'<output>{html.escape(options[current])}</output></label>')

    def _ipython_display_(self):
        bundle = self.widget._repr_mimebundle_()
        # Shown where no widget can render (a notebook opened before running it): a hint, not a repr.
        bundle["text/plain"] = (f"[interactive panel: {type(self).__name__}; run this cell with a live "
                                "kernel (make lab) to use it]")
        if os.environ.get("DPRP_STATIC_PANELS") == "1":
            bundle["text/html"] = self.static_html()
        display(bundle, raw=True)


def rank_steps(max_rank: int, *include: int) -> list[int]:
    """Ranks 1, 2, 5, 10, 20, 50, ... up to `max_rank`, with `max_rank` and `include` added."""
    steps = {max_rank, *include}
    scale = 1
    while scale <= max_rank:
        steps.update(v * scale for v in (1, 2, 5) if v * scale <= max_rank)
        scale *= 10
    return sorted(steps)


class RankExplorer(Panel):
    """Chapter 01: the rank-k approximation of an image, its error and its storage."""

    def __init__(self, image: torch.Tensor, k: int = 10):
        self.image = image
        self.svd = torch.linalg.svd(image.double(), full_matrices=False)  # once, for every k
        # 1-2-5 steps: a track of a few hundred pixels cannot resolve 512 single ranks.
        self.slider = W.SelectionSlider(options=rank_steps(min(image.shape), k), value=k, description="rank k",
                                        continuous_update=False)
        self.controls = [self.slider]
        self._build()

    def compute(self):
        k = self.slider.value
        approx = low_rank(self.image, k, self.svd)
        m, n = self.image.shape
        result = {"k": k, "relative_error": relative_error(self.image, approx), **storage(m, n, k)}
        fig = plots.reconstructions({"original": self.image, f"rank {k}": approx})
        text = (f"rank {k}: relative error ‖M − M_k‖/‖M‖ = {result['relative_error']:.3f}; "
                f"stores {result['factored']:,} numbers against {result['dense']:,} "
                f"({result['ratio']:.1%})")
        return result, fig, text


class SweepExplorer(Panel):
    """Chapter 05: one run of the sparsity sweep, chosen by kind and weight."""

    def __init__(self, runs: dict):
        self.runs = runs  # {(kind, weight multiplier): Run}
        kinds = list(dict.fromkeys(k for k, _ in runs))
        self.kind = W.Dropdown(options=kinds, value=kinds[0], description="sparsity")
        self.weight = W.SelectionSlider(options=self._weights(kinds[0]), description="weight ×",
                                        continuous_update=False)
        self.kind.observe(self._kind_changed, names="value")
        self.controls = [self.kind, self.weight]
        self._build()

    def _weights(self, kind):
        return sorted(w for k, w in self.runs if k == kind)

    def views(self) -> list[tuple]:
        return list(self.runs)

    def _kind_changed(self, change):
        options = self._weights(change["new"])
        if self.weight.value not in options:
            self.weight.value = options[-1] if self.weight.value > options[-1] else options[0]
        self.weight.options = options

    def compute(self):
        key = (self.kind.value, self.weight.value)
        if key not in self.runs:  # between the two observers firing
            key = (self.kind.value, self._weights(self.kind.value)[0])
        run = self.runs[key]
        s = run.summary
        fig = plots.curve_panels({f"{key[0]} ×{key[1]:g}": run.history},
                                 [("test_acc", "test accuracy"), ("params", "parameters as trained")])
        text = (f"{key[0]}, weight {run.config.sparse:g}: test accuracy {s['test_acc']:.1%}, "
                f"total rank {s['total_rank']}/{s['full_rank']}, deployed parameters "
                f"{s['deployed_fraction']:.1%} of dense")
        return {"key": key, **{k: s[k] for k in ("test_acc", "total_rank", "deployed_fraction")}}, fig, text


class GridExplorer(Panel):
    """Chapter 07: one variant of the ablation grid, its seeds and its final ranks."""

    def __init__(self, rows: list[dict], runs: dict):
        self.rows = {r["variant"]: r for r in rows}
        self.runs = runs  # {variant: [Run per seed]}
        self.variant = W.Dropdown(options=list(self.rows), description="variant")
        self.controls = [self.variant]
        self._build()

    def compute(self):
        row = self.rows[self.variant.value]
        first = self.runs[self.variant.value][0]
        full = {n: max(h["ranks"][n] for h in first.history) for n in first.summary["ranks"]}
        fig = plots.rank_bars(first.summary["ranks"], full,
                              title=f"{self.variant.value}: final ranks, seed {first.config.seed}")
        accs = ", ".join(f"{a:.1%}" for a in row["test_acc_values"])
        text = (f"{self.variant.value}: test accuracy {row['test_acc']:.1%} (seeds: {accs}); deployed "
                f"{row['deployed_fraction']:.1%} of dense; total rank {row['total_rank']:.0f}")
        return dict(row), fig, text


class LayerCostCalculator(Panel):
    """Chapter 02: break-even ranks of a convolution's shape, for parameters and for compute."""

    CHANNELS = (16, 32, 64, 128, 256)

    def __init__(self, c_in: int = 64, c_out: int = 64, kernel: int = 3):
        self.c_in = W.Dropdown(options=self.CHANNELS, value=c_in, description="C_in")
        self.c_out = W.Dropdown(options=self.CHANNELS, value=c_out, description="C_out")
        self.kernel = W.Dropdown(options=(1, 3, 5), value=kernel, description="kernel")
        self.controls = [self.c_in, self.c_out, self.kernel]
        self._build()

    def views(self) -> list[tuple]:
        # The static page spans the same range on a coarser grid: every view is a PNG in the page.
        return list(itertools.product((16, 64, 256), (16, 64, 256), (1, 3)))

    def compute(self):
        layer = SVDConv2d(self.c_in.value, self.c_out.value, self.kernel.value)  # the library's own counts
        m, n, k = layer.m, layer.n, self.kernel.value
        trained, deployed = layer.break_even_rank, m * n / (m + n)
        result = {"m": m, "n": n, "max_rank": layer.max_rank, "break_even_trained": trained,
                  "break_even_deployed": deployed}
        fig = plots.break_even(m, n, title=f"conv {k}×{k}, {self.c_in.value} → {self.c_out.value}: m = {m}, n = {n}")
        saves = ("saves nothing at any rank" if deployed >= layer.max_rank else
                 f"saves only below {deployed / layer.max_rank:.0%} of its full rank")
        text = (f"m = C_out = {m}, n = C_in·k² = {n}, full rank {layer.max_rank}. Break-even rank: "
                f"{trained:.1f} for U, s, V as trained, {deployed:.1f} deployed (parameters and multiply-"
                f"accumulates alike): the factored form {saves}.")
        return result, fig, text


class DriftExplorer(Panel):
    """Chapter 03: let U (or U and V) drift from orthonormal and compare |s| with the true spectrum."""

    DRIFTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)

    def __init__(self, s=(4.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.2, 0.1), m: int = 16, n: int = 32, energy: float = 0.01,
                 seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        r = len(s)
        self.energy = energy
        self.layer = SVDLinear(n, m, bias=False, rank=r, dtype=torch.float64)
        self.U0 = torch.linalg.qr(torch.randn(m, r, generator=g, dtype=torch.float64))[0]
        self.V0 = torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))[0]
        # One fixed direction of drift, scaled by the slider: the views differ only in how far. A
        # drift d moves each unit column by a vector of length about d.
        self.noise = (torch.randn(m, r, generator=g, dtype=torch.float64) / m ** 0.5,
                      torch.randn(n, r, generator=g, dtype=torch.float64) / n ** 0.5)
        with torch.no_grad():
            self.layer.s.copy_(torch.tensor(s, dtype=torch.float64))
        self.drift = W.SelectionSlider(options=self.DRIFTS, value=0.2, description="drift",
                                       continuous_update=False)
        self.factors = W.Dropdown(options=("U", "U and V"), value="U", description="drifting")
        self.controls = [self.drift, self.factors]
        self._build()

    def compute(self):
        d = self.drift.value
        with torch.no_grad():
            self.layer.U.copy_(self.U0 + d * self.noise[0])
            self.layer.V.copy_(self.V0 + (d * self.noise[1] if self.factors.value == "U and V" else 0))
            sigma = torch.linalg.svdvals(self.layer.matrix()[0])[: self.layer.rank]  # one group
            s = self.layer.s.abs()
            orth = layer_orthogonality(self.layer).item()
            k = energy_rank(s, self.energy)  # what a cut that trusts |s| keeps: the first k directions
            W = self.layer.matrix()[0]
            U, V = self.layer.U, self.layer.V
            cut = (U[:, :k] * s[:k]) @ V[:, :k].T
            norm = torch.linalg.norm(W)
            cut_error = (torch.linalg.norm(W - cut) / norm).item()
        promised = (s[k:].square().sum() / s.square().sum()).sqrt().item()
        best = (sigma[k:].square().sum() / sigma.square().sum()).sqrt().item()  # Eckart–Young at rank k
        gap = (torch.linalg.norm(s.sort(descending=True).values - sigma) / torch.linalg.norm(sigma)).item()
        result = {"drift": d, "factors": self.factors.value, "orth": orth, "gap": gap, "rank": k,
                  "cut_error": cut_error, "promised_error": promised, "best_error": best}
        fig = plots.spectrum_against_truth(s, sigma, title=f"{self.factors.value} drifted by {d:g}")
        text = (f"drift {d:g} ({self.factors.value}): orthogonality penalty {orth:.4f}, gap ‖sort(|s|) − σ‖/‖σ‖ = "
                f"{gap:.3f}. Cutting to the first {k} directions (ε = {self.energy:g} on |s|) changes W by "
                f"{cut_error:.2%} of ‖W‖; |s| promised {promised:.2%}; the best rank-{k} cut changes it by "
                f"{best:.2%}.")
        return result, fig, text


class EnergyCutExplorer(Panel):
    """Chapter 04: a stored spectrum cut by the energy rule in index order, against the same values sorted."""

    def __init__(self, spectra: dict, energies=(1e-3, 3e-3, 1e-2, 3e-2, 0.1)):
        self.spectra = {name: torch.as_tensor(s).detach().abs().double().ravel() for name, s in spectra.items()}
        self.layer = W.Dropdown(options=list(self.spectra), description="layer")
        self.energy = W.SelectionSlider(options=tuple(energies), value=energies[len(energies) // 2],
                                        description="ε", continuous_update=False)
        self.controls = [self.layer, self.energy]
        self._build()

    def compute(self):
        s, eps = self.spectra[self.layer.value], self.energy.value
        ordered = s.sort(descending=True).values
        k_index, k_sorted = energy_rank(s, eps), energy_rank(ordered, eps)
        kept_index = (s[:k_index].square().sum() / s.square().sum()).item()
        lost_large = int((s[k_index:] > s[:k_index].min()).sum())  # cut values above the smallest one kept
        result = {"layer": self.layer.value, "energy": eps, "kept_index_order": k_index, "kept_sorted": k_sorted,
                  "energy_kept_index_order": kept_index, "larger_values_cut": lost_large}
        fig = plots.energy_cut(s, eps, title=f"{self.layer.value}, ε = {eps:g}")
        text = (f"{self.layer.value}: in index order the rule keeps {k_index} of {len(s)} ({kept_index:.2%} of "
                f"Σ s²) and cuts {lost_large} value(s) larger than the smallest it keeps; on the sorted values "
                f"it would keep {k_sorted}.")
        return result, fig, text


class TruncationExplorer(Panel):
    """Chapter 06: the energy rule applied once to trained models, at the ε of a slider."""

    def __init__(self, models: dict, evaluate, dense_params: int,
                 energies=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)):
        """`models`: {label: factored model}; `evaluate(model)` returns its accuracy."""
        self.views_computed = {}
        for label, model in models.items():
            full = {name: layer.rank for name, layer in svd_layers(model)}
            accuracy = {}  # by the ranks kept: small energies often keep the same ones, and so the same model
            for eps in energies:
                cut = copy.deepcopy(model)
                prune_ranks(cut, energy=eps, reorder=True)  # on sorted |s|: these models were not all trained sorted
                layers = dict(svd_layers(cut))
                ranks = {name: layer.rank for name, layer in layers.items()}
                kept = tuple(ranks.values())
                if kept not in accuracy:
                    accuracy[kept] = evaluate(cut)
                self.views_computed[(label, eps)] = {
                    "ranks": ranks, "full_ranks": full,
                    "break_even": {name: layer.break_even_rank for name, layer in layers.items()},
                    "deployed_fraction": deployed_params(cut) / dense_params, "accuracy": accuracy[kept]}
        self.model = W.Dropdown(options=list(models), description="model")
        self.energy = W.SelectionSlider(options=tuple(energies), value=energies[len(energies) // 2], description="ε",
                                        continuous_update=False)
        self.controls = [self.model, self.energy]
        self._build()

    def compute(self):
        label, eps = self.model.value, self.energy.value
        v = self.views_computed[(label, eps)]
        fig = plots.rank_bars(v["ranks"], v["full_ranks"], v["break_even"],
                              title=f"{label}, cut once at ε = {eps:g}: ranks kept")
        text = (f"{label} cut at ε = {eps:g}, no further training: total rank {sum(v['ranks'].values())} of "
                f"{sum(v['full_ranks'].values())}, deployed parameters {v['deployed_fraction']:.1%} of dense, "
                f"accuracy {v['accuracy']:.1%}.")
        return {"model": label, "energy": eps, **{k: v[k] for k in ("deployed_fraction", "accuracy")},
                "total_rank": sum(v["ranks"].values())}, fig, text
