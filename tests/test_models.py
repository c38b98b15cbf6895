import pytest
import torch

import dprp_lib as dprp
from dprp_lib.engine import models


def cifar_resnet_counts(n: int, num_classes: int = 10):
    """Closed-form parameters and MACs of the 6n+2 CIFAR ResNet with option-A shortcuts.

    Written from the architecture's description (He et al. 2016, §4.2), not from the code.
    """
    params = 3 * 16 * 9 + 2 * 16  # stem conv + BN
    macs = 32 * 32 * 16 * 3 * 9
    c_in, size = 16, 32
    for c in (16, 32, 64):
        for b in range(n):
            first_in = c_in if b == 0 else c
            if b == 0 and c != 16:
                size //= 2
            params += first_in * c * 9 + c * c * 9 + 4 * c  # two convs + two BNs
            macs += size * size * c * (first_in * 9 + c * 9)
        c_in = c
    params += 64 * num_classes + num_classes
    macs += 64 * num_classes
    return params, macs


def test_resnet20_matches_published_counts():
    m = models.resnet20()
    assert dprp.count_params(m) == 269_722
    assert dprp.count_macs(m, (1, 3, 32, 32)) == 40_551_040
    assert cifar_resnet_counts(3) == (269_722, 40_551_040)  # the closed form agrees too


@pytest.mark.parametrize("depth,builder", [(32, models.resnet32), (56, models.resnet56), (110, models.resnet110)])
def test_deeper_resnets_match_closed_form(depth, builder):
    m = builder()
    n = (depth - 2) // 6
    assert (dprp.count_params(m), dprp.count_macs(m)) == cifar_resnet_counts(n)


def test_resnet32_cifar100_head():
    m = models.resnet32(num_classes=100)
    assert dprp.count_params(m) == cifar_resnet_counts(5, 100)[0]
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_macs_scale_with_batch():
    m = models.resnet20()
    assert dprp.count_macs(m, (3, 3, 32, 32)) == 3 * 40_551_040


def test_resnet18_cifar_size():
    m = models.resnet18()
    assert dprp.count_params(m) == 11_173_962  # the usual CIFAR ResNet-18 (3x3 stem, projection shortcuts)
    assert m(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_small_cnn_takes_28x28():
    m = models.small_cnn()
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_option_a_shortcut_has_no_parameters_and_pads_channels():
    block = models.BasicBlock(16, 32, stride=2)
    assert sum(p.numel() for p in block.shortcut.parameters()) == 0
    x = torch.randn(1, 16, 8, 8)
    y = block.shortcut(x)
    assert y.shape == (1, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and y[:, :8].abs().sum() == 0


def test_build_model_rejects_unknown_name():
    with pytest.raises(ValueError, match="model"):
        models.build_model("resnet21")


def test_width_scales_every_stage():
    thin = models.build_model("resnet20", width=0.5)
    assert [thin.conv1.out_channels, thin.layer2[0].conv1.out_channels, thin.fc.in_features] == [8, 16, 32]
    assert dprp.count_params(thin) < dprp.count_params(models.resnet20()) / 3
    with pytest.raises(ValueError, match="width"):
        models.build_model("resnet20", width=0)
