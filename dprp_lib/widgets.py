"""Interactive panels: thin views over library functions.

Each panel computes through the library, keeps what it computed in `.result` (so tests can
drive its controls headlessly and check it), and draws with plots.py. The figure is shown
as a PNG in an Image widget rather than through an Output widget: Output capture relies on
comm messages that headless executors (papermill, nbclient) handle unreliably. Controls over
anything slow use continuous_update=False. Display a panel by leaving it last in a cell.
"""
from __future__ import annotations

import io

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

    def _ipython_display_(self):
        display(self.widget)


class RankExplorer(Panel):
    """Chapter 01: the rank-k approximation of an image, its error and its storage."""

    def __init__(self, image: torch.Tensor, k: int = 10):
        self.image = image
        self.slider = W.IntSlider(value=k, min=1, max=min(image.shape), description="rank k",
                                  continuous_update=False)
        self.controls = [self.slider]
        self._build()

    def compute(self):
        k = self.slider.value
        approx = low_rank(self.image, k)
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
