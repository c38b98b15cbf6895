"""SVD-factored layers: a weight stored as U · diag(s) · Vᵀ and trained in that form.

A layer's weight, reshaped to M ∈ R^{m×n} (m output channels; n = (in_channels / groups)·k_h·k_w
for a convolution, in_features for a linear layer), is held as three parameters:

    U ∈ R^{m×r},  s ∈ R^r,  V ∈ R^{n×r}        (r = the layer's current rank)

A grouped convolution keeps one factorization per group, with a leading group dimension
(U: g×m_g×r, s: g×r, V: g×n×r) and one rank shared by all groups.

This module imports nothing else of the project.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FORWARD_MODES = ("auto", "dense", "factored")


def check_rank(rank, max_rank: int, name: str = "rank", limit: str = "min(m, n) of this layer") -> int:
    """Return `rank` as an int in [1, max_rank], or raise naming the argument."""
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise TypeError(f"{name} must be an int, got {type(rank).__name__}")
    if not 1 <= rank <= max_rank:
        raise ValueError(f"{name} must be between 1 and {max_rank} ({limit}), got {rank}")
    return rank


class SVDLayer(nn.Module):
    """What SVDConv2d and SVDLinear share: the factors, rank changes, cost model, loading."""

    U: nn.Parameter
    s: nn.Parameter
    V: nn.Parameter
    groups: int = 1

    # --- shapes -----------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.s.shape[-1]

    @property
    def m(self) -> int:
        """Rows of one group's weight matrix (output channels per group)."""
        return self.U.shape[-2]

    @property
    def n(self) -> int:
        """Columns of one group's weight matrix."""
        return self.V.shape[-2]

    @property
    def max_rank(self) -> int:
        return min(self.m, self.n)

    @property
    def break_even_rank(self) -> float:
        """Below this rank the factors (U, s, V) take less storage than the dense weight."""
        return self.m * self.n / (self.m + self.n + 1)

    def factors(self) -> tuple[nn.Parameter, nn.Parameter, nn.Parameter]:
        return self.U, self.s, self.V

    def grouped(self, t: torch.Tensor) -> torch.Tensor:
        """View a factor (or a tensor shaped like one) with a leading group dimension."""
        return t if self.groups > 1 else t.unsqueeze(0)

    def matrix(self) -> torch.Tensor:
        """The weight as g×m×n matrices, U·diag(s)·Vᵀ for each group."""
        U, s, V = (self.grouped(t) for t in self.factors())
        return (U * s.unsqueeze(-2)) @ V.transpose(-1, -2)

    # --- execution form ---------------------------------------------------------------
    @property
    def forward_mode(self) -> str:
        return self._forward_mode

    @forward_mode.setter
    def forward_mode(self, mode: str) -> None:
        if mode not in FORWARD_MODES:
            raise ValueError(f"forward_mode must be one of {FORWARD_MODES}, got {mode!r}")
        self._forward_mode = mode

    @property
    def factored_is_cheaper(self) -> bool:
        """Two stages (s folded into U) cost r·(m + n) per group, in both weights and
        multiply-accumulates per output position, against m·n for one dense op."""
        return self.rank * (self.m + self.n) < self.m * self.n

    def uses_factored_forward(self) -> bool:
        """True when this layer runs as two stages (n→r, then r→m) rather than one dense op;
        "auto" picks the cheaper form."""
        if self._forward_mode == "auto":
            return self.factored_is_cheaper
        return self._forward_mode == "factored"

    # --- rank changes -----------------------------------------------------------------
    def take_directions(self, t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Select directions `index` (g×k, or k) from a tensor shaped like U, s or V."""
        index = index.reshape(self.groups, -1).to(t.device)
        tg = self.grouped(t)
        shape = tg.shape[:-1] + (index.shape[-1],)
        index = index.view(self.groups, *([1] * (tg.dim() - 2)), -1).expand(shape)
        out = torch.take_along_dim(tg, index, dim=-1)
        return out if self.groups > 1 else out.squeeze(0)

    @torch.no_grad()
    def keep_directions(self, index: torch.Tensor) -> None:
        """Keep only directions `index`, in place; the Parameter objects stay the same.

        Keeping the objects means an optimizer still holds them; only its per-parameter
        state needs the same slicing (see dprp_lib.method.pruning.prune_ranks).
        """
        for p in self.factors():
            p.data = self.take_directions(p.data, index)
            if p.grad is not None:
                p.grad = self.take_directions(p.grad, index)

    def truncate(self, k: int) -> "SVDLayer":
        """Keep the first k directions (in index order), in place."""
        k = check_rank(k, self.rank, "k", "the layer's current rank")
        self.keep_directions(torch.arange(k).expand(self.groups, k))
        return self

    def _resize_rank(self, k: int) -> None:
        for p in self.factors():
            p.data = p.data.new_empty(p.shape[:-1] + (k,))
            p.grad = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Ranks travel with the checkpoint: adopt the stored rank before copying values.
        s = state_dict.get(prefix + "s")
        if (
            isinstance(s, torch.Tensor)
            and s.dim() == self.s.dim()
            and s.shape[:-1] == self.s.shape[:-1]
            and 1 <= s.shape[-1] <= self.max_rank
            and s.shape[-1] != self.rank
        ):
            self._resize_rank(s.shape[-1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- construction and conversion ------------------------------------------------------
    DENSE: type = nn.Module  # the plain torch layer this class factors
    DENSE_ARG = "layer"      # its argument's name in error messages

    @classmethod
    def from_dense(cls, layer: nn.Module, rank: int | None = None) -> "SVDLayer":
        """The exact SVD of a plain `layer` (same outputs), optionally keeping only `rank` directions."""
        if type(layer) is not cls.DENSE:
            raise TypeError(f"{cls.DENSE_ARG} must be a torch.nn.{cls.DENSE.__name__}, got {type(layer).__name__}")
        new = cls.__new__(cls)
        SVDLayer.__init__(new)
        new._configure(layer)
        new._factorize(layer.weight, layer.bias, rank)
        return new

    def to_dense(self) -> nn.Module:
        """A plain torch layer computing the same function."""
        dense = self._empty_dense()
        with torch.no_grad():
            dense.weight.copy_(self.weight)
            if self.bias is not None:
                dense.bias.copy_(self.bias)
        return dense

    def _factorize(self, weight: torch.Tensor, bias: torch.Tensor | None, rank: int | None) -> None:
        """Set U, s, V from the exact float64 SVD of `weight`, keeping `rank` directions."""
        w = weight.detach().to(torch.float64).reshape(self.groups, weight.shape[0] // self.groups, -1)
        U, S, Vh = torch.linalg.svd(w, full_matrices=False)
        r = S.shape[-1] if rank is None else check_rank(rank, S.shape[-1])
        U, S, V = U[..., :r], S[..., :r], Vh.transpose(-1, -2)[..., :r]
        if self.groups == 1:
            U, S, V = U[0], S[0], V[0]
        self.U = nn.Parameter(U.to(weight.dtype).contiguous())
        self.s = nn.Parameter(S.to(weight.dtype).contiguous())
        self.V = nn.Parameter(V.to(weight.dtype).contiguous())
        if bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = nn.Parameter(bias.detach().clone())
        self._forward_mode = "auto"


class SVDConv2d(SVDLayer):
    """A Conv2d whose filter bank is stored as U · diag(s) · Vᵀ (one factorization per group).

    Takes nn.Conv2d's arguments, plus `rank` (default: full rank). A fresh layer is the exact
    SVD of a freshly initialised nn.Conv2d, so both start from the same function.
    """

    DENSE, DENSE_ARG = nn.Conv2d, "conv"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", rank=None, device=None, dtype=None):
        super().__init__()
        # nn.Conv2d validates every argument and gives torch's own initialisation.
        dense = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                          groups, bias, padding_mode, device=device, dtype=dtype)
        self._configure(dense)
        self._factorize(dense.weight, dense.bias, rank)

    def _configure(self, conv: nn.Conv2d) -> None:
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                     "dilation", "groups", "padding_mode"):
            setattr(self, name, getattr(conv, name))
        # Non-zero padding modes pad the input explicitly, as nn.Conv2d does.
        if isinstance(self.padding, str):
            pad = []
            for d, k in zip(reversed(self.dilation), reversed(self.kernel_size)):
                total = d * (k - 1) if self.padding == "same" else 0
                pad += [total // 2, total - total // 2]
        else:
            pad = [p for p in reversed(self.padding) for _ in range(2)]
        self._explicit_padding = tuple(pad)

    @property
    def weight(self) -> torch.Tensor:
        """The dense filter bank U·diag(s)·Vᵀ, shaped like nn.Conv2d's weight."""
        return self.matrix().reshape(self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def _conv(self, x, weight, bias, groups):
        if self.padding_mode != "zeros":
            x = F.pad(x, self._explicit_padding, mode=self.padding_mode)
            return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, groups)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.uses_factored_forward():
            return self._conv(x, self.weight, self.bias, self.groups)
        # Stage 1: k×k convolution into r channels per group (the rows of Vᵀ).
        U, s, V = (self.grouped(t) for t in self.factors())
        first = V.transpose(-1, -2).reshape(self.groups * self.rank, self.in_channels // self.groups,
                                            *self.kernel_size)
        h = self._conv(x, first, None, self.groups)
        # Stage 2: 1×1 convolution from r channels to m outputs per group (U·diag(s)).
        second = (U * s.unsqueeze(-2)).reshape(self.out_channels, self.rank, 1, 1)
        return F.conv2d(h, second, self.bias, groups=self.groups)

    def _empty_dense(self) -> nn.Conv2d:
        return nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                         self.padding, self.dilation, self.groups, self.bias is not None,
                         self.padding_mode, device=self.U.device, dtype=self.U.dtype)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, rank={self.rank}/{self.max_rank}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        if self.bias is None:
            s += ", bias=False"
        return s


