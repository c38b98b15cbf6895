import math

import pytest
import torch
from torch import nn

import dprp_lib as dprp


def _net():
    torch.manual_seed(0)
    return dprp.svdify(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=2), nn.Flatten(),
                                     nn.Linear(8, 5)))


def test_orthogonality_is_zero_at_the_exact_svd_and_matches_the_formula():
    net = _net()
    assert dprp.orthogonality(net).item() < 1e-10
    with torch.no_grad():
        for _, layer in dprp.svd_layers(net):
            layer.U.add_(0.1)
    expected = 0.0
    for _, layer in dprp.svd_layers(net):
        for g in range(layer.groups):
            U = layer.U[g] if layer.groups > 1 else layer.U
            V = layer.V[g] if layer.groups > 1 else layer.V
            eye = torch.eye(layer.rank)
            expected += (((U.T @ U - eye) ** 2).sum() + ((V.T @ V - eye) ** 2).sum()).item() / layer.rank ** 2
    assert dprp.orthogonality(net).item() == pytest.approx(expected, rel=1e-5)
    assert expected > 0.01


def test_sorting_penalises_each_out_of_order_pair():
    layer = dprp.SVDLinear(6, 4)
    with torch.no_grad():
        layer.s.copy_(torch.tensor([3.0, 1.0, 2.0, -4.0]))  # |s|: 3, 1, 2, 4 -> (2-1) + (4-2)
    assert dprp.sorting(layer).item() == pytest.approx(3.0)
    with torch.no_grad():
        layer.s.copy_(torch.tensor([4.0, 3.0, -2.0, 1.0]))
    assert dprp.sorting(layer).item() == 0.0


def test_sparsity_kinds():
    layer = dprp.SVDLinear(6, 4)
    with torch.no_grad():
        layer.s.copy_(torch.tensor([3.0, -4.0, 0.0, 0.0]))
    assert dprp.sparsity(layer, "l1").item() == pytest.approx(7.0)
    assert dprp.sparsity(layer, "hoyer").item() == pytest.approx(7.0 / 5.0)
    assert dprp.sparsity(layer, "hoyer_square").item() == pytest.approx(49.0 / 25.0)
    with pytest.raises(ValueError, match="sparse_kind"):
        dprp.sparsity(layer, "l0")


def test_regularizer_returns_weighted_total_and_parts():
    net = _net()
    with torch.no_grad():
        for _, layer in dprp.svd_layers(net):
            layer.U.mul_(1.1)
            layer.s.copy_(layer.s.flip(-1))
    reg = dprp.Regularizer(orth=0.5, sort=2.0, sparse=0.1, sparse_kind="hoyer")
    total, parts = reg(net)
    assert set(parts) == {"orth", "sort", "sparse"}
    assert all(v.item() > 0 for v in parts.values())
    expected = 0.5 * parts["orth"] + 2.0 * parts["sort"] + 0.1 * parts["sparse"]
    assert total.item() == pytest.approx(expected.item())
    total.backward()
    assert all(p.grad is not None for _, l in dprp.svd_layers(net) for p in l.factors())


def test_regularizer_on_a_model_without_factored_layers_is_zero():
    total, parts = dprp.Regularizer()(nn.Linear(3, 2))
    assert total.item() == 0.0 and all(v.item() == 0.0 for v in parts.values())


@pytest.mark.parametrize("arg", ["orth", "sort", "sparse"])
def test_bad_weights_are_named(arg):
    with pytest.raises(ValueError, match=arg):
        dprp.Regularizer(**{arg: -1e-3})
    with pytest.raises(ValueError, match=arg):
        dprp.Regularizer(**{arg: math.nan})
    with pytest.raises(TypeError, match=arg):
        dprp.Regularizer(**{arg: "0.1"})
    with pytest.raises(ValueError, match="sparse_kind"):
        dprp.Regularizer(sparse_kind="l2")
