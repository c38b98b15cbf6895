import pytest
import torch
from torch import nn

import dprp_lib as dprp
from dprp_lib.engine import models


def test_svdify_replaces_every_conv_and_linear_exactly():
    torch.manual_seed(0)
    model = models.resnet20().eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    assert dprp.svdify(model) is model
    assert not any(type(m) in (nn.Conv2d, nn.Linear) for m in model.modules())
    assert len(dprp.svd_layers(model)) == 20
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_svdify_skip_by_name_and_by_function():
    model = dprp.svdify(models.resnet20(), skip=["conv1", "fc"])
    assert type(model.conv1) is nn.Conv2d and type(model.fc) is nn.Linear
    assert isinstance(model.layer1[0].conv1, dprp.SVDConv2d)
    model = dprp.svdify(models.resnet20(), skip=lambda name, m: isinstance(m, nn.Linear))
    assert type(model.fc) is nn.Linear and isinstance(model.conv1, dprp.SVDConv2d)
    with pytest.raises(ValueError, match="skip"):
        dprp.svdify(models.resnet20(), skip=["fc1"])
    assert isinstance(dprp.svdify(nn.Linear(3, 2)), dprp.SVDLinear)


def _pruned_resnet(rank_fraction):
    torch.manual_seed(0)
    model = dprp.svdify(models.resnet20()).eval()
    for _, layer in dprp.svd_layers(model):
        layer.truncate(max(1, int(layer.max_rank * rank_fraction)))
    return model


def test_compact_agrees_and_is_smaller_below_break_even():
    model = _pruned_resnet(0.5)
    small = dprp.compact(model).eval()
    assert not any(isinstance(m, dprp.SVDLayer) for m in small.modules())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-5)
    assert dprp.count_params(small) < dprp.count_params(models.resnet20())
    assert dprp.count_params(small) == dprp.deployed_params(model)
    assert dprp.count_macs(small) < dprp.count_macs(models.resnet20())


def test_compact_keeps_dense_form_at_full_rank():
    model = dprp.svdify(models.resnet20())
    small = dprp.compact(model)
    assert dprp.count_params(small) == dprp.count_params(models.resnet20())
    assert sum(isinstance(m, nn.Conv2d) for m in small.modules()) == 19


@pytest.mark.parametrize("groups,padding_mode", [(1, "zeros"), (2, "reflect")])
def test_compact_of_grouped_and_padded_conv(groups, padding_mode):
    conv = nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=groups, padding_mode=padding_mode)
    layer = dprp.SVDConv2d.from_dense(conv, rank=2)
    small = dprp.compact(layer)
    assert isinstance(small, nn.Sequential)
    x = torch.randn(1, 8, 9, 9)
    torch.testing.assert_close(small(x), layer(x), rtol=1e-5, atol=1e-6)
    assert dprp.count_params(small) == groups * 2 * (12 // groups + 8 // groups * 9) + 12


def test_rank_table_rows():
    model = _pruned_resnet(0.5)
    rows = dprp.rank_table(model)
    assert len(rows) == 20
    row = next(r for r in rows if r["layer"] == "layer3.1.conv1")
    assert (row["m"], row["n"], row["rank"], row["max_rank"]) == (64, 576, 32, 64)
    assert row["break_even"] == 57.5 and row["factored_params"] == 32 * 641
    assert row["deployed_params"] == 32 * 640 and row["forward"] == "factored"
    assert "layer3.1.conv1" in dprp.format_table(rows)


def test_full_rank_factored_resnet20_size():
    # ../shared/notes/paper.md: full-rank U, s, V of ResNet-20's convs hold 300,896 parameters
    rows = dprp.rank_table(dprp.svdify(models.resnet20()))
    convs = [r for r in rows if r["kind"] == "conv"]
    assert sum(r["factored_params"] for r in convs) == 300_896
    assert sum(r["dense_params"] for r in convs) == 267_696
