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
