"""Which form each factored layer executes in: one dense op, or two stages (n→r, then r→m).

Counting multiply-accumulates says two stages are cheaper below the break-even rank
(r·(m + n) < m·n), and `forward_mode="auto"` follows the count. But a CPU runs small
convolutions far below its peak, and a rank that is not a multiple of the vector width
costs more than its count: at the ranks DPRP reaches, the count can pick the slower form.
`measure_forms` times both forms of each layer at its real input shape and keeps the faster.

The two forms differ only in float rounding. Measured choices depend on timing noise, so a
run trained with them does not repeat bit for bit; that is why training counts by default.
"""
from __future__ import annotations

import statistics
import time
from typing import Literal, get_args

import torch
from torch import nn

from .layers import SVDLayer, svd_layers
from .metrics import forward_once

Form = Literal["count", "measured"]
FORMS = get_args(Form)

# (layer geometry, rank, input shape, dtype, layout, training, amp, threads) -> chosen form:
# a cut changes few layers, so later calls time only those.
_CHOSEN: dict[tuple, dict] = {}


def input_shapes(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[torch.Size, bool]]:
    """Each factored layer's input (shape, channels_last) when `model` runs on `example`."""
    shapes, handles = {}, []
    for name, layer in svd_layers(model):
        def hook(mod, inputs, name=name):
            x = inputs[0]
            nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            shapes[name] = (x.shape, nhwc)
        handles.append(layer.register_forward_pre_hook(hook))
    forward_once(model, example, handles)
    return shapes


def random_input(layer: SVDLayer, shape, channels_last: bool = False) -> torch.Tensor:
    """A random input of `shape` for timing `layer`, on its device and dtype, in the given layout."""
    # Its own generator: timing inside a training run must not move the run's random stream.
    g = torch.Generator(device=layer.U.device).manual_seed(0)
    x = torch.randn(shape, device=layer.U.device, dtype=layer.U.dtype, generator=g)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def interleaved_times(calls: dict, min_round_s: float = 0.05, rounds: int = 7) -> dict[str, float]:
    """Median seconds per call of each no-argument callable over `rounds` rounds of at least
    `min_round_s` each.

    The callables take turns within every round, so a drift in the machine's speed (clock,
    caches, another process) lands on all of them alike instead of on whichever ran last.
    """
    repeats = {}
    for name, fn in calls.items():
        fn()  # warm-up: allocation, kernel choice, compilation
        t0 = time.perf_counter()
        fn()
        repeats[name] = max(1, int(min_round_s / max(time.perf_counter() - t0, 1e-6)))
    samples = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            for _ in range(repeats[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / repeats[name])
    return {name: statistics.median(v) for name, v in samples.items()}


def time_forms(layer: SVDLayer, shape, channels_last: bool = False, training: bool = False,
               amp: bool = False, repeats: int = 5) -> dict[str, float]:
    """Seconds per call of `layer` in each form on a random input of `shape` (CPU timing):
    forward only, or with `training` forward and backward (input and factor gradients)."""
    p = layer.U
    x = random_input(layer, shape, channels_last).requires_grad_(training)
    saved = layer.forward_mode

    def call():
        with torch.autocast(p.device.type, dtype=torch.bfloat16, enabled=amp):
            y = layer(x)
        if training:
            y.float().sum().backward()
        if p.device.type == "cuda":
            torch.cuda.synchronize(p.device)

    out = {}
    try:
        with torch.set_grad_enabled(training):
            for form in ("dense", "factored"):
                layer.forward_mode = form
                out[form] = _median_time(call, repeats)
    finally:
        layer.forward_mode = saved
        for t in (*layer.factors(), layer.bias):
            if t is not None:
                t.grad = None
    return out


def measure_forms(model: nn.Module, example: torch.Tensor, training: bool = False, amp: bool = False,
                  repeats: int = 5, timings: dict | None = None) -> dict[str, str]:
    """The faster form ("dense" or "factored") of every factored layer at its input shape on `example`.

    Layers at or above their break-even rank stay dense without timing (two stages would do
    more work). `timings`, when given, receives each timed layer's seconds per form.
    """
    chosen = {}
    for name, (shape, nhwc) in input_shapes(model, example).items():
        layer = model.get_submodule(name)
        if not layer.factored_is_cheaper:
            chosen[name] = "dense"
            continue
        key = (type(layer).__name__, repr(layer), tuple(shape), layer.U.dtype, layer.U.device, nhwc,
               training, amp, torch.get_num_threads())
        if key not in _CHOSEN or timings is not None:
            t = time_forms(layer, shape, nhwc, training, amp, repeats)
            _CHOSEN[key] = {"form": min(t, key=t.get), "seconds": t}
        chosen[name] = _CHOSEN[key]["form"]
        if timings is not None:
            timings[name] = _CHOSEN[key]["seconds"]
    return chosen


def set_forms(model: nn.Module, forms: dict[str, str] | None) -> nn.Module:
    """Fix each named layer's form ("dense"/"factored"); None returns every layer to counting ("auto")."""
    for name, layer in svd_layers(model):
        layer.forward_mode = "auto" if forms is None else forms.get(name, "auto")
    return model


def check_forms(value: str) -> str:
    if value not in FORMS:
        raise ValueError(f"forms must be one of {FORMS}, got {value!r}")
    return value


__all__ = ["FORMS", "input_shapes", "interleaved_times", "time_forms", "measure_forms", "set_forms", "check_forms"]
