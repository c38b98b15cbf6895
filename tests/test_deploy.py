"""Inference deployment: layer forms, BatchNorm folding, channels_last, export to ONNX and torch.export."""
import numpy as np
import pytest
import torch
from torch import nn

import dprp_lib as dprp
from dprp_lib.method import forms as F
from dprp_lib.method.deployment import deploy, export


def trained_like_resnet(seed=0):
    """A factored ResNet-20 with mixed ranks (some layers below break-even, some above) and
    BatchNorm statistics that are not the identity, as after training."""
    torch.manual_seed(seed)
    model = dprp.svdify(dprp.models.build_model("resnet20"))
    for i, (_, layer) in enumerate(dprp.svd_layers(model)):
        layer.truncate(max(1, layer.max_rank // (1 + i % 3)))
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("forms", ["measured", "count"])
def test_deployed_model_computes_what_the_factored_model_computes(forms):
    model = trained_like_resnet()
    x = torch.randn(6, 3, 32, 32)
    small = deploy(model, x, forms=forms)
    assert not any(isinstance(m, (nn.BatchNorm2d, dprp.SVDLayer)) for m in small.modules())
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
               for m in small.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[-1] > 1)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-4)
    assert model.training is False  # the factored model is left as it was found
    if forms == "count":  # BatchNorm folding removes 2 values a channel and adds a conv bias (1 a channel)
        bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
        assert dprp.count_params(small) == dprp.deployed_params(model) - bn_channels


def test_measured_forms_take_the_faster_form_and_skip_layers_above_break_even(monkeypatch):
    model = trained_like_resnet()
    timed = []

    def fake_time(layer, shape, *args, **kwargs):
        timed.append(layer)
        # pretend the factored form wins only where the rank is even
        return {"dense": 1.0, "factored": 0.5 if layer.rank % 2 == 0 else 2.0}

    monkeypatch.setattr(F, "time_forms", fake_time)
    monkeypatch.setattr(F, "_CHOSEN", {})
    timings = {}
    chosen = F.measure_forms(model, torch.randn(2, 3, 32, 32), timings=timings)
    layers = dict(dprp.svd_layers(model))
    assert set(chosen) == set(layers)
    for name, layer in layers.items():
        if not layer.factored_is_cheaper:
            assert chosen[name] == "dense" and name not in timings
        else:
            assert chosen[name] == ("factored" if layer.rank % 2 == 0 else "dense")
    assert {"dense", "factored"} == set(chosen.values())
    # the choice is remembered per layer shape: a second call times nothing new
    timed.clear()
    assert F.measure_forms(model, torch.randn(2, 3, 32, 32)) == chosen and not timed
    # compact follows the forms given: a dense form keeps m·n weights even below break-even
    small = dprp.compact(model, chosen)
    for name, layer in layers.items():
        deployed = small.get_submodule(name)
        assert isinstance(deployed, nn.Sequential) == (chosen[name] == "factored")


def test_time_forms_measures_both_forms_and_restores_the_layer():
    layer = dprp.SVDConv2d(16, 16, 3, padding=1, rank=4)
    layer.forward_mode = "dense"
    t = F.time_forms(layer, (4, 16, 8, 8), training=True, repeats=2)
    assert set(t) == {"dense", "factored"} and all(v > 0 for v in t.values())
    assert layer.forward_mode == "dense" and layer.U.grad is None


def test_set_forms_and_bad_forms():
    model = trained_like_resnet()
    name = dprp.svd_layers(model)[0][0]
    F.set_forms(model, {name: "factored"})
    assert model.get_submodule(name).forward_mode == "factored"
    F.set_forms(model, None)
    assert all(layer.forward_mode == "auto" for _, layer in dprp.svd_layers(model))
    with pytest.raises(ValueError, match="forms must be one of"):
        deploy(model, torch.zeros(1, 3, 32, 32), forms="fastest")
    with pytest.raises(ValueError, match="not factored layers"):
        dprp.compact(model, {"fc.nope": "dense"})
    with pytest.raises(ValueError, match="form must be one of"):
        dprp.compact(model, {name: "fast"})
    with pytest.raises(ValueError, match="image batch"):
        deploy(model, torch.zeros(3, 32, 32))


