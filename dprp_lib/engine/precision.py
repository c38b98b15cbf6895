"""Which arithmetic a run trains in: bf16 autocast where the hardware runs it natively, float32 elsewhere.

bf16 autocast doubles a CPU's images/s where AVX512-BF16/AMX exist (results/benchmarks/speed-cpu.json)
and makes it about ten times slower where they do not (measured on an AMD EPYC Zen 2: 0.105× float32
for dense). So `amp="auto"` (the full and paper presets) is decided when a run starts, on the machine
that starts it, and written into the run's config; a resumed run keeps the precision it started with,
whatever machine resumes it.
"""
from __future__ import annotations

import platform
from functools import lru_cache
from typing import Literal

import torch

# TrainConfig.amp: bf16 autocast on or off, or "auto": where it is native, decided when a run starts.
Amp = bool | Literal["auto"]


def bf16_is_fast(device: str = "auto") -> bool:
    """True where bf16 autocast has native support: a CUDA GPU with bf16, or a CPU with
    AVX512-BF16/AMX through oneDNN (measured here: about 2× the images/s of float32)."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if device == "cuda":
        return False
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


def choose_amp(device: str = "auto") -> bool:
    """The fast path for a run starting here: bf16 autocast only where it is native."""
    return bf16_is_fast(device)


@lru_cache(maxsize=None)
def processor() -> str:
    """This machine's processor, as /proc/cpuinfo (or platform) names it, with its bf16 support."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({'native bf16' if bf16_is_fast('cpu') else 'no native bf16'})"
