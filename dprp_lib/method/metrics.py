"""Sizes and costs: parameters, multiply-accumulates, and per-layer rank tables."""
from __future__ import annotations

import torch
from torch import nn

from .convert import compact
from .layers import SVDConv2d, SVDLayer, SVDLinear, svd_layers


def count_params(model: nn.Module) -> int:
    """Number of parameters as stored (a factored layer counts U, s and V)."""
    return sum(p.numel() for p in model.parameters())


def deployed_params(model: nn.Module) -> int:
    """Parameters of `compact(model)`: each layer in its cheaper form (dense, or factored with s folded)."""
    return count_params(compact(model))


def _macs_per_position(mod: nn.Module) -> int | None:
    """Multiply-accumulates per output position (per output pixel, or per input row)."""
    if isinstance(mod, SVDLayer):
        g, m, n, r = mod.groups, mod.m, mod.n, mod.rank
        return g * r * (m + n) if mod.uses_factored_forward() else g * m * n
    if isinstance(mod, nn.Conv2d):
        return mod.out_channels * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
    if isinstance(mod, nn.Linear):
        return mod.out_features * mod.in_features
    return None


def count_macs(model: nn.Module, input_size=(1, 3, 32, 32)) -> int:
    """Multiply-accumulates of one forward pass on an input of `input_size`.

    Counts convolutions and linear layers (the standard convention: batch norm, activations,
    pooling and additions are left out). A factored layer is counted in the form it executes
    in: one dense op (m·n per output position) or two stages (r·(m + n)). Rebuilding the
    dense weight from its factors is per batch, not per image, and is not counted.
    """
    total = 0

    def hook(mod, inputs, output):
        nonlocal total
        per_position = _macs_per_position(mod)
        if isinstance(mod, (nn.Conv2d, SVDConv2d)):
            positions = output.shape[0] * output.shape[-2] * output.shape[-1]
        else:
            positions = output.numel() // output.shape[-1]
        total += per_position * positions

    counted = (nn.Conv2d, nn.Linear, SVDConv2d, SVDLinear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    p = next(model.parameters(), None)
    x = torch.zeros(input_size, device=p.device if p is not None else None,
                    dtype=p.dtype if p is not None and p.is_floating_point() else None)
    forward_once(model, x, handles)
    return total


def forward_once(model: nn.Module, x: torch.Tensor, handles) -> None:
    """Run `model` on `x` once in eval mode without gradients (for its hooks to observe), then
    restore its mode and remove `handles`."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


@torch.no_grad()
def spectrum_gap(model: nn.Module) -> float:
    """How far |s| is from the true singular values of U·diag(s)·Vᵀ, over all factored layers.

    ‖sort(|s|) − σ(U·diag(s)·Vᵀ)‖ / ‖σ‖, pooled over layers (and groups). Zero while U and V
    are orthonormal; it grows as they drift, and then |s_i| no longer measures direction i.
    """
    num = den = 0.0
    for _, layer in svd_layers(model):
        sigma = torch.linalg.svdvals(layer.matrix().double())
        s = layer.grouped(layer.s.detach()).double().abs().sort(dim=-1, descending=True).values
        num += (s - sigma[..., : s.shape[-1]]).square().sum().item()
        den += sigma.square().sum().item()
    return (num / den) ** 0.5 if den else 0.0


@torch.no_grad()
def order_violations(model: nn.Module) -> float:
    """Fraction of adjacent pairs of s, over all factored layers, with |s_{i+1}| > |s_i|."""
    bad = pairs = 0
    for _, layer in svd_layers(model):
        a = layer.s.detach().abs()
        bad += int((a[..., 1:] > a[..., :-1]).sum())
        pairs += a[..., 1:].numel()
    return bad / pairs if pairs else 0.0


def rank_table(model: nn.Module) -> list[dict]:
    """One row per factored layer: its shape, rank, break-even rank and weight storage (bias excluded)."""
    rows = []
    for name, layer in svd_layers(model):
        g, m, n, r = layer.groups, layer.m, layer.n, layer.rank
        rows.append({
            "layer": name,
            "kind": "conv" if isinstance(layer, SVDConv2d) else "linear",
            "m": m, "n": n, "groups": g,
            "rank": r, "max_rank": layer.max_rank,
            "break_even": round(layer.break_even_rank, 1),
            "dense_params": g * m * n,
            "factored_params": g * r * (m + n + 1),
            "deployed_params": g * (r * (m + n) if layer.factored_is_cheaper else m * n),
            "forward": "factored" if layer.uses_factored_forward() else "dense",
        })
    return rows


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows of dicts as an aligned text table."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])
    cells = [[str(c) for c in columns]] + [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)
