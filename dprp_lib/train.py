"""Training: one epoch of (optionally penalised) training, and evaluation.

Nothing here synchronises with the host inside a step: losses and counts accumulate on
the device and are read once per epoch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .regularizers import Regularizer


def train_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                regularizer: Regularizer | None = None, scheduler=None, progress=None) -> dict:
    """One pass over `loader`; returns mean loss, accuracy and (unweighted) penalties."""
    model.train()
    dev = next(model.parameters()).device
    sums = {k: torch.zeros((), device=dev) for k in ("loss", "correct", "orth", "sort", "sparse")}
    seen = 0
    for x, y in loader:
        out = model(x)
        loss = F.cross_entropy(out, y)
        total = loss
        if regularizer is not None:
            penalty, parts = regularizer(model)
            total = loss + penalty
            for k, v in parts.items():
                sums[k] += v.detach()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        sums["loss"] += loss.detach() * len(y)
        sums["correct"] += (out.argmax(1) == y).sum()
        seen += len(y)
        if progress is not None:
            progress.update(1)
    steps = max(len(loader), 1)
    values = {k: v.item() for k, v in sums.items()}
    result = {"train_loss": values["loss"] / max(seen, 1), "train_acc": values["correct"] / max(seen, 1)}
    if regularizer is not None:
        result.update({k: values[k] / steps for k in ("orth", "sort", "sparse")})
    return result


@torch.no_grad()
def evaluate(model: nn.Module, loader) -> dict:
    """Mean cross-entropy and top-1 accuracy of `model` over `loader`."""
    model.eval()
    dev = next(model.parameters()).device
    loss = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev)
    seen = 0
    for x, y in loader:
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
        seen += len(y)
    return {"test_loss": loss.item() / max(seen, 1), "test_acc": correct.item() / max(seen, 1)}
