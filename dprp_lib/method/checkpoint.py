"""Checkpoints: written atomically, read with `weights_only=True`, ranks included.

A factored model's ranks are the shapes of its U, s and V, so they travel with its
state_dict: `load_model_state` resizes each factored layer before copying values.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from .layers import SVDLayer


@contextlib.contextmanager
def _atomic(path: Path, mode: str):
    """A file object whose content replaces `path` only once the block finishes: an
    interrupted write leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path, **payload) -> Path:
    """torch.save(payload) to `path` atomically.

    Keep the payload to tensors, dicts, lists, strings and numbers so that `weights_only=True`
    can read it back.
    """
    path = Path(path)
    with _atomic(path, "wb") as f:
        torch.save(payload, f)
    return path


def write_text_atomic(path, text: str) -> Path:
    """Write `text` to `path` atomically (run records: config, metrics, summary)."""
    path = Path(path)
    with _atomic(path, "w") as f:
        f.write(text)
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by save_checkpoint (weights_only=True: no code is run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle and zip errors name bytes, not the file
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(f"{path} is not a torch checkpoint file ({type(e).__name__}: {first_line})") from e


def load_model_state(model: nn.Module, state_dict: dict) -> nn.Module:
    """Load `state_dict` into `model`, adopting the stored ranks of factored layers.

    Raises ValueError naming what differs when the state_dict is from another architecture.
    """
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        hint = ""
        if any(k.endswith((".U", ".s", ".V")) for k in unexpected):
            hint = " (the state_dict has factored layers: svdify() the model before loading)"
        elif any(k.endswith((".U", ".s", ".V")) for k in missing):
            hint = " (the model has factored layers but the state_dict is of a dense model)"
        raise ValueError(f"state_dict does not match this architecture{hint}: "
                         f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
    factored = {f"{name}.{p}" for name, m in model.named_modules() if isinstance(m, SVDLayer)
                for p in ("U", "s", "V")}
    for key, value in state_dict.items():
        ok = value.shape == own[key].shape or (
            key in factored and value.shape[:-1] == own[key].shape[:-1])
        if not ok:
            raise ValueError(f"state_dict does not match this architecture: {key} has shape "
                             f"{tuple(value.shape)}, the model expects {tuple(own[key].shape)}")
    model.load_state_dict(state_dict)
    return model
