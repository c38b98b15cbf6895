"""Every figure the notebooks show, in one style. Each function returns its Figure.

Figures are made without pyplot's figure manager, so nothing is shown twice or kept open:
a notebook displays a figure by leaving it last in a cell or by `display(fig)`.
"""
from __future__ import annotations

from contextlib import contextmanager

import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
import torch

from ..method.lowrank import energy_rank

STYLE = {
    "figure.dpi": 90, "savefig.dpi": 90, "figure.figsize": (6.4, 3.6),
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8, "legend.frameon": False,
    "font.size": 10, "image.cmap": "viridis",
}
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


@contextmanager
def _style():
    with plt.rc_context(STYLE):
        yield


def _figure(ncols=1, nrows=1, width=None, height=None, **kw):
    w = width or 4.2 * ncols
    h = height or 3.4 * nrows
    fig = Figure(figsize=(w, h), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes.ravel()


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# --- chapter 01: SVD -------------------------------------------------------------------------
def svd_geometry(matrix) -> Figure:
    """The unit circle through Vᵀ (rotate), Σ (stretch) and U (rotate): M = UΣVᵀ in 2-D."""
    M = _np(matrix).astype(float)
    U, S, Vt = np.linalg.svd(M)
    t = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(t), np.sin(t)])
    steps = [("x: unit circle", np.eye(2)), ("Vᵀx: rotated", Vt), ("ΣVᵀx: stretched", np.diag(S) @ Vt),
             ("UΣVᵀx = Mx", M)]
    with _style():
        fig, axes = _figure(4, width=12, height=3.3)
        lim = max(1.1, S.max() * 1.15)
        for ax, (title, T) in zip(axes, steps):
            pts = T @ circle
            ax.plot(pts[0], pts[1], color=COLORS[0])
            for i, c in enumerate((COLORS[1], COLORS[2])):
                e = T @ Vt[i]  # where the right singular vectors go
                ax.annotate("", xy=e, xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=c, lw=2))
            ax.set(title=title, xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
        fig.suptitle(f"singular values {S[0]:.2f} and {S[1]:.2f}: the lengths of the ellipse's axes")
    return fig


def singular_values(spectra: dict, normalise: bool = True, log: bool = True,
                    title: str = "singular values", bars: bool = False) -> Figure:
    """One curve per labelled spectrum; x is the index i, y is |s_i| (÷ |s_1| if normalise), in the
    order the layer stores them: an unsorted spectrum shows as unsorted (sort it yourself to
    compare shapes). `bars` draws each value as a bar (a few discrete values: a line between
    them would suggest values in between), the spectra side by side."""
    with _style():
        fig, (ax,) = _figure(width=6, height=3.6)
        width = 0.8 / len(spectra)
        for j, (label, s) in enumerate(spectra.items()):
            s = np.abs(_np(s)).ravel()
            x, y = np.arange(1, len(s) + 1), s / s[0] if normalise else s
            if bars:
                ax.bar(x + (j - (len(spectra) - 1) / 2) * width, y, width, label=label, color=COLORS[j % len(COLORS)])
                ax.set_xticks(x)
            else:
                ax.plot(x, y, label=label, lw=1.5)
        ax.set(xlabel="index i", ylabel="|s_i| / |s_1|" if normalise else "|s_i|", title=title)
        if log:
            ax.set_yscale("log")
        if len(spectra) > 1:
            ax.legend(ncol=2 if len(spectra) > 6 else 1)
    return fig


def reconstructions(images: dict, suptitle: str = "") -> Figure:
    """Images side by side, each with its title (e.g. rank-k approximations)."""
    n = len(images)
    with _style():
        fig, axes = _figure(n, width=2.6 * n, height=2.9)
        for ax, (title, img) in zip(axes, images.items()):
            ax.imshow(np.clip(_np(img), 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        if suptitle:
            fig.suptitle(suptitle)
    return fig


def energy_and_storage(s, m: int, n: int, title: str = "") -> Figure:
    """Left: fraction of Σ s² kept by the first k values. Right: storage of rank k against m·n."""
    s = np.sort(np.abs(_np(s)))[::-1]
    k = np.arange(1, len(s) + 1)
    energy = np.cumsum(s ** 2) / np.sum(s ** 2)
    with _style():
        fig, (a, b) = _figure(2, width=10, height=3.4)
        a.plot(k, energy)
        a.set(xlabel="rank k", ylabel="energy kept (fraction of Σ s²)", ylim=(0, 1.02), title="energy")
        b.plot(k, k * (m + n + 1), label="factored: k·(m + n + 1)")
        b.axhline(m * n, color=COLORS[1], ls="--", label="dense: m·n")
        b.axvline(m * n / (m + n + 1), color="gray", ls=":", label=f"break-even k = {m * n / (m + n + 1):.1f}")
        b.set(xlabel="rank k", ylabel="numbers stored", title="storage")
        b.legend()
        if title:
            fig.suptitle(title)
    return fig


def descent_to_bound(errors: dict, bounds: dict, every: int = 1, title: str = "") -> Figure:
    """How far gradient descent's ‖A − P·Qᵀ‖_F stays above the Eckart–Young error √(Σ_(i>k) s_i²),
    against step, on a log scale: `errors` maps a label to the errors after 0, every, 2·every, ...
    steps and `bounds` the label to its bound. Excesses below 1e-15 (round-off) are drawn at 1e-15."""
    with _style():
        fig, (ax,) = _figure(width=6.4, height=3.6)
        for i, (label, values) in enumerate(errors.items()):
            excess = np.maximum(np.asarray(values, dtype=float) - bounds[label], 1e-15)
            ax.plot(np.arange(len(excess)) * every, excess, color=COLORS[i % len(COLORS)], label=label)
        ax.set_yscale("log")
        ax.set(xlabel="gradient step", ylabel="‖A − PQᵀ‖_F − √(Σ_(i>k) s_i²)",
               title=title or "gradient descent reaches the Eckart–Young error")
        ax.legend()
    return fig


# --- chapter 02: factored layers -------------------------------------------------------------
def layer_costs(m: int, n: int, positions: int = 1, title: str = "") -> Figure:
    """Parameters and multiply-accumulates of one m×n layer against rank, both forms."""
    r = np.arange(1, min(m, n) + 1)
    with _style():
        fig, (a, b) = _figure(2, width=10, height=3.4)
        a.plot(r, r * (m + n + 1), label="U, s, V as trained: r·(m + n + 1)")
        a.plot(r, r * (m + n), label="deployed, s folded into U: r·(m + n)", ls="-.")
        a.axhline(m * n, color=COLORS[2], ls="--", label="dense: m·n")
        a.set(xlabel="rank r", ylabel="parameters", title="storage")
        a.legend()
        b.plot(r, r * (m + n) * positions / 1e6, label="two stages: r·(m + n) per position")
        b.axhline(m * n * positions / 1e6, color=COLORS[2], ls="--", label="one dense op: m·n per position")
        b.set(xlabel="rank r", ylabel="multiply-accumulates (millions)", title="compute")
        b.legend()
        fig.suptitle(title or f"a layer with m = {m}, n = {n}")
    return fig


def break_even(m: int, n: int, rank: int | None = None, title: str = "") -> Figure:
    """Cost of one m×n layer at each rank as a fraction of its dense cost: U, s, V as trained, and
    deployed (s folded into U; its multiply-accumulates per position follow the same line)."""
    r = np.arange(1, min(m, n) + 1)
    with _style():
        fig, (ax,) = _figure(width=6.0, height=3.2)
        ax.plot(r, r * (m + n + 1) / (m * n), label="U, s, V as trained: r(m + n + 1) / mn")
        ax.plot(r, r * (m + n) / (m * n), ls="-.", label="deployed, parameters and MACs: r(m + n) / mn")
        ax.axhline(1.0, color=COLORS[2], ls="--", label="dense")
        for value, color in ((m * n / (m + n + 1), COLORS[0]), (m * n / (m + n), COLORS[1])):
            if value <= r[-1]:
                ax.axvline(value, color=color, ls=":", lw=1)
        if rank is not None:
            ax.axvline(rank, color="black", lw=1, label=f"rank {rank}")
        ax.set(xlabel="rank r", ylabel="cost / dense cost", xlim=(0, r[-1] + 1), ylim=(0, None),
               title=title or f"m = {m}, n = {n}: break-even where a line crosses 1")
        ax.legend(loc="upper left")
    return fig


def spectrum_against_truth(s, sigma, title: str = "") -> Figure:
    """|s_i| as the layer stores them against the true singular values σ_i of U·diag(s)·Vᵀ."""
    s, sigma = np.abs(_np(s)).ravel(), _np(sigma).ravel()[: len(_np(s).ravel())]
    i = np.arange(1, len(s) + 1)
    with _style():
        fig, (ax,) = _figure(width=6.0, height=3.2)
        ax.bar(i, sigma, color="lightgray", label="true σ_i of U·diag(s)·Vᵀ")
        ax.plot(i, s, "o", color=COLORS[0], label="|s_i| (what a cut reads)")
        ax.set(xlabel="index i", ylabel="value", title=title, xticks=i)
        ax.legend()
    return fig


def energy_cut(s, energy: float, title: str = "") -> Figure:
    """One spectrum twice, as stored (index order) and sorted, each with the directions that the
    energy rule keeps (coloured) and the cut (dashed line) after the k-th stored value."""
    s = np.abs(_np(s)).ravel()
    with _style():
        fig, axes = _figure(2, width=10, height=3.2, sharey=True)
        for ax, (label, values) in zip(axes, (("as stored (index order)", s), ("sorted", np.sort(s)[::-1]))):
            k = energy_rank(torch.as_tensor(values.copy()), energy)
            i = np.arange(1, len(values) + 1)
            ax.bar(i[:k], values[:k], color=COLORS[0], width=0.9, label=f"kept: first {k}")
            ax.bar(i[k:], values[k:], color="lightgray", width=0.9, label=f"cut: {len(values) - k}")
            ax.axvline(k + 0.5, color="black", ls="--", lw=1)
            ax.set(xlabel="index i", title=f"{label}: keeps {k} of {len(values)}")
            ax.legend()
        axes[0].set_ylabel("|s_i|")
        fig.suptitle(title or f"energy rule, ε = {energy:g}: the cut keeps the leading k values")
    return fig


# --- diagrams ----------------------------------------------------------------------------------
def _box(ax, x, y, text, width=1.7, height=0.8, color="white"):
    ax.add_patch(matplotlib.patches.FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                                   boxstyle="round,pad=0.04", facecolor=color,
                                                   edgecolor="black", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def _arrow(ax, start, end, text="", rad=0.0):
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="->", lw=1.2, connectionstyle=f"arc3,rad={rad}"))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.25, text, ha="center", fontsize=7)


def _diagram(width, height, xlim, ylim):
    with _style():
        fig, (ax,) = _figure(width=width, height=height)
    ax.set(xlim=xlim, ylim=ylim, aspect="equal")
    ax.axis("off")
    return fig, ax


def factored_layer_diagram(c_in: int = 16, c_out: int = 32, k: int = 3, r: int = 8) -> Figure:
    """A k×k convolution as one dense op (top) and as SVD factors run as two convolutions (bottom),
    with the weights each holds for these sizes."""
    m, n = c_out, c_in * k * k
    fig, ax = _diagram(11, 3.6, (-0.2, 11.2), (-0.6, 3.4))
    light, factor = "#eef3fb", "#fff3e0"
    _box(ax, 0.8, 2.6, f"x\n{c_in} channels", color=light)
    _box(ax, 5.5, 2.6, f"conv {k}×{k}, {c_in} → {c_out}\nW: m×n = {m}×{n}\n{m * n:,} weights", width=3.4,
         height=1.0)
    _box(ax, 10.2, 2.6, f"y\n{c_out} channels", color=light)
    _arrow(ax, (1.65, 2.6), (3.8, 2.6))
    _arrow(ax, (7.2, 2.6), (9.35, 2.6))
    ax.text(5.5, 3.25, "dense: one convolution, m·n multiply-accumulates per position", ha="center", fontsize=9)
    _box(ax, 0.8, 0.4, f"x\n{c_in} channels", color=light)
    _box(ax, 3.35, 0.4, f"Vᵀ: conv {k}×{k}\n{c_in} → r = {r}\n{n * r:,} weights", width=2.3, height=1.0,
         color=factor)
    _box(ax, 5.75, 0.4, f"× s\n(r = {r} scales)", width=1.6, color=factor)
    _box(ax, 8.0, 0.4, f"U: conv 1×1\nr = {r} → {c_out}\n{m * r:,} weights", width=2.2, height=1.0, color=factor)
    _box(ax, 10.2, 0.4, f"y\n{c_out} channels", color=light)
    for a, b in (((1.65, 0.4), (2.2, 0.4)), ((4.5, 0.4), (4.95, 0.4)), ((6.55, 0.4), (6.9, 0.4)),
                 ((9.1, 0.4), (9.35, 0.4))):
        _arrow(ax, a, b)
    ax.text(5.5, 1.15, f"factored, W = U·diag(s)·Vᵀ: r(m + n) multiply-accumulates per position, "
            f"{r * (m + n + 1):,} numbers as trained", ha="center", fontsize=9)
    return fig


def dprp_loop_diagram() -> Figure:
    """The DPRP training loop: penalised epochs, cuts by the energy rule on the schedule, and the
    compaction to plain layers at the end."""
    fig, ax = _diagram(12, 3.7, (-0.1, 13.3), (-1.0, 3.45))
    train, cut, done = "#eef3fb", "#fff3e0", "#e8f5e9"
    _box(ax, 1.2, 1.9, "svdify: each conv and\nlinear as U, s, V\n(full rank)", width=2.3, height=1.0, color=done)
    _box(ax, 4.6, 1.9, "train one epoch on\nloss + λ_orth R_orth\n+ λ_sort R_sort + λ_sparse R_sparse",
         width=3.3, height=1.0, color=train)
    _box(ax, 8.3, 1.9, "cut due this epoch?\n(after a warm-up, every\nfew epochs until a stop)", width=2.8,
         height=1.0, color=train)
    _box(ax, 8.3, -0.35, "energy rule per layer: keep the\nsmallest k with (1 − ε) of Σ s²;\n"
         "slice U, s, V and optimizer state", width=3.6, height=1.0, color=cut)
    _box(ax, 11.85, 1.9, "compact():\nplain convs (two\nstages below\nbreak-even)", width=2.2, height=1.2,
         color=done)
    _arrow(ax, (2.35, 1.9), (2.95, 1.9))
    _arrow(ax, (6.25, 1.9), (6.9, 1.9))
    _arrow(ax, (8.3, 1.4), (8.3, 0.15), "yes")
    _arrow(ax, (8.3, 2.4), (4.9, 2.4), "no: next epoch", rad=0.45)
    _arrow(ax, (6.5, -0.35), (4.6, 1.4), "next epoch", rad=-0.3)
    _arrow(ax, (9.7, 1.9), (10.75, 1.9), "after the\nlast epoch")
    return fig


# --- training curves -------------------------------------------------------------------------
def curves(runs: dict, key: str, ylabel: str, log: bool = False, title: str = "", ax=None) -> Figure:
    """`key` of each run's metrics against epoch; `runs` maps a label to a list of metric rows."""
    with _style():
        if ax is None:
            fig, (ax,) = _figure(width=6, height=3.6)
        else:
            fig = ax.figure
        for i, (label, history) in enumerate(runs.items()):
            epochs = [h["epoch"] for h in history if h.get(key) is not None]
            values = [h[key] for h in history if h.get(key) is not None]
            ax.plot(epochs, values, marker="o", ms=3, label=label, color=COLORS[i % len(COLORS)])
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        if log:
            ax.set_yscale("symlog", linthresh=1e-4)
        ax.legend()
    return fig


def curve_panels(runs: dict, panels: list[tuple[str, str]], log_keys=(), title: str = "") -> Figure:
    """Several `curves` side by side: `panels` is a list of (metric key, y label)."""
    with _style():
        fig, axes = _figure(len(panels), width=4.4 * len(panels), height=3.5)
        for ax, (key, ylabel) in zip(axes, panels):
            curves(runs, key, ylabel, log=key in log_keys, ax=ax)
        for ax in axes[1:]:
            ax.get_legend().remove()
        if title:
            fig.suptitle(title)
    return fig


def fit_curves(panels: dict, title: str = "") -> Figure:
    """Training (dashed) and validation (solid) accuracy against epoch, one panel per entry of
    `panels` ({panel title: {run label: metric rows}}): the gap between the two lines is how far a
    run fits its training images beyond what it generalises; one y scale for every panel."""
    with _style():
        fig, axes = _figure(len(panels), width=5.2 * len(panels), height=3.8, sharey=True)
        for ax, (name, runs) in zip(axes, panels.items()):
            for i, (label, history) in enumerate(runs.items()):
                color = COLORS[i % len(COLORS)]
                for key, style, what in (("train_acc", "--", "training"), ("val_acc", "-", "validation")):
                    rows = [h for h in history if h.get(key) is not None]
                    ax.plot([h["epoch"] for h in rows], [100 * h[key] for h in rows], style, color=color, lw=1.4,
                            label=f"{label}, {what}")
            ax.set(xlabel="epoch", title=name)
            ax.legend(fontsize=7, loc="lower right")
        axes[0].set_ylabel("accuracy (%)")
        if title:
            fig.suptitle(title)
    return fig


def rank_heatmap(history: list, full_ranks: dict | None = None, title: str = "per-layer rank") -> Figure:
    """Rank of every factored layer (rows) at the end of every epoch (columns), as % of full rank."""
    layers = list(history[-1]["ranks"])
    full = full_ranks or {name: max(h["ranks"][name] for h in history) for name in layers}
    grid = np.array([[h["ranks"][name] / full[name] * 100 for h in history] for name in layers])
    with _style():
        fig, (ax,) = _figure(width=7, height=0.22 * len(layers) + 1.6)
        im = ax.imshow(grid, aspect="auto", vmin=0, vmax=100, cmap="viridis",
                       extent=(0.5, len(history) + 0.5, len(layers) - 0.5, -0.5))
        ax.set_yticks(range(len(layers)), layers, fontsize=7)
        ax.set(xlabel="epoch", title=title)
        ax.grid(False)
        fig.colorbar(im, ax=ax, label="rank, % of full")
    return fig


def rank_bars(ranks: dict, full_ranks: dict, break_even: dict | None = None, title: str = "") -> Figure:
    """Final rank of each layer against its full rank (and break-even rank)."""
    names = list(ranks)
    x = np.arange(len(names))
    with _style():
        fig, (ax,) = _figure(width=8, height=3.4)
        ax.bar(x, [full_ranks[n] for n in names], color="lightgray", label="full rank")
        ax.bar(x, [ranks[n] for n in names], color=COLORS[0], label="kept rank")
        if break_even:
            ax.scatter(x, [break_even[n] for n in names], marker="_", s=120, color=COLORS[3],
                       label="break-even rank", zorder=3)
        ax.set_xticks(x, names, rotation=90, fontsize=7)
        ax.set(ylabel="rank", title=title)
        ax.legend()
    return fig


# --- trade-offs and grids --------------------------------------------------------------------
_LEADER = dict(arrowstyle="-", lw=0.5, color="0.45", shrinkA=0, shrinkB=3)


def _label_apart(ax, items, fontsize=7) -> list:
    """Label points (x, y, text), each at the first of a few offsets where its text overlaps no
    label placed before it (points that sit close together get readable labels); a thin line joins
    each label to its point, so a label moved away from its point cannot be read as a neighbour's."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    fig = ax.figure
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()  # settle the layout, so label extents are where they will be drawn
    renderer = fig.canvas.get_renderer()
    offsets = [(4, 4), (4, -11), (-4, 4), (-4, -11), (4, 14), (4, -21), (-4, 14), (-4, -21), (4, 24), (4, -31)]
    # The other points are obstacles too: a label beside a neighbour's marker reads as the neighbour's.
    centres = ax.transData.transform([(x, y) for x, y, _ in items])
    markers = [Bbox.from_bounds(cx - 5, cy - 5, 10, 10) for cx, cy in centres]
    placed, labels = [], []
    for i, (x, y, text) in enumerate(items):
        others = [m for j, m in enumerate(markers) if j != i]
        # Clear of labels and markers if possible, else of labels (points on top of each other).
        tries = [(d, placed + others) for d in offsets] + [(d, placed) for d in offsets]
        for (dx, dy), obstacles in tries:
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize,
                                ha="left" if dx > 0 else "right", arrowprops=_LEADER)
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in obstacles):
                break
            label.remove()
        else:  # crowded everywhere: the first place
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=offsets[0], fontsize=fontsize,
                                arrowprops=_LEADER)
            box = label.get_window_extent(renderer)
        placed.append(box)
        labels.append(label)
    return labels


def tradeoff(points: list[dict], x: str = "deployed_fraction", y: str = "test_acc",
             xlabel: str = "deployed parameters (fraction of dense)", ylabel: str = "test accuracy",
             title: str = "") -> Figure:
    """A scatter of labelled points (dicts with x, y, "label" and optional "group", "xerr", "yerr")."""
    with _style():
        fig, (ax,) = _figure(width=6.4, height=4.0)
        groups = list(dict.fromkeys(p.get("group", "") for p in points))
        for i, g in enumerate(groups):
            pts = [p for p in points if p.get("group", "") == g]
            xs, ys, color = [p[x] for p in pts], [p[y] for p in pts], COLORS[i % len(COLORS)]
            err = {k: [p.get(k, 0) for p in pts] if any(p.get(k) for p in pts) else None for k in ("xerr", "yerr")}
            if any(e is not None for e in err.values()):
                ax.errorbar(xs, ys, **err, fmt="o", color=color, label=g or None, capsize=3)
            else:  # no error bars: plain markers, so the legend shows none either
                ax.scatter(xs, ys, color=color, label=g or None, zorder=3)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        _label_apart(ax, [(p[x], p[y], p["label"]) for p in points])
        if any(groups):
            ax.legend()
    return fig


def grouped_bars(rows: list[dict], metrics: list[tuple[str, str]], label: str = "variant",
                 title: str = "") -> Figure:
    """One panel a metric: the mean of each row as a bar, its spread (min–max) as an error bar.

    Each row has `label` and, per metric key k, `k` (mean), `k_min`, `k_max` and `k_values`.
    """
    with _style():
        fig, axes = _figure(len(metrics), width=4.0 * len(metrics), height=3.6)
        names = [r[label] for r in rows]
        x = np.arange(len(rows))
        for ax, (key, ylabel) in zip(axes, metrics):
            means = np.array([r[key] for r in rows])
            lo = means - np.array([r[f"{key}_min"] for r in rows])
            hi = np.array([r[f"{key}_max"] for r in rows]) - means
            ax.bar(x, means, yerr=[lo, hi], capsize=4, color=[COLORS[i % len(COLORS)] for i in x])
            for i, r in enumerate(rows):
                vals = r.get(f"{key}_values", [])
                ax.scatter([i] * len(vals), vals, color="black", s=8, zorder=3)
            ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
            ax.set(ylabel=ylabel)
            ax.set_ylim(bottom=0)  # bars are read by their height: every axis starts at 0
        if title:
            fig.suptitle(title)
    return fig


def full_data_overview(report: dict, paired: list[dict], sweep: list[dict] = (), title: str = "") -> Figure:
    """Left: test accuracy against deployed size, every committed seed a dot, each variant's mean
    ringed, the ε sweep (seed 0) as a grey line. Right: each `paired` row's change against its
    reference in points, seeds as dots, the mean with its 95% interval (t, over the paired seeds).

    `report` is `report.full_data_rows(...)`; `paired` is `report.paired_rows(...)`; `sweep` rows
    hold deployed_fraction and test_acc (fractions), as `report.calibration_points()` gives them.
    """
    with _style():
        fig, (a, b) = _figure(2, width=11, height=4.4, gridspec_kw={"width_ratios": [1.25, 1]})
        if sweep:
            pts = sorted(sweep, key=lambda p: p["deployed_fraction"])
            a.plot([p["deployed_fraction"] for p in pts], [100 * p["test_acc"] for p in pts], "o-",
                   color="0.65", mfc="white", ms=5, lw=1, zorder=1, label="ε sweep (seed 0)")
        others = iter(COLORS * 2)  # the dense baseline in black, every other variant its own colour
        for r in report["rows"]:
            color = "black" if r["variant"] == "dense" else next(others)
            values = [100 * v for v in r["test_acc_values"]]
            a.scatter([r["deployed_fraction"]] * len(values), values, s=12, color=color, alpha=0.6, zorder=2)
            a.scatter(r["deployed_fraction"], r["test_acc"], s=70, facecolor="none", edgecolor=color, lw=1.6,
                      zorder=3, label=f"{r['variant']} ({len(values)} seed{'s' if len(values) > 1 else ''})")
        a.set(xlabel="deployed parameters (fraction of dense)", ylabel="test accuracy (%)",
              title="size and accuracy: seeds as dots, means ringed")
        a.legend(loc="upper left", bbox_to_anchor=(0, -0.16), ncol=2, fontsize=7)  # below the data
        names = [r["variant"] for r in paired]
        y = np.arange(len(paired))[::-1]
        for yi, r in zip(y, paired):
            b.scatter(r["diffs"], [yi] * len(r["diffs"]), s=14, color="black", alpha=0.6, zorder=3)
            if r["interval"]:
                mean, low, high = r["interval"]
                b.errorbar(mean, yi, xerr=[[mean - low], [high - mean]], fmt="D", color=COLORS[0], capsize=4, zorder=2)
        b.axvline(0, color="gray", lw=1)
        b.set_yticks(y, names, fontsize=8)
        reference = paired[0]["reference"] if paired else ""
        b.set(xlabel=f"accuracy − {reference} of the same seed (points)",
              title="paired change: mean and 95% interval (t)")
        if title:
            fig.suptitle(title)
    return fig


def deploy_speedups(result: dict, title: str = "") -> Figure:
    """One panel a batch size: each runtime's speed-up of the compacted models over dense in that
    runtime (dense time / compacted time), a bar per size; the dashed line is "as fast as dense".

    `result` is what benchmarks/deploy.py writes (results/benchmarks/deploy-cpu.json).
    """
    speedups = result["speedup_vs_dense"]
    runtimes, sizes = list(speedups), list(result["sizes"])
    batches = list(next(iter(speedups.values())))
    with _style():
        fig, axes = _figure(len(batches), width=4.6 * len(batches), height=3.6, sharey=True)
        width = 0.8 / len(sizes)
        x = np.arange(len(runtimes))
        for ax, batch in zip(axes, batches):
            for j, size in enumerate(sizes):
                frac = result["sizes"][size]["deployed_fraction"]
                ax.bar(x + (j - (len(sizes) - 1) / 2) * width, [speedups[rt][batch][size] for rt in runtimes],
                       width, color=COLORS[j % len(COLORS)], label=f"{frac:.0%} of dense parameters")
            ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
            ax.set_xticks(x, [rt.replace("_", " ") for rt in runtimes], rotation=20, ha="right", fontsize=8)
            ax.set(title=f"batch {batch}", ylabel="speed-up over dense (×)")
        axes[0].legend(loc="upper left")
        fig.suptitle(title or f"{result['model']} deployed, CPU, {result['threads']} thread(s), float32")
    return fig


def layer_form_speedups(layers: list[dict], title: str = "") -> Figure:
    """Layer by layer, in network order: the speed-up of each factored form over the layer's dense
    form (dense time / form time), a bar per form, its value written on it; the dashed line is "as
    fast as dense". A bar is coloured where `deploy()` kept that form, grey where it kept another
    (dense, where every bar stays below the line). Stages (the name before the first ".") are
    shaded in turn; a tick reads "layer (rank/full rank)".

    `layers` is the "layers_50pct" list that benchmarks/deploy.py writes (results/benchmarks/
    deploy-cpu.json): rows with "layer", "rank", "dense_ms", "<form>_ms" per timed form and
    "form" (the one kept). Rows without times (a layer that is not timed) are left out, and so is
    a form's bar where that form was not timed (None).
    """
    timed = [r for r in layers if r.get("dense_ms")]
    forms = [k[:-3] for k in dict.fromkeys(k for r in timed for k in r)
             if k.endswith("_ms") and k != "dense_ms" and any(r.get(k) for r in timed)]
    x = np.arange(len(timed))
    width = 0.8 / max(len(forms), 1)
    with _style():
        fig, (ax,) = _figure(width=max(6.0, 0.45 * len(timed) + 1.5), height=4.0)
        stages = [r["layer"].split(".")[0] for r in timed]
        for k, stage in enumerate(dict.fromkeys(stages)):
            where = [i for i, s in enumerate(stages) if s == stage]
            if k % 2 == 0:
                ax.axvspan(where[0] - 0.5, where[-1] + 0.5, color="0.93", zorder=0, linewidth=0)
            ax.text((where[0] + where[-1]) / 2, 1.0, stage, transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=8, color="0.35")
        handles = []
        for j, form in enumerate(forms):
            rows = [i for i, r in enumerate(timed) if r.get(f"{form}_ms")]
            ratios = [timed[i]["dense_ms"] / timed[i][f"{form}_ms"] for i in rows]
            kept = [timed[i]["form"] == form for i in rows]
            colors = [COLORS[(j + 2) % len(COLORS)] if k else "0.72" for k in kept]
            bars = ax.bar(x[rows] + (j - (len(forms) - 1) / 2) * width, ratios, width, color=colors, zorder=2)
            for bar, ratio, k in zip(bars, ratios, kept):  # the value inside the bar's top, clear of the line
                ax.annotate(f"{ratio:.2f}", (bar.get_x() + bar.get_width() / 2, ratio), xytext=(0, -3),
                            textcoords="offset points", ha="center", va="top", fontsize=6,
                            color="white" if k else "black", zorder=4)
            name = form if len(forms) > 1 else f"{form} form"
            handles.append(matplotlib.patches.Patch(color=COLORS[(j + 2) % len(COLORS)], label=f"{name}: kept by deploy()"))
        if forms:
            handles.append(matplotlib.patches.Patch(
                color="0.72", label="not kept (the dense form was faster)" if len(forms) == 1 else "not kept"))
        handles.append(ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="as fast as dense", zorder=3))
        ax.set_xticks(x, [f"{r['layer']} ({r['rank']})" if r.get("rank") else r["layer"] for r in timed],
                      rotation=60, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(timed) - 0.4)
        ax.set_ylim(0, None)  # bars are read by their height
        ax.set_ylabel("speed-up over dense (×)")
        ax.set_title(title, pad=14)  # above the stage names
        ax.legend(handles=handles, loc="upper left", fontsize=7, framealpha=0.9, frameon=True)
    return fig


def results_against_paper(changes: dict, paper: dict, published: list[dict], title: str = "") -> Figure:
    """One panel a scale (`changes`: {panel title: rows}, empty panels left out): each row's accuracy
    change against the dense run of the same seed, in points: every seed a dot, the mean with its
    95% t-interval over the paired seeds (a hollow mean and no bar where one seed gives no
    interval). Every row is named on the axis, with its deployed size; its colour is its method's,
    the same in every panel; one x scale for all of them. The grey line is dense (0), the dashed
    one the paper's claim. Last panel: the published absolute accuracies on the official CIFAR-10,
    a bar the range over a study's reported operating points (a range, not an interval). The key
    sits below the panels.

    rows: label, method, deployed_fraction, diffs (points, one a seed), interval ((mean, low, high)
    or None). `paper`: label, delta_acc (points). `published` rows: label, params (lo, hi) as
    fractions of dense, acc (lo, hi) in %.
    """
    import textwrap

    panels = {name: rows for name, rows in changes.items() if rows}
    methods = list(dict.fromkeys(r["method"] for rows in panels.values() for r in rows))
    colour = {m: COLORS[i % len(COLORS)] for i, m in enumerate(methods)}
    heights = [len(rows) + 1.5 for rows in panels.values()] + [len(published) + 1.5]
    with _style():
        fig, axes = _figure(nrows=len(heights), width=8.5, height=0.3 * sum(heights) + 2.2,
                            gridspec_kw={"height_ratios": heights})
        *change_axes, pub = axes
        single = False
        for ax, (name, rows) in zip(change_axes, panels.items()):
            y = np.arange(len(rows))[::-1]
            for yi, r in zip(y, rows):
                c, diffs = colour[r["method"]], list(r.get("diffs") or [])
                ax.scatter(diffs, [yi] * len(diffs), s=16, color=c, alpha=0.45, lw=0, zorder=3)
                if r.get("interval"):
                    mean, low, high = r["interval"]
                    ax.errorbar(mean, yi, xerr=[[mean - low], [high - mean]], fmt="D", ms=5, color=c, capsize=4,
                                lw=1.6, zorder=4)
                elif diffs:
                    single = True
                    ax.scatter(np.mean(diffs), yi, marker="D", s=30, facecolor="white", edgecolor=c, lw=1.5, zorder=4)
            ax.axvline(0, color="0.45", lw=1.2, zorder=1)
            ax.axvline(paper["delta_acc"], color="black", ls="--", lw=1.2, zorder=1)
            ax.set_yticks(y, [f"{r['label']}  ({r['deployed_fraction']:.0%})" for r in rows], fontsize=8)
            for tick, r in zip(ax.get_yticklabels(), rows):
                tick.set_color(colour[r["method"]])
            ax.set_ylim(-0.7, len(rows) - 0.3)
            ax.set_title(textwrap.fill(name, 85), loc="left", fontsize=9)  # a long title wraps, not overflows
            ax.grid(axis="y", visible=False)
            ax.set_xlabel("accuracy − dense of the same seed (points)", fontsize=8)
        for ax in change_axes[1:]:
            ax.sharex(change_axes[0])
        _published_panel(pub, published)
        key = _results_key(single, paper["label"])
        fig.legend(handles=key, loc="outside lower center", ncol=2, fontsize=8)
        if title:
            fig.suptitle(title)
    return fig


def _published_panel(ax, published: list[dict]) -> None:
    """results_against_paper's last panel: published absolute accuracies, a bar a study's range."""
    y = np.arange(len(published))[::-1]
    for yi, p in zip(y, published):
        lo, hi = p["acc"]
        ax.barh(yi, max(hi - lo, 0.04), left=lo, height=0.45, color="0.6", zorder=2)

    def size(p):
        lo, hi = p["params"]
        return f"{(lo + hi) / 2:.0%}" if hi - lo < 0.05 else f"{lo:.0%}–{hi:.0%}"

    ax.set_yticks(y, [f"{p['label']}  ({size(p)})" for p in published], fontsize=8)
    ax.set_ylim(-0.7, len(published) - 0.3)
    if published:  # a bar's ends stay clear of the frame
        lo, hi = min(p["acc"][0] for p in published), max(p["acc"][1] for p in published)
        ax.set_xlim(lo - 0.08 * (hi - lo) - 0.05, hi + 0.08 * (hi - lo) + 0.05)
    ax.grid(axis="y", visible=False)
    ax.set_title("published ResNet-20 results, official CIFAR-10 (absolute accuracy)", loc="left", fontsize=9)
    ax.set_xlabel("top-1 test accuracy (%)", fontsize=8)


def _results_key(single: bool, paper_label: str) -> list:
    """results_against_paper's key, drawn below the panels."""
    from matplotlib.lines import Line2D

    key = [Line2D([], [], ls="", marker="o", ms=4, color="0.4", alpha=0.6, label="one seed's change"),
           Line2D([], [], ls="-", marker="D", ms=5, color="0.2", label="mean and its 95% interval (t, paired seeds)")]
    if single:
        key.append(Line2D([], [], ls="", marker="D", ms=5, mfc="white", color="0.2", label="one seed: no interval"))
    key += [Line2D([], [], color="0.45", lw=1.2, label="dense (no change)"),
            Line2D([], [], color="black", ls="--", lw=1.2, label=paper_label),
            matplotlib.patches.Patch(color="0.6", label="published: range over the reported operating points"),
            Line2D([], [], ls="", label="in brackets: deployed parameters / dense (FLOPs where so named)")]
    return key
