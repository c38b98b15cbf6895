import torch

import dprp_lib as dprp


def test_spectrum_gap_is_zero_for_an_exact_svd_and_grows_with_drift():
    torch.manual_seed(0)
    model = dprp.svdify(torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.Conv2d(8, 8, 3, groups=2)))
    assert dprp.spectrum_gap(model) < 1e-6
    with torch.no_grad():
        for _, layer in dprp.svd_layers(model):
            layer.U.mul_(2.0)  # every true singular value doubles, |s| does not
    assert abs(dprp.spectrum_gap(model) - 0.5) < 1e-6  # ‖s − 2s‖ / ‖2s‖


def test_order_violations_counts_adjacent_pairs():
    layer = dprp.SVDLinear(6, 4)
    with torch.no_grad():
        layer.s.copy_(torch.tensor([3.0, 1.0, 2.0, -4.0]))
    assert dprp.order_violations(layer) == 2 / 3
    assert dprp.order_violations(torch.nn.Linear(2, 2)) == 0.0