@pytest.mark.slow
def test_onnx_export_runs_in_onnx_runtime_with_any_batch_size(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = trained_like_resnet(1)
    small = deploy(model, torch.randn(4, 3, 32, 32))
    path = export(small, tmp_path / "model.onnx", torch.randn(2, 3, 32, 32))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32)
        (out,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_torch_export_and_atomic_replacement(tmp_path):
    model = trained_like_resnet(2)
    small = deploy(model, torch.randn(2, 3, 32, 32), forms="count")
    path = tmp_path / "model.pt2"
    export(small, path, torch.randn(2, 3, 32, 32))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load(path).module()(x), model(x), rtol=1e-4, atol=1e-4)

    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("cannot trace this")

    before = path.read_bytes()
    with pytest.raises(Exception, match="cannot trace"):
        export(Broken(), path, torch.randn(2, 3, 32, 32))
    assert path.read_bytes() == before  # the old file survives a failed export
    # and no partial file is left (beside the first export's record of its layer forms)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2", "model.pt2.deployment.json"]
    with pytest.raises(ValueError, match=r"model\.tflite.*\.onnx.*\.pt2"):
        export(small, tmp_path / "model.tflite", x)


@pytest.mark.parametrize("groups,rank", [(1, 5), (1, 8), (2, 3), (1, 1)])
def test_a_padded_rank_computes_the_same_function_with_aligned_weights(groups, rank, f64):
    from dprp_lib.method.convert import aligned_rank, compact

    torch.manual_seed(rank)
    conv = dprp.SVDConv2d(8, 16, 3, padding=1, groups=groups)
    conv.truncate(rank)
    lin = dprp.SVDLinear(20, 12)
    lin.truncate(rank)
    for layer, x in ((conv, torch.randn(2, 8, 6, 6)), (lin, torch.randn(3, 20))):
        padded, factored = compact(layer, {"": "padded"}), compact(layer, {"": "factored"})
        r = aligned_rank(rank)
        first, second = padded
        expected = (groups * r, r) if layer is conv else (r, r)  # stage 1 outputs, stage 2 inputs per group
        assert (first.weight.shape[0], second.weight.shape[1]) == expected
        # zero directions: the same outputs to float64 rounding, and the cost of the padding in weights
        torch.testing.assert_close(padded(x), layer(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(padded(x), factored(x), rtol=1e-12, atol=1e-12)
        per_direction = (layer.m + layer.n) * layer.groups
        assert dprp.count_params(padded) - dprp.count_params(factored) == (r - rank) * per_direction
    assert [aligned_rank(r) for r in (1, 7, 8, 9, 17)] == [8, 8, 8, 16, 24]
    with pytest.raises(ValueError, match="form"):
        compact(lin, {"": "aligned"})


def test_deployed_forms_time_the_plain_modules_and_keep_the_fastest(monkeypatch):
    from dprp_lib.method import deployment as D

    model = trained_like_resnet()
    calls = []

    def fake_median(fn, repeats):
        fn()
        calls.append(None)
        return [3.0, 2.0, 1.0][len(calls) % 3]  # timings that differ from call to call

    monkeypatch.setattr(D, "_median_time", fake_median)
    timings = {}
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    chosen = D.deployed_forms(model, x, timings=timings)
    for name, layer in dprp.svd_layers(model):
        if not layer.factored_is_cheaper:
            assert chosen[name] == "dense" and name not in timings
        elif layer.rank % 8:
            assert set(timings[name]) == {"dense", "factored", "padded"}
        else:  # already aligned: padding would add nothing
            assert set(timings[name]) == {"dense", "factored"}
    assert "padded" in chosen.values()
    small = D.compact(model, chosen).eval()
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-4)


def test_forms_are_timed_in_onnx_runtime_for_an_onnx_export_and_saved_beside_it(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import json

    model = trained_like_resnet(3)
    x = torch.randn(4, 3, 32, 32)
    small = deploy(model, x, runtime="onnxruntime")
    info = small.deployment
    assert info["runtime"] == "onnxruntime" and info["batch"] == 4
    timed = {n for n, layer in dprp.svd_layers(model) if layer.factored_is_cheaper}
    assert set(info["seconds"]) == timed and set(info["forms"]) == {n for n, _ in dprp.svd_layers(model)}
    assert all(info["forms"][n] == min(info["seconds"][n], key=info["seconds"][n].get) for n in timed)
    path = export(small, tmp_path / "model.onnx", x)
    assert json.loads((tmp_path / "model.onnx.deployment.json").read_text())["forms"] == info["forms"]
    (out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="runtime"):
        deploy(model, x, runtime="tensorrt")


@pytest.mark.slow
def test_forms_are_timed_compiled_for_torch_compile_each_form_compiled_for_itself():
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = dprp.svdify(dprp.models.build_model("small_cnn"))
    for _, layer in dprp.svd_layers(model):
        layer.truncate(max(1, layer.max_rank // 3))
    model.eval()
    x = torch.randn(4, 1, 28, 28)
    counters.clear()
    small = deploy(model, x, runtime="compiled")
    info = small.deployment
    assert info["runtime"] == "compiled" and set(info["seconds"]) == {n for n, l in dprp.svd_layers(model)
                                                                      if l.factored_is_cheaper}
    assert all(info["forms"][n] == min(t, key=t.get) for n, t in info["seconds"].items())
    # every timed form was compiled into a graph of its own: none ran eager after dynamo's
    # recompile limit (the forms share their forward code), more than 8 here
    timed = sum(len(t) for t in info["seconds"].values())
    assert timed > 8 and counters["stats"]["unique_graphs"] == timed
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(small)(x), model(x), rtol=1e-4, atol=1e-4)


def _fake_whole_model_time(monkeypatch, cost):
    """stage_checked_forms times whole models: make a model's time `cost(forms)`, no clock."""
    from dprp_lib.method import deployment as D

    monkeypatch.setattr(D, "_plain", lambda model, forms, *a: (lambda x: cost(forms)))
    monkeypatch.setattr(D, "interleaved_times", lambda calls, **kw: {k: call() for k, call in calls.items()})


def test_stage_check_turns_a_stage_dense_only_where_the_whole_model_gets_faster(monkeypatch):
    from dprp_lib.method.deployment import stage_checked_forms

    model = trained_like_resnet()
    per_layer = {name: "factored" for name, _ in dprp.svd_layers(model)}
    # as at batch 1: two stages cost more than one convolution in layer1, less in layer3
    weight = {"conv1": 0.0, "layer1": 1.0, "layer2": 0.2, "layer3": -0.5, "fc": 0.0}
    def cost(forms):
        return 10 + sum(weight[n.split(".")[0]] for n, f in forms.items() if f != "dense")
    _fake_whole_model_time(monkeypatch, cost)
    seconds = {}
    chosen = stage_checked_forms(model, per_layer, torch.zeros(1, 3, 32, 32), seconds=seconds)
    stage = {n: n.split(".")[0] for n in chosen}
    assert all(f == "dense" for n, f in chosen.items() if stage[n] in ("layer1", "layer2"))
    assert all(f == "factored" for n, f in chosen.items() if stage[n] == "layer3")
    assert cost(chosen) == min(seconds.values()) < cost(dict.fromkeys(chosen, "dense"))
    assert {"per layer", "layer1 dense", "layer3 dense", "every layer dense"} <= set(seconds)


def test_stage_check_falls_back_to_every_layer_dense_when_no_stage_alone_pays(monkeypatch):
    from dprp_lib.method.deployment import stage_checked_forms

    model = trained_like_resnet()
    per_layer = {name: "factored" for name, _ in dprp.svd_layers(model)}
    # mixing the two kinds of layer costs most, so no single stage turned dense pays; every layer dense does
    def cost(forms):
        return {frozenset({"factored"}): 4.5, frozenset({"dense"}): 4.0}.get(frozenset(forms.values()), 6.0)
    _fake_whole_model_time(monkeypatch, cost)
    seconds = {}
    chosen = stage_checked_forms(model, per_layer, torch.zeros(1, 3, 32, 32), seconds=seconds)
    assert set(chosen.values()) == {"dense"} and seconds["every layer dense"] == 4.0
    assert all(t == 6.0 for k, t in seconds.items() if k.endswith(" dense") and k != "every layer dense")


def test_stage_check_keeps_every_layer_dense_unless_a_factored_model_beats_it_by_the_margin(monkeypatch):
    from dprp_lib.method.deployment import stage_checked_forms

    model = trained_like_resnet()
    per_layer = {name: "factored" for name, _ in dprp.svd_layers(model)}
    for gain, expected in ((0.01, {"dense"}), (0.05, {"factored"})):  # all factored: 1% / 5% faster than dense
        def cost(forms):
            kinds = set(forms.values())
            return 1.0 if kinds == {"dense"} else 1.0 - gain if kinds == {"factored"} else 2.0
        _fake_whole_model_time(monkeypatch, cost)
        assert set(stage_checked_forms(model, per_layer, torch.zeros(1, 3, 32, 32), margin=0.03).values()) == expected
    assert stage_checked_forms(model, dict.fromkeys(per_layer, "dense"), None) == dict.fromkeys(per_layer, "dense")


def test_a_stage_checked_deployment_at_batch_1_computes_what_the_factored_model_computes():
    model = trained_like_resnet(1)
    x = torch.randn(1, 3, 32, 32)
    small = deploy(model, x, check_stages=True)
    checked = small.deployment["stage_check_seconds"]
    assert "per layer" in checked and all(t > 0 for t in checked.values())
    assert set(small.deployment["forms"]) == {n for n, _ in dprp.svd_layers(model)}
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-4)
    assert deploy(model, x).deployment["stage_check_seconds"] is None  # only when asked
