"""The training methods as a table: what each one trains, when and how it cuts, what follows.

`train.fit` consults this table and nothing else about a method; adding a method is one entry.

- dense: the plain network.
- dprp (this project's reading of arXiv 2401.08014): factored from the start, the three
  penalties, ranks cut by the energy rule on a schedule while training goes on.
- svd-training (Yang et al. 2020): factored, penalties, one cut after the main epochs keeping
  the largest values, then fine-tuning without the sparsity penalty.
- posthoc: the dense network trained as usual, factored by SVD after its main epochs and cut
  once keeping the largest values, then plain fine-tuning (none with finetune_epochs=0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args


@dataclass(frozen=True)
class Method:
    name: str
    factored: bool                 # trained as U·diag(s)·Vᵀ from the first step
    penalties: bool                # orthogonality, sorting and sparsity penalties while training
    cuts: str                      # "never" | "scheduled" (every PruneSchedule epoch) | "once" (after the main epochs)
    factor_at_cut: bool = False    # factor the dense network by SVD right before its cut
    sparse_after_cut: bool = True  # keep the sparsity penalty once the cut is made

    @property
    def one_shot(self) -> bool:
        """A single cut after the main epochs, then `finetune_epochs`; its size can be set by `cut_to`."""
        return self.cuts == "once"

    def reorder(self, configured: bool) -> bool:
        """Whether the cut sorts directions by |s| first: the one-shot methods keep the largest
        values by definition; DPRP cuts in index order unless configured otherwise."""
        return True if self.one_shot else configured


METHODS = {m.name: m for m in (
    Method("dense", factored=False, penalties=False, cuts="never"),
    Method("dprp", factored=True, penalties=True, cuts="scheduled"),
    Method("svd-training", factored=True, penalties=True, cuts="once", sparse_after_cut=False),
    Method("posthoc", factored=False, penalties=False, cuts="once", factor_at_cut=True),
)}
MethodName = Literal["dense", "dprp", "svd-training", "posthoc"]  # TrainConfig.method
assert tuple(METHODS) == get_args(MethodName), "MethodName must list METHODS"
