"""Low-rank approximation of a plain matrix, and the energy rule: the arithmetic chapter 01
teaches, and the ground floor that rank pruning (`pruning.py`) builds on.

The energy rule has one meaning throughout: `energy` is the fraction of Σ s² a cut may drop.
`rank_for_energy(s, keep)` asks the same question from the other side (keep = 1 − energy).
"""
from __future__ import annotations

import torch


def check_energy(energy) -> float:
    """`energy` as a float in [0, 1), or a TypeError/ValueError saying what it means."""
    if isinstance(energy, bool) or not isinstance(energy, (int, float)):
        raise TypeError(f"energy must be a number, got {type(energy).__name__}")
    if not 0 <= energy < 1:
        raise ValueError(f"energy must be in [0, 1) (the fraction of Σ s² a cut may drop), got {energy}")
    return float(energy)


def energy_rank(s: torch.Tensor, energy: float) -> int:
    """Smallest k whose leading k entries of s (index order) hold (1 − energy) of Σ s².

    `s` may be g×r (one row per group); the largest k over the groups is returned.
    """
    e = s.detach().to(torch.float64).reshape(-1, s.shape[-1]).square().cumsum(-1)
    total = e[:, -1:]
    needed = (e < (1.0 - energy) * total).sum(-1) + 1
    return int(needed.clamp(max=s.shape[-1]).max())


def low_rank(matrix: torch.Tensor, k: int, svd: tuple | None = None) -> torch.Tensor:
    """The best rank-k approximation of `matrix` (Eckart–Young): its first k SVD directions.

    `svd`: the matrix's (U, s, Vh) in float64 when already computed (a panel tries many k).
    """
    if matrix.dim() != 2:
        raise ValueError(f"matrix must be 2-D, got shape {tuple(matrix.shape)}")
    if not 1 <= k <= min(matrix.shape):
        raise ValueError(f"k must be between 1 and {min(matrix.shape)}, got {k}")
    U, s, Vh = svd if svd is not None else torch.linalg.svd(matrix.double(), full_matrices=False)
    return ((U[:, :k] * s[:k]) @ Vh[:k]).to(matrix.dtype)


def relative_error(matrix: torch.Tensor, approx: torch.Tensor) -> float:
    """‖M − A‖_F / ‖M‖_F."""
    return (torch.linalg.norm(matrix.double() - approx.double()) / torch.linalg.norm(matrix.double())).item()


def storage(m: int, n: int, k: int) -> dict:
    """Numbers stored for an m×n matrix as dense and as rank-k factors (U, s, V)."""
    return {"dense": m * n, "factored": k * (m + n + 1), "ratio": k * (m + n + 1) / (m * n)}


def rank_for_energy(s: torch.Tensor, keep: float) -> int:
    """Smallest k whose k largest singular values hold a fraction `keep` of Σ s² (the energy rule
    with energy = 1 − keep, on the values sorted by size)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be a fraction of the energy in (0, 1], got {keep}")
    return energy_rank(torch.sort(s.abs(), descending=True).values, 1.0 - keep)
