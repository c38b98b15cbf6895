"""What every chapter does first and last: resolve its mode, report the machine, save metrics."""
from __future__ import annotations

import json
import platform
import random
from pathlib import Path

import numpy as np
import torch

from .experiments import MODES
from .train import resolve_device


def setup(mode: str, seed: int = 0, device: str = "auto") -> torch.device:
    """Check MODE, seed every generator, pick the device, and say what this run is."""
    if mode not in MODES:
        raise ValueError(f"MODE must be one of {MODES}, got {mode!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"mode {mode}, seed {seed}, device {name}, torch {torch.__version__}, Python {platform.python_version()}")
    return dev


def save_metrics(path, **values) -> Path:
    """Write a chapter's key numbers as JSON (the tests read them back)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2, default=_plain) + "\n")
    return path


def _plain(v):
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(f"cannot write {type(v).__name__} to JSON")
