"""Into the factored world and out of it: svdify(model) and compact(model)."""
from __future__ import annotations

import copy
from typing import Callable, Iterable

import torch
from torch import nn

from .layers import SVDConv2d, SVDLayer, SVDLinear

_FACTORED = {nn.Conv2d: SVDConv2d, nn.Linear: SVDLinear}
# The forms a factored layer can be deployed in: one dense op; two stages at its rank; two stages
# with the rank padded by zero directions up to a multiple of ALIGN (the same function, more
# weights; vector units and oneDNN's channel blocks can run it faster than the odd rank).
DEPLOYED_FORMS = ("dense", "factored", "padded")
ALIGN = 8


def aligned_rank(rank: int, multiple: int = ALIGN) -> int:
    """The smallest multiple of `multiple` at or above `rank`."""
    if rank < 1 or multiple < 1:
        raise ValueError(f"rank and multiple must be >= 1, got {rank} and {multiple}")
    return -(-rank // multiple) * multiple


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def svdify(model: nn.Module, skip: Iterable[str] | Callable[[str, nn.Module], bool] = ()) -> nn.Module:
    """Replace every nn.Conv2d and nn.Linear in `model` by its exact SVD, in place.

    `skip` excludes layers: qualified module names (as in `model.named_modules()`), or a
    function `(name, module) -> bool`. Returns the model (a bare layer returns its factored
    replacement).
    """
    if type(model) in _FACTORED:
        return _FACTORED[type(model)].from_dense(model)
    named = dict(model.named_modules())
    if callable(skip):
        skipped = {name for name, mod in named.items() if skip(name, mod)}
    else:
        if isinstance(skip, str):
            raise TypeError("skip must be a list of module names or a function, not a single string")
        skipped = set(skip)
        unknown = sorted(skipped - set(named))
        if unknown:
            raise ValueError(f"skip names modules that are not in the model: {unknown}")
    for name, mod in named.items():
        if type(mod) in _FACTORED and name not in skipped:
            _replace(model, name, _FACTORED[type(mod)].from_dense(mod))
    return model


def _deployed_form(layer: SVDLayer, form: str | None = None) -> nn.Module:
    """One factored layer in plain torch: `form` "dense", "factored" (s folded into U) or "padded"
    (factored, the rank padded with zero directions to a multiple of ALIGN); None takes the form
    with fewer weights."""
    if form is not None and form not in DEPLOYED_FORMS:
        raise ValueError(f"a layer's form must be one of {DEPLOYED_FORMS}, got {form!r}")
    if form == "dense" or (form is None and not layer.factored_is_cheaper):
        return layer.to_dense()
    U, s, V = (layer.grouped(t.detach()) for t in layer.factors())
    g, r, p = layer.groups, layer.rank, layer.U
    if form == "padded" and aligned_rank(r) > r:
        extra = aligned_rank(r) - r  # zero singular values: the added directions contribute nothing
        U, s, V = (torch.cat([t, t.new_zeros(t.shape[:-1] + (extra,))], dim=-1) for t in (U, s, V))
        r = aligned_rank(r)
    opts = dict(device=p.device, dtype=p.dtype)
    if isinstance(layer, SVDLinear):
        first = nn.Linear(layer.in_features, r, bias=False, **opts)
        second = nn.Linear(r, layer.out_features, bias=layer.bias is not None, **opts)
        first_w, second_w = V[0].t(), (U * s.unsqueeze(-2))[0]
    else:
        first = nn.Conv2d(layer.in_channels, g * r, layer.kernel_size, layer.stride, layer.padding,
                          layer.dilation, g, bias=False, padding_mode=layer.padding_mode, **opts)
        second = nn.Conv2d(g * r, layer.out_channels, 1, groups=g, bias=layer.bias is not None, **opts)
        first_w = V.transpose(-1, -2).reshape(first.weight.shape)
        second_w = (U * s.unsqueeze(-2)).reshape(second.weight.shape)
    with torch.no_grad():
        first.weight.copy_(first_w)
        second.weight.copy_(second_w)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def compact(model: nn.Module, forms: dict[str, str] | None = None) -> nn.Module:
    """A copy of `model` in plain torch modules, each factored layer in its smaller form.

    A layer below its break-even rank becomes two plain layers (n→r, then r→m); any other
    layer becomes one dense layer. `forms` ({layer name: "dense" | "factored" | "padded"}, e.g.
    from `forms.measure_forms`) overrides that choice per layer. Outputs equal the factored model's.
    """
    if isinstance(model, SVDLayer):
        return _deployed_form(model, (forms or {}).get(""))
    forms = forms or {}
    small = copy.deepcopy(model)
    names = {name for name, mod in small.named_modules() if isinstance(mod, SVDLayer)}
    unknown = sorted(set(forms) - names)
    if unknown:
        raise ValueError(f"forms names layers that are not factored layers of the model: {unknown}")
    for name in sorted(names):
        _replace(small, name, _deployed_form(small.get_submodule(name), forms.get(name)))
    return small
