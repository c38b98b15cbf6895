"""The three penalties that steer the factors, each summed over a model's factored layers.

- orthogonality: (‖UᵀU − I‖²_F + ‖VᵀV − I‖²_F) / r² per layer (and group), so that |s_i|
  stays the true size of direction i;
- sorting: Σ_i max(0, |s_{i+1}| − |s_i|), so that an index-order cut removes the smallest
  directions;
- sparsity on s: "l1" (‖s‖₁), "hoyer" (‖s‖₁/‖s‖₂) or "hoyer_square" (‖s‖₁²/‖s‖₂²),
  so that ranks can fall.

The exact forms and weights of the paper are not public; these are this project's reading
(see ../shared/notes/paper.md in the development tree and the notebooks).
"""
from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

from .layers import SVDLayer

SparseKind = Literal["l1", "hoyer", "hoyer_square"]
SPARSE_KINDS = get_args(SparseKind)
_EPS = 1e-12


def _layers(model: nn.Module) -> list[SVDLayer]:
    return [m for m in model.modules() if isinstance(m, SVDLayer)]


def _total(terms, model: nn.Module) -> torch.Tensor:
    terms = list(terms)
    if terms:
        return torch.stack(terms).sum()
    p = next(model.parameters(), None)
    return torch.zeros((), device=p.device if p is not None else None)


def layer_orthogonality(layer: SVDLayer) -> torch.Tensor:
    U, V = layer.grouped(layer.U), layer.grouped(layer.V)
    eye = torch.eye(layer.rank, device=U.device, dtype=U.dtype)
    gu = U.transpose(-1, -2) @ U - eye
    gv = V.transpose(-1, -2) @ V - eye
    return (gu.square().sum() + gv.square().sum()) / layer.rank ** 2


def layer_sorting(layer: SVDLayer) -> torch.Tensor:
    a = layer.s.abs()
    return torch.relu(a[..., 1:] - a[..., :-1]).sum()


def layer_sparsity(layer: SVDLayer, kind: str = "l1") -> torch.Tensor:
    check_sparse_kind(kind)
    a = layer.grouped(layer.s).abs()
    l1 = a.sum(-1)
    if kind == "l1":
        return l1.sum()
    l2 = a.square().sum(-1).add(_EPS).sqrt()
    if kind == "hoyer":
        return (l1 / l2).sum()
    return (l1.square() / l2.square()).sum()  # hoyer_square


def orthogonality(model: nn.Module) -> torch.Tensor:
    """Σ over factored layers of (‖UᵀU − I‖²_F + ‖VᵀV − I‖²_F) / r²."""
    return _total((layer_orthogonality(m) for m in _layers(model)), model)


def sorting(model: nn.Module) -> torch.Tensor:
    """Σ over factored layers of Σ_i max(0, |s_{i+1}| − |s_i|)."""
    return _total((layer_sorting(m) for m in _layers(model)), model)


def sparsity(model: nn.Module, kind: str = "l1") -> torch.Tensor:
    """Σ over factored layers of the chosen sparsity measure of s."""
    check_sparse_kind(kind)
    return _total((layer_sparsity(m, kind) for m in _layers(model)), model)


def check_sparse_kind(kind) -> str:
    """One of SPARSE_KINDS, or a ValueError naming them."""
    if kind not in SPARSE_KINDS:
        raise ValueError(f"sparse_kind must be one of {SPARSE_KINDS}, got {kind!r}")
    return kind


def check_weight(value, name: str) -> float:
    """A penalty weight: a finite number ≥ 0, or a ValueError/TypeError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


class Regularizer:
    """λ_o·R_orth + λ_sort·R_sort + λ_s·R_sparse over a model's factored layers.

    `reg(model)` returns `(total, parts)`: the weighted sum to add to the loss, and a dict
    of the unweighted penalties {"orth", "sort", "sparse"} for logging. Every part is
    computed, even at weight 0, so a run without a penalty still records what it would be.
    """

    def __init__(self, orth: float = 1.0, sort: float = 1.0, sparse: float = 1e-4,
                 sparse_kind: str = "l1"):
        self.orth = check_weight(orth, "orth")
        self.sort = check_weight(sort, "sort")
        self.sparse = check_weight(sparse, "sparse")
        self.sparse_kind = check_sparse_kind(sparse_kind)

    def __call__(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {
            "orth": orthogonality(model),
            "sort": sorting(model),
            "sparse": sparsity(model, self.sparse_kind),
        }
        total = self.orth * parts["orth"] + self.sort * parts["sort"] + self.sparse * parts["sparse"]
        return total, parts

    def __repr__(self) -> str:
        return (f"Regularizer(orth={self.orth:g}, sort={self.sort:g}, sparse={self.sparse:g}, "
                f"sparse_kind={self.sparse_kind!r})")
