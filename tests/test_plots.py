"""Figures draw what their labels say."""
import numpy as np
import torch

from dprp_lib import plots


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
