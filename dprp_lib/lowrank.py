"""Low-rank approximation of a plain matrix: the arithmetic chapter 01 teaches."""
from __future__ import annotations

import torch

from .pruning import energy_rank


def low_rank(matrix: torch.Tensor, k: int) -> torch.Tensor:
    """The best rank-k approximation of `matrix` (Eckart–Young): its first k SVD directions."""
    if matrix.dim() != 2:
        raise ValueError(f"matrix must be 2-D, got shape {tuple(matrix.shape)}")
    if not 1 <= k <= min(matrix.shape):
        raise ValueError(f"k must be between 1 and {min(matrix.shape)}, got {k}")
    U, s, Vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return ((U[:, :k] * s[:k]) @ Vh[:k]).to(matrix.dtype)


def relative_error(matrix: torch.Tensor, approx: torch.Tensor) -> float:
    """‖M − A‖_F / ‖M‖_F."""
    return (torch.linalg.norm(matrix.double() - approx.double()) / torch.linalg.norm(matrix.double())).item()


def storage(m: int, n: int, k: int) -> dict:
    """Numbers stored for an m×n matrix as dense and as rank-k factors (U, s, V)."""
    return {"dense": m * n, "factored": k * (m + n + 1), "ratio": k * (m + n + 1) / (m * n)}


def rank_for_energy(s: torch.Tensor, keep: float) -> int:
    """Smallest k whose k largest singular values hold a fraction `keep` of Σ s²."""
    return energy_rank(torch.sort(s.abs(), descending=True).values, 1.0 - keep)
