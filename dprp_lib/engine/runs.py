"""A run folder: what `train.fit` writes, and the one way everything else reads it back.

    <run>/config.json     the TrainConfig as given
    <run>/metrics.jsonl   one line an epoch
    <run>/checkpoint.pt   model, optimizer and history after the last finished epoch
    <run>/summary.json    written when the run has finished

Every file is replaced atomically, so an interrupted run leaves a consistent folder that
resumes. A run is identified by its key: a hash of the config fields that change what it
computes (`TrainConfig.result_fields`), so committed results are found by their parameters.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..method.checkpoint import load_checkpoint, load_model_state, save_checkpoint, write_text_atomic
from ..method.convert import svdify
from .config import TrainConfig
from .models import build_model
from .precision import choose_amp

CONFIG, METRICS, CHECKPOINT, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"


def config_key(config: TrainConfig) -> str:
    """The run's identity: 12 hex digits of the hash of what changes its result."""
    return hashlib.sha1(json.dumps(config.result_fields(), sort_keys=True).encode()).hexdigest()[:12]


class RunFolder:
    """Writes a run's records (used by `fit`; only the main process writes)."""

    def __init__(self, path):
        self.path = Path(path)
        self.checkpoint = self.path / CHECKPOINT

    def start(self, config: TrainConfig, history: list) -> None:
        """config.json, and metrics.jsonl holding exactly the epochs the checkpoint holds."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path / CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")
        write_text_atomic(self.path / METRICS, "".join(json.dumps(r) + "\n" for r in history))

    def end_epoch(self, row: dict, **checkpoint) -> None:
        """The checkpoint first, then its metrics line: a crash between the two loses nothing
        (resuming rewrites metrics.jsonl from the checkpoint's history)."""
        save_checkpoint(self.checkpoint, **checkpoint)
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")

    def finish(self, summary: dict) -> None:
        write_text_atomic(self.path / SUMMARY, json.dumps(summary, indent=2) + "\n")


@dataclass
class Run:
    """A finished run read back: its config, summary, per-epoch history and folder."""

    config: TrainConfig
    summary: dict
    history: list
    path: Path
    loaded: bool = True  # True when read from disk as found, False when trained just now
    checkpoint_file: Path | None = None  # default: path / checkpoint.pt

    def checkpoint(self, map_location="cpu") -> dict:
        """The run's last checkpoint (committed only where a chapter needs the weights)."""
        return load_checkpoint(self.checkpoint_file or self.path / CHECKPOINT, map_location)

    def model(self, map_location="cpu") -> nn.Module:
        """The trained model, rebuilt from the checkpoint (architecture, factoring, ranks, weights)."""
        return model_from_checkpoint(self.checkpoint(map_location))


def load_run(path) -> Run:
    """Read a finished run folder (FileNotFoundError naming the file when it is not finished)."""
    path = Path(path)
    if not (path / SUMMARY).is_file():
        raise FileNotFoundError(f"{path} holds no finished run (no {SUMMARY})")
    config = TrainConfig.from_dict(json.loads((path / CONFIG).read_text()))
    summary = json.loads((path / SUMMARY).read_text())
    history = [json.loads(line) for line in (path / METRICS).read_text().splitlines()]
    return Run(config, summary, history, path)


def open_run(path) -> Run:
    """A run from its folder, finished or not, or from a checkpoint file (the command line's way
    in); an unfinished run has an empty summary and the history its checkpoint holds."""
    path = Path(path)
    if path.is_dir() and (path / SUMMARY).is_file():
        return load_run(path)
    file = path / CHECKPOINT if path.is_dir() else path
    ckpt = load_checkpoint(file)
    if not isinstance(ckpt, dict) or not {"config", "model", "history"} <= set(ckpt):
        raise ValueError(f"{file} is not a checkpoint of a dprp_lib run (it holds no config, model and history)")
    config = TrainConfig.from_dict({**ckpt["config"], "resume": False})
    return Run(config, {}, ckpt["history"], file.parent, checkpoint_file=file)


def definite(config: TrainConfig, *roots) -> TrainConfig:
    """`config` with `amp="auto"` settled: the precision of a run already started (finished or
    checkpointed) under either key in `roots`, else this machine's fast path. Committed runs keep
    the keys they were trained under (amp true or false), and a run resumes in its own precision."""
    if config.amp != "auto":
        return config
    for amp in (True, False):
        candidate = dataclasses.replace(config, amp=amp)
        folders = [Path(root) / config_key(candidate) for root in roots]
        if any((f / SUMMARY).is_file() or (f / CHECKPOINT).is_file() for f in folders):
            return candidate
    return dataclasses.replace(config, amp=choose_amp(config.device))


def find_run(config: TrainConfig, *roots) -> Run | None:
    """The finished run for exactly `config` in the first of `roots` that holds it, or None
    (with `amp="auto"`: trained in either precision)."""
    config = definite(config, *roots)
    key = config_key(config)
    for root in roots:
        if (Path(root) / key / SUMMARY).is_file():
            return load_run(Path(root) / key)
    return None


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    """Rebuild the model a checkpoint of `fit` holds (architecture, factoring, ranks, weights)."""
    config = TrainConfig.from_dict({**ckpt["config"], "resume": False})
    model = build_model(config.model, ckpt["num_classes"], config.width)
    if ckpt["factored"]:
        svdify(model, skip=config.skip)
    return load_model_state(model, ckpt["model"])
