"""Dynamic rank pruning: cut each factored layer to the directions that hold its energy.

The rule (this project's reading of the paper): a layer keeps the leading k values of s,
in index order, that hold a fraction (1 − energy) of Σ s², never fewer than `min_rank`.
U, s, V are sliced physically, and so is the optimizer's state for them, so training
simply continues. Pruned directions never come back.

Because the cut is by index, it is the sorting penalty that makes it remove the smallest
directions. `reorder=True` sorts directions by |s| before cutting instead; that is this
project's addition, not the paper's, and is off by default.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .layers import SVDLayer, svd_layers
from .lowrank import check_energy, energy_rank
from .metrics import deployed_params


def _directions_to_keep(layer: SVDLayer, energy: float, min_rank: int, reorder: bool):
    s = layer.grouped(layer.s.detach())
    if reorder:
        order = s.abs().argsort(dim=-1, descending=True, stable=True)
        s = torch.take_along_dim(s, order, dim=-1)
    else:
        order = torch.arange(layer.rank, device=s.device).expand_as(s)
    k = max(energy_rank(s, energy), min_rank)
    return order[:, :k]


def _optimizer_states(optimizer, layer: SVDLayer, name: str):
    if optimizer is None:
        return []
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [p for p in layer.factors() if id(p) not in held]
    if missing:
        raise ValueError(f"optimizer does not hold the factors of layer {name!r}: build the "
                         "optimizer after svdify(), from the model's current parameters")
    return [optimizer.state.get(p, {}) for p in layer.factors()]


@torch.no_grad()
def prune_ranks(model: nn.Module, energy: float = 1e-3, min_rank: int = 1,
                optimizer: torch.optim.Optimizer | None = None,
                reorder: bool = False) -> dict[str, tuple[int, int]]:
    """Cut every factored layer of `model` by the energy rule; return {name: (old, new)}.

    If `optimizer` is given, its per-parameter state (SGD momentum; Adam/AdamW moments) is
    sliced the same way, so the next step runs and keeps the momentum of kept directions.
    """
    energy = check_energy(energy)
    if isinstance(min_rank, bool) or not isinstance(min_rank, int):
        raise TypeError(f"min_rank must be an int, got {type(min_rank).__name__}")
    if min_rank < 1:
        raise ValueError(f"min_rank must be >= 1, got {min_rank}")
    layers = svd_layers(model)
    # Validate everything before changing anything.
    for name, layer in layers:
        if min_rank > layer.rank:
            raise ValueError(f"min_rank={min_rank} is above the current rank {layer.rank} of layer {name!r}")
    states = {name: _optimizer_states(optimizer, layer, name) for name, layer in layers}

    changes = {}
    for name, layer in layers:
        old = layer.rank
        keep = _directions_to_keep(layer, energy, min_rank, reorder)
        if keep.shape[-1] != old or reorder:
            shapes = [p.shape for p in layer.factors()]
            for state, shape in zip(states[name], shapes):
                for key, value in state.items():
                    if isinstance(value, torch.Tensor) and value.shape == shape:
                        state[key] = layer.take_directions(value, keep)
            layer.keep_directions(keep)
        changes[name] = (old, layer.rank)
    return changes


@dataclass(frozen=True)
class PruneSchedule:
    """When to prune: after epoch `warmup`, then every `every` epochs, up to epoch `stop`.

    Epochs count from 1 (the first finished epoch is epoch 1); `stop=None` never stops.
    """

    warmup: int = 10
    every: int = 5
    stop: int | None = None

    def __post_init__(self):
        for name in ("warmup", "every", "stop"):
            value = getattr(self, name)
            if value is None and name == "stop":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"PruneSchedule.{name} must be an int, got {type(value).__name__}")
        if self.warmup < 0:
            raise ValueError(f"PruneSchedule.warmup must be >= 0, got {self.warmup}")
        if self.every < 1:
            raise ValueError(f"PruneSchedule.every must be >= 1, got {self.every}")
        if self.stop is not None and self.stop < self.warmup:
            raise ValueError(f"PruneSchedule.stop ({self.stop}) must be >= warmup ({self.warmup})")

    def due(self, epoch: int) -> bool:
        """True if pruning runs after finishing `epoch` (1-based)."""
        if epoch < max(self.warmup, 1) or (self.stop is not None and epoch > self.stop):
            return False
        return (epoch - self.warmup) % self.every == 0


@torch.no_grad()
def energy_for_size(model: nn.Module, fraction: float, dense_params: int, min_rank: int = 1,
                    reorder: bool = True, steps: int = 40) -> float:
    """The smallest energy whose cut leaves at most `fraction` × `dense_params` deployed parameters.

    For the one-shot methods (svd-training, post-hoc), so they can be compared with DPRP at
    the same deployed size. Bisection on copies of `model`; the model itself is not changed.
    """
    target = fraction * dense_params

    def size(energy):
        trial = copy.deepcopy(model)
        prune_ranks(trial, energy=energy, min_rank=min_rank, reorder=reorder)
        return deployed_params(trial)

    lo, hi = 0.0, 1.0 - 1e-9
    if size(lo) <= target:
        return lo
    if size(hi) > target:
        raise ValueError(f"no energy cuts the model to {fraction:.1%} of the dense parameters "
                         f"(min_rank={min_rank} keeps more)")
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if size(mid) <= target else (mid, hi)
    return hi
