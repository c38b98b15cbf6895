"""What every chapter does first and last: resolve its mode, report the machine, save metrics."""
from __future__ import annotations

import json
import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..engine.experiments import MODES, preset, run_grid
from ..engine.report import seeds_label
from ..engine.train import resolve_device


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


def chapter_runs(chapter: str, mode: str, device: str = "auto", data_dir=None, scratch=None) -> dict:
    """The runs of a chapter's grid (committed ones loaded, the rest trained now), and what they are."""
    runs = run_grid(chapter, mode, device, scratch=scratch, data_dir=data_dir)
    base = preset(mode)
    loaded = sum(r.loaded for r in runs.values())
    # The image counts are the runs' own: the presets of full and paper mode use every image
    # (train_per_class None), so they cannot be computed from the preset.
    summary = next(iter(runs.values())).summary
    held_out = f" ({summary['val_images']:,} more held out for validation)" if summary.get("val_images") else ""
    seeds = seeds_label(sorted({r.config.seed for r in runs.values()}))
    print(f"{len(runs)} runs, {loaded} loaded from {paths.shown(paths.RESULTS)}, {len(runs) - loaded} trained now")
    print(f"each: ResNet-20 on {summary['dataset']}, {summary['train_images']:,} training{held_out} and "
          f"{summary['test_images']:,} test "
          f"images, {base.epochs} epochs, {seeds}, batch {base.batch_size}, SGD lr {base.lr:g} (cosine), "
          f"cuts after epochs {base.prune_warmup}–{base.prune_stop or base.epochs} at energy {base.energy:g}")
    return runs


METRICS_DIR = "DPRP_METRICS_DIR"  # where a test or the course runner wants them (build.execute sets it)


def save_metrics(chapter: str, **values) -> Path:
    """Write a chapter's key numbers as JSON, for the tests to read back: <chapter>.json in the folder
    that $DPRP_METRICS_DIR names, else in build/metrics/. An environment variable, not a parameter,
    so that this plumbing stays out of the chapter's parameters cell."""
    path = Path(os.environ.get(METRICS_DIR) or paths.METRICS) / f"{chapter}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2, default=_plain) + "\n")
    return path


def _plain(v):
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(f"cannot write {type(v).__name__} to JSON")
