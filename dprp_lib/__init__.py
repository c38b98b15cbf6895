"""dprp_lib: Dynamic Parameter Rank Pruning (arXiv 2401.08014), as a small library to learn from.

    import dprp_lib as dprp
    model = dprp.svdify(dprp.models.resnet20())        # every conv/linear as U·diag(s)·Vᵀ
    reg = dprp.Regularizer(orth=1.0, sort=1.0, sparse=1e-4)
    loss = criterion(model(x), y) + reg(model)[0]
    dprp.prune_ranks(model, energy=1e-3, optimizer=opt) # at chosen epochs
    small = dprp.compact(model)                        # plain torch modules, cheaper form per layer
    fast = dprp.deploy(model, x)                       # for inference: BatchNorm folded, forms timed
    dprp.export(fast, "model.onnx", x)                 # ONNX (or .pt2), batch size dynamic
"""
from . import paths
from .engine import models
from .method.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from .method.convert import compact, svdify
from .method.deployment import deploy, export
from .method.layers import SVDConv2d, SVDLayer, SVDLinear, svd_layers
from .method.metrics import (count_macs, count_params, deployed_params, format_table,
                             order_violations, rank_table, spectrum_gap)
from .method.pruning import PruneSchedule, energy_rank, prune_ranks
from .method.regularizers import Regularizer, orthogonality, sorting, sparsity

from importlib.metadata import version as _version

__version__ = _version("dprp_lib")  # written once, in pyproject.toml

__all__ = [
    "models",
    "SVDLayer", "SVDConv2d", "SVDLinear", "svd_layers",
    "svdify", "compact", "deploy", "export",
    "Regularizer", "orthogonality", "sorting", "sparsity",
    "prune_ranks", "energy_rank", "PruneSchedule",
    "count_params", "deployed_params", "count_macs", "rank_table", "format_table",
    "spectrum_gap", "order_violations",
    "save_checkpoint", "load_checkpoint", "load_model_state",
]
