"""A trained model built for inference, and its export to ONNX or torch.export.

`deploy(model, example)` goes further than `compact()`:
  1. each factored layer takes the form measured fastest at the example's shape, timed as the
     plain modules inference runs (not only the one with fewer weights: see dprp_lib.method.forms):
     dense, two stages with s folded into U, or two stages with the rank padded by zero
     directions to a multiple of 8 (the same function; see convert.DEPLOYED_FORMS);
  2. every BatchNorm is folded into the convolution before it (the second stage of a
     factored layer), so inference runs no separate normalisation;
  3. weights and activations in channels_last, the layout CPU convolutions run fastest in.
It still computes what the factored model computes (to float32 rounding), in eval mode.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from .checkpoint import write_text_atomic
from .convert import DEPLOYED_FORMS, _deployed_form, aligned_rank, compact
from .forms import _median_time, check_forms, input_shapes, interleaved_times, random_input

EXPORT_FORMATS = {".onnx": "ONNX (ONNX Runtime and other runtimes)", ".pt2": "torch.export (torch.export.load)"}


def deploy(model: nn.Module, example: torch.Tensor, forms: str = "measured", fold_batchnorm: bool = True,
           channels_last: bool = True, runtime: str = "eager", check_stages: bool = False) -> nn.Module:
    """A plain-torch inference copy of `model` (factored or not), for inputs shaped like `example`.

    `forms`: "measured" times each factored layer's deployed forms on this machine at the
    example's batch size in `runtime` ("eager", "compiled" or "onnxruntime": `deployed_forms`); "count" takes
    the form with fewer weights (as `compact`). `check_stages` (with "measured") then times the
    whole deployed model and keeps a stage's layers dense where that makes it faster
    (`stage_checked_forms`: for latency, at batch 1). The choice and its timings are kept on the
    result as `.deployment`, and `export` writes them beside the file.
    """
    check_forms(forms)
    if example.dim() != 4:
        raise ValueError(f"example must be an image batch (N, C, H, W), got shape {tuple(example.shape)}")
    was_training = model.training
    model.eval()
    try:
        x = example.contiguous(memory_format=torch.channels_last) if channels_last else example
        timings = {}
        chosen = deployed_forms(model, x, runtime, timings=timings) if forms == "measured" else None
        stages = None
        if check_stages and chosen is not None:
            stages = {}
            chosen = stage_checked_forms(model, chosen, x, runtime, fold_batchnorm, channels_last, seconds=stages)
        small = _plain(model, chosen, fold_batchnorm, channels_last)
    finally:
        model.train(was_training)
    small.deployment = {"forms_by": forms, "runtime": runtime if forms == "measured" else None,
                        "batch": example.shape[0], "forms": chosen, "seconds": timings if chosen else None,
                        "stage_check_seconds": stages}
    return small


def _plain(model: nn.Module, forms: dict | None, fold_batchnorm: bool, channels_last: bool) -> nn.Module:
    small = compact(model, forms).eval()
    if fold_batchnorm:
        small = fuse(small)  # traces with torch.fx; conv→BatchNorm pairs become one conv
    if channels_last:
        small = small.to(memory_format=torch.channels_last)
    return small


def stage_checked_forms(model: nn.Module, chosen: dict[str, str], example: torch.Tensor, runtime: str = "eager",
                        fold_batchnorm: bool = True, channels_last: bool = True, margin: float = 0.03,
                        rounds: int = 7, seconds: dict | None = None) -> dict[str, str]:
    """`chosen` (per-layer forms) with whole stages turned dense where the whole deployed model,
    timed in `runtime` on `example`, runs faster so.

    Timing a layer alone misses what its two stages cost inside the network: at batch 1 each
    extra convolution adds its call overhead, and a layer's input may sit in another cache.
    Stages are the names before the first "."; the candidates are the per-layer choice, each
    stage turned dense alone, the first stages turned dense together (network order), and every
    layer dense, all timed in turns (`interleaved_times`). A candidate with factored layers is
    kept only where it beats every layer dense by more than `margin` (the timing noise), so the
    result is not slower than dense beyond that noise. `seconds`, when given, receives each
    candidate's time.
    """
    def stage(name):
        return name.split(".")[0]

    factored = list(dict.fromkeys(stage(n) for n, f in chosen.items() if f != "dense"))
    all_dense = dict.fromkeys(chosen, "dense")
    if not factored:
        return all_dense

    def dense_in(stages):
        return {n: "dense" if stage(n) in stages else f for n, f in chosen.items()}
    candidates = {"per layer": chosen, **{f"{s} dense": dense_in({s}) for s in factored},
                  **{f"{'+'.join(factored[:k])} dense": dense_in(set(factored[:k])) for k in range(2, len(factored))},
                  "every layer dense": all_dense}
    with torch.no_grad():
        calls = {}
        for label, forms in candidates.items():
            small = _plain(model, forms, fold_batchnorm, channels_last)
            calls[label] = runtime_call(small, example, runtime)
        times = interleaved_times(calls, rounds=rounds)
    if seconds is not None:
        seconds.update(times)
    best = min(times, key=times.get)
    return candidates[best] if times[best] < (1 - margin) * times["every layer dense"] else all_dense


RUNTIMES = ("eager", "compiled", "onnxruntime")  # where a deployed model's layer forms are timed


def deployed_forms(model: nn.Module, example: torch.Tensor, runtime: str = "eager", repeats: int = 5,
                   timings: dict | None = None) -> dict[str, str]:
    """The fastest deployed form of each factored layer at its input shape on `example`, timed
    as the plain modules an inference runs (eval, no gradients, the example's layout) in
    `runtime` (see `runtime_call`): "eager" (torch), "compiled" (torch.compile) or "onnxruntime".

    Layers at or above their break-even rank stay dense without timing (two stages would do
    more work); "padded" is timed only where it adds directions. `timings`, when given,
    receives each timed layer's seconds per form.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    chosen = {}
    with torch.no_grad():
        for name, (shape, nhwc) in input_shapes(model, example).items():
            layer = model.get_submodule(name)
            if not layer.factored_is_cheaper:
                chosen[name] = "dense"
                continue
            forms = [f for f in DEPLOYED_FORMS if f != "padded" or aligned_rank(layer.rank) > layer.rank]
            x = random_input(layer, shape, nhwc)
            layout = torch.channels_last if nhwc else torch.contiguous_format
            seconds = {}
            for form in forms:
                module = _deployed_form(layer, form).eval()
                if x.dim() == 4:
                    module = module.to(memory_format=layout)
                call = runtime_call(module, x, runtime)
                seconds[form] = _median_time(call, repeats)
            chosen[name] = min(seconds, key=seconds.get)
            if timings is not None:
                timings[name] = seconds
    return chosen


def runtime_call(module: nn.Module, x: torch.Tensor, runtime: str):
    """A no-argument function that runs `module` on `x` in `runtime`: "eager" (torch as is),
    "compiled" (torch.compile for this shape, compiled on the first call, which timing discards
    as its warm-up; it resets dynamo's cache, so functions compiled earlier compile again on their
    next call) or "onnxruntime" (exported alone, with as many threads as torch)."""
    if runtime == "onnxruntime":
        return _onnxruntime_call(module, x)
    if runtime == "compiled":
        # From an empty dynamo cache: the forms share their forward code, and after 8 shapes dynamo
        # stops compiling and runs eager; nor are earlier guards checked on every timed call.
        torch._dynamo.reset()
        module = torch.compile(module, dynamic=False)
    elif runtime != "eager":
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    return lambda: module(x)


def _onnxruntime_call(module: nn.Module, x: torch.Tensor):
    """A function that runs `module` on `x` in ONNX Runtime (for timing one layer's form)."""
    import io
    import warnings

    import onnxruntime as ort  # the "deploy" extra

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # One layer, fixed shapes: the TorchScript exporter takes milliseconds where the dynamo
        # one takes seconds, and writes the same Conv/Gemm nodes.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x.contiguous(),), buffer, input_names=["x"], dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.contiguous().cpu().numpy()}
    return lambda: session.run(None, feed)


def export(model: nn.Module, path, example: torch.Tensor) -> Path:
    """Write `model` (eval mode, batch size dynamic) to `path`: .onnx or .pt2, by its suffix;
    `example` gives the input's shape after the batch dimension.

    The file is written beside `path` and renamed into place, so an existing file is
    replaced only by a complete one. A model from `deploy` also gets `<path>.deployment.json`:
    each layer's form, how it was chosen (runtime, batch) and the timings.
    """
    path = Path(path)
    if path.suffix not in EXPORT_FORMATS:
        accepted = ", ".join(f"{s} ({what})" for s, what in EXPORT_FORMATS.items())
        raise ValueError(f"cannot export to {path}: unknown format {path.suffix or '(no suffix)'!r}; "
                         f"accepted: {accepted}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model = model.eval()
    # Tracing at batch 1 would fix the batch dimension: trace at 2, export it as dynamic.
    example = torch.zeros((2,) + tuple(example.shape[1:]), dtype=example.dtype, device=example.device)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with torch.no_grad():
            if path.suffix == ".onnx":
                _export_onnx(model, tmp, example, batch)
            else:
                program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
                torch.export.save(program, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if getattr(model, "deployment", None) is not None:
        write_text_atomic(Path(f"{path}.deployment.json"), json.dumps(model.deployment, indent=2) + "\n")
    return path


def _export_onnx(model: nn.Module, path: Path, example: torch.Tensor, batch) -> None:
    import onnx  # the "deploy" extra: pip install -e '.[deploy]'

    # A contiguous example: the exported graph is the same, and export does not trace layout changes.
    torch.onnx.export(model, (example.contiguous(),), str(path), input_names=["images"], output_names=["logits"],
                      dynamic_shapes=({0: batch},), external_data=False, dynamo=True, verbose=False)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


__all__ = ["deploy", "deployed_forms", "stage_checked_forms", "export", "EXPORT_FORMATS", "RUNTIMES"]
