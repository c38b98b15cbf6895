import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import dprp_lib as dprp


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 2, 3]))
    in_ch = groups * draw(st.integers(1, 4))
    out_ch = groups * draw(st.integers(1, 5))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.sampled_from([1, 2, (1, 2)]))
    dilation = draw(st.sampled_from([1, 2, (2, 1)]))
    padding = draw(st.sampled_from([0, 1, (2, 0), "valid"] + (["same"] if stride == 1 else [])))
    padding_mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    bias = draw(st.booleans())
    return dict(in_channels=in_ch, out_channels=out_ch, kernel_size=k, stride=stride, padding=padding,
                dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode)


def _input(cfg, dtype):
    return torch.randn(2, cfg["in_channels"], 9, 8, dtype=dtype)


@settings(max_examples=60, deadline=None)
@given(conv_configs(), st.integers(0, 2**16))
def test_conv_from_dense_is_exact_float64(cfg, seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(**cfg, dtype=torch.float64)
    layer = dprp.SVDConv2d.from_dense(conv)
    x = _input(cfg, torch.float64)
    expected = conv(x)
    for mode in ("dense", "factored"):
        layer.forward_mode = mode
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(layer.to_dense()(x), expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(layer.to_dense().weight, conv.weight, rtol=0, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(conv_configs(), st.integers(0, 2**16))
def test_conv_from_dense_float32(cfg, seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(**cfg)
    layer = dprp.SVDConv2d.from_dense(conv)
    x = _input(cfg, torch.float32)
    expected = conv(x)
    scale = expected.abs().max().item() + 1e-6
    for mode in ("dense", "factored"):
        layer.forward_mode = mode
        assert (layer(x) - expected).abs().max().item() <= 1e-5 * scale


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.booleans(), st.integers(0, 2**16))
def test_linear_from_dense_is_exact(in_f, out_f, bias, seed):
    torch.manual_seed(seed)
    lin = nn.Linear(in_f, out_f, bias, dtype=torch.float64)
    layer = dprp.SVDLinear.from_dense(lin)
    x = torch.randn(3, 2, in_f, dtype=torch.float64)  # extra leading dims, as nn.Linear allows
    for mode in ("dense", "factored"):
        layer.forward_mode = mode
        torch.testing.assert_close(layer(x), lin(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(layer.to_dense().weight, lin.weight, rtol=0, atol=1e-10)


def test_factor_shapes_and_rank():
    conv = nn.Conv2d(8, 16, 3)
    layer = dprp.SVDConv2d.from_dense(conv)
    assert layer.U.shape == (16, 16) and layer.s.shape == (16,) and layer.V.shape == (72, 16)
    assert layer.rank == 16 and all(isinstance(p, nn.Parameter) for p in (layer.U, layer.s, layer.V))
    grouped = dprp.SVDConv2d.from_dense(nn.Conv2d(8, 12, 3, groups=2))
    assert grouped.U.shape == (2, 6, 6) and grouped.s.shape == (2, 6) and grouped.V.shape == (2, 36, 6)
    assert dprp.SVDLinear.from_dense(nn.Linear(64, 10)).V.shape == (64, 10)


def test_fresh_layer_is_svd_of_a_torch_initialised_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    torch.manual_seed(0)
    layer = dprp.SVDConv2d(4, 6, 3, padding=1)
    torch.testing.assert_close(layer.weight, conv.weight, rtol=1e-5, atol=1e-6)
    assert layer.rank == 6 and dprp.SVDConv2d(4, 6, 3, rank=2).rank == 2


def _rank_k_product(U, s, V, k):
    return U[..., :k] @ torch.diag_embed(s[..., :k]) @ V[..., :k].transpose(-1, -2)


@pytest.mark.parametrize("groups", [1, 2])
def test_truncate_is_the_rank_k_product_of_the_first_k_directions(groups, f64):
    torch.manual_seed(1)
    layer = dprp.SVDConv2d(6, 8, 3, groups=groups)
    with torch.no_grad():  # move off the exact SVD so that "first k" is not "largest k"
        layer.s.copy_(torch.rand_like(layer.s))
    U, s, V = (t.detach().clone() for t in layer.factors())
    expected = _rank_k_product(U, s, V, 2).reshape(8, 6 // groups, 3, 3)
    layer.truncate(2)
    assert layer.rank == 2
    torch.testing.assert_close(layer.weight, expected, rtol=0, atol=1e-12)
    x = torch.randn(1, 6, 5, 5)
    for mode in ("dense", "factored"):
        layer.forward_mode = mode
        torch.testing.assert_close(layer(x), nn.functional.conv2d(x, expected, layer.bias, groups=groups))


def test_truncate_keeps_parameter_objects_and_slices_grads():
    layer = dprp.SVDLinear(10, 6)
    ids = [id(p) for p in layer.factors()]
    layer(torch.randn(4, 10)).sum().backward()
    layer.truncate(3)
    assert [id(p) for p in layer.factors()] == ids
    assert all(p.grad.shape == p.shape for p in layer.factors())
    layer(torch.randn(4, 10)).sum().backward()  # accumulates into the sliced grads


def test_auto_mode_picks_the_cheaper_form():
    layer = dprp.SVDConv2d(16, 16, 3)  # m=16, n=144: two stages cheaper below r·160 < 2304, r <= 14
    assert not layer.uses_factored_forward()
    layer.truncate(14)
    assert layer.uses_factored_forward()


@pytest.mark.parametrize("mode", ["dense", "factored"])
def test_gradcheck(mode, f64):
    torch.manual_seed(0)
    conv = dprp.SVDConv2d(4, 6, 3, stride=2, padding=1, groups=2, rank=2)
    lin = dprp.SVDLinear(5, 4, rank=3)
    conv.forward_mode = lin.forward_mode = mode
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, U, s, V, b: _call(conv, x, U, s, V, b),
                                    (x, conv.U, conv.s, conv.V, conv.bias))
    z = torch.randn(2, 5, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z, U, s, V, b: _call(lin, z, U, s, V, b),
                                    (z, lin.U, lin.s, lin.V, lin.bias))


def _call(layer, x, U, s, V, b):
    return torch.func.functional_call(layer, {"U": U, "s": s, "V": V, "bias": b}, (x,))


def test_bad_arguments_are_named():
    conv = nn.Conv2d(4, 6, 3)
    with pytest.raises(ValueError, match="rank"):
        dprp.SVDConv2d.from_dense(conv, rank=0)
    with pytest.raises(ValueError, match="rank"):
        dprp.SVDConv2d.from_dense(conv, rank=7)  # min(m, n) = 6
    with pytest.raises(TypeError, match="rank"):
        dprp.SVDConv2d.from_dense(conv, rank=2.5)
    layer = dprp.SVDConv2d.from_dense(conv, rank=4)
    with pytest.raises(ValueError, match="k"):
        layer.truncate(5)
    with pytest.raises(ValueError, match="k"):
        layer.truncate(0)
    with pytest.raises(ValueError, match="forward_mode"):
        layer.forward_mode = "fast"
    with pytest.raises(TypeError, match="conv"):
        dprp.SVDConv2d.from_dense(nn.Conv1d(4, 6, 3))
    with pytest.raises(TypeError, match="linear"):
        dprp.SVDLinear.from_dense(conv)
    with pytest.raises(ValueError, match="padding"):
        dprp.SVDConv2d(4, 6, 3, padding="full")
    with pytest.raises(ValueError, match="padding_mode"):
        dprp.SVDConv2d(4, 6, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="groups"):
        dprp.SVDConv2d(4, 6, 3, groups=4)


def test_state_dict_carries_the_rank():
    a = dprp.SVDConv2d(8, 8, 3, bias=True)
    a.truncate(3)
    b = dprp.SVDConv2d(8, 8, 3, bias=True)
    b.load_state_dict(a.state_dict())
    assert b.rank == 3
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(b(x), a(x))