class SVDLinear(SVDLayer):
    """A Linear layer whose weight is stored as U · diag(s) · Vᵀ."""

    DENSE, DENSE_ARG = nn.Linear, "linear"

    def __init__(self, in_features, out_features, bias=True, rank=None, device=None, dtype=None):
        super().__init__()
        dense = nn.Linear(in_features, out_features, bias, device=device, dtype=dtype)
        self._configure(dense)
        self._factorize(dense.weight, dense.bias, rank)

    def _configure(self, linear: nn.Linear) -> None:
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight U·diag(s)·Vᵀ, shaped like nn.Linear's weight."""
        return self.matrix()[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.uses_factored_forward():
            return F.linear(x, self.weight, self.bias)
        return F.linear(F.linear(x, self.V.t()) * self.s, self.U, self.bias)

    def _empty_dense(self) -> nn.Linear:
        return nn.Linear(self.in_features, self.out_features, self.bias is not None,
                         device=self.U.device, dtype=self.U.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}/{self.max_rank}, bias={self.bias is not None}")


def svd_layers(model: nn.Module):
    """(name, layer) for every factored layer in `model`, in module order."""
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, SVDLayer)]


__all__ = ["SVDLayer", "SVDConv2d", "SVDLinear", "svd_layers", "check_rank", "FORWARD_MODES"]
