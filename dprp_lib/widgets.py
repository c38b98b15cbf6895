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
import html
import io
import itertools
import json
import os
import uuid

import ipywidgets as W
import torch
from IPython.display import display

from . import plots
from .lowrank import low_rank, relative_error, storage


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
        saved = [c.value for c in self.controls]
        views = self.views()
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
        pid = f"dprp-panel-{uuid.uuid4().hex[:8]}"
        controls = []
        for i, c in enumerate(self.controls):
            values = list(dict.fromkeys(v[i] for v in views))
            if all(isinstance(v, (int, float)) for v in values):
                values.sort()
            options = [str(v) for v in values]
            label = html.escape(c.description or f"control {i + 1}")
            current = options.index(str(c.value)) if str(c.value) in options else 0
            if isinstance(c, W.Dropdown):
                opts = "".join(f'<option{" selected" if j == current else ""}>{html.escape(o)}</option>'
                               for j, o in enumerate(options))
                controls.append(f'<label>{label} <select data-options="{html.escape(json.dumps(options))}">'
                                f"{opts}</select></label>")
            else:  # sliders: a range over the option list, its value shown beside it
                controls.append(f'<label>{label} <input type="range" min="0" max="{len(options) - 1}" step="1" '
                                f'value="{current}" data-options="{html.escape(json.dumps(options))}">'
                                f'<output>{html.escape(options[current])}</output></label>')
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
<script>(function () {{
  var root = document.getElementById("{pid}");
  var frames = JSON.parse(root.querySelector(".dprp-panel-frames").textContent);
  var inputs = Array.prototype.slice.call(root.querySelectorAll("select, input"));
  function value(el) {{
    var options = JSON.parse(el.dataset.options);
    return el.tagName === "SELECT" ? options[el.selectedIndex] : options[Number(el.value)];
  }}
  function setValue(el, v) {{
    var i = JSON.parse(el.dataset.options).indexOf(v);
    if (el.tagName === "SELECT") el.selectedIndex = i; else el.value = String(i);
  }}
  function show(event) {{
    var key = inputs.map(value).join("|");
    if (!frames[key] && event) {{  // as the live panel does: keep the changed control, adjust the others
      var i = inputs.indexOf(event.target), wanted = value(event.target);
      var match = Object.keys(frames).filter(function (k) {{ return k.split("|")[i] === wanted; }})[0];
      if (match) {{ match.split("|").forEach(function (v, j) {{ setValue(inputs[j], v); }}); key = match; }}
    }}
    inputs.forEach(function (el) {{ if (el.nextElementSibling && el.nextElementSibling.tagName === "OUTPUT")
      el.nextElementSibling.textContent = value(el); }});
    var frame = frames[key];
    root.querySelector(".dprp-panel-info").innerHTML = frame ? frame.info : "<em>no precomputed view for this combination</em>";
    if (frame) root.querySelector(".dprp-panel-picture").src = "data:image/png;base64," + frame.png;
  }}
  inputs.forEach(function (el) {{ el.addEventListener("input", show); el.addEventListener("change", show); }});
}})();</script>
</div>"""

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
