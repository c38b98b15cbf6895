"""Figures draw what their labels say."""
import numpy as np
import torch

from dprp_lib.course import plots


def test_singular_values_are_drawn_in_index_order():
    s = torch.tensor([1.0, 3.0, 2.0, -0.5])  # unsorted, one negative: |s| in the stored order
    fig = plots.singular_values({"layer": s}, normalise=False, log=False)
    (line,) = fig.axes[0].get_lines()
    assert np.allclose(line.get_xdata(), [1, 2, 3, 4]) and np.allclose(line.get_ydata(), [1.0, 3.0, 2.0, 0.5])
    normalised = plots.singular_values({"layer": s}).axes[0].get_lines()[0].get_ydata()
    assert np.allclose(normalised, [1.0, 3.0, 2.0, 0.5])  # ÷ |s_1|, still in index order


def test_deploy_speedups_draw_one_bar_per_runtime_and_size():
    result = {"model": "resnet20", "threads": 2,
              "sizes": {"~50%": {"deployed_fraction": 0.48}, "~30%": {"deployed_fraction": 0.31}},
              "speedup_vs_dense": {"eager": {"1": {"~50%": 1.1, "~30%": 1.4}, "256": {"~50%": 0.9, "~30%": 1.2}},
                                   "onnxruntime": {"1": {"~50%": 1.0, "~30%": 1.3}, "256": {"~50%": 1.5, "~30%": 2.0}}}}
    fig = plots.deploy_speedups(result)
    assert [ax.get_title() for ax in fig.axes] == ["batch 1", "batch 256"]
    heights = sorted(round(p.get_height(), 2) for p in fig.axes[1].patches)
    assert heights == [0.9, 1.2, 1.5, 2.0]


def test_tradeoff_labels_of_close_points_do_not_overlap():
    points = [{"deployed_fraction": 0.73, "test_acc": 0.534, "label": "×0", "group": "l1"},
              {"deployed_fraction": 0.731, "test_acc": 0.533, "label": "×0.5", "group": "hoyer"},
              {"deployed_fraction": 0.732, "test_acc": 0.5335, "label": "×0.5", "group": "hoyer_square"},
              {"deployed_fraction": 0.3, "test_acc": 0.47, "label": "×2", "group": "l1"}]
    fig = plots.tradeoff(points)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    assert len(boxes) == 4
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def _texts(fig):
    return " | ".join(t.get_text() for t in fig.axes[0].texts)


def test_factored_layer_diagram_counts_the_weights_of_each_form():
    text = _texts(plots.factored_layer_diagram(c_in=16, c_out=32, k=3, r=8))
    # dense 32×144; factored: Vᵀ 144·8, U 32·8, and U, s, V as trained 8·(32 + 144 + 1)
    assert "4,608 weights" in text and "1,152 weights" in text and "256 weights" in text and "1,416 numbers" in text


def test_dprp_loop_diagram_names_each_step():
    text = _texts(plots.dprp_loop_diagram())
    for step in ("svdify", "train one epoch", "cut due", "energy rule", "optimizer state", "compact()"):
        assert step in text, step


def test_energy_cut_keeps_the_leading_values_in_each_order():
    s = torch.tensor([3.0, 0.2, 2.0, 1.0])
    fig = plots.energy_cut(s, 0.1)
    assert [ax.get_title() for ax in fig.axes] == ["as stored (index order): keeps 3 of 4", "sorted: keeps 2 of 4"]
    stored = [round(p.get_height(), 2) for p in fig.axes[0].patches]
    assert stored == [3.0, 0.2, 2.0, 1.0]  # drawn in the stored order, not sorted


def test_break_even_figure_crosses_one_at_the_break_even_ranks():
    fig = plots.break_even(64, 576)
    trained, deployed = fig.axes[0].get_lines()[:2]
    r = trained.get_xdata()
    assert np.allclose(trained.get_ydata(), r * (64 + 576 + 1) / (64 * 576))
    assert np.allclose(deployed.get_ydata(), r * (64 + 576) / (64 * 576))


def test_tradeoff_labels_sit_nearest_their_own_points():
    """Chapter 06's case: dense (51.1%) and posthoc (52.4%) at the same size, 1.3 points apart."""
    import numpy as np

    from dprp_lib.course import plots

    points = [{"label": "dense", "deployed_fraction": 1.0, "test_acc": 0.511},
              {"label": "dprp", "deployed_fraction": 0.415, "test_acc": 0.452},
              {"label": "svd-training", "deployed_fraction": 0.78, "test_acc": 0.513},
              {"label": "posthoc", "deployed_fraction": 1.0, "test_acc": 0.524},
              {"label": "posthoc at DPRP's ranks", "deployed_fraction": 0.415, "test_acc": 0.113}]
    fig = plots.tradeoff(points)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    centres = ax.transData.transform([(p["deployed_fraction"], p["test_acc"]) for p in points])
    texts = {a.get_text(): a for a in ax.texts}
    for i, p in enumerate(points):
        box = texts[p["label"]].get_window_extent(renderer)
        # the nearest marker to the label's box is its own point
        gaps = [np.hypot(max(box.x0 - cx, 0, cx - box.x1), max(box.y0 - cy, 0, cy - box.y1)) for cx, cy in centres]
        assert int(np.argmin(gaps)) == i, (p["label"], gaps)
