"""A short DPRP run on a small real subset: the library's whole loop in one screen.

Trains a factored ResNet-20 for a few epochs with the three penalties, prunes ranks after
every epoch, and reports the per-layer ranks and the sizes before and after.
"""
from __future__ import annotations

import time

import torch

from . import models
from .convert import compact, svdify
from .data import BatchLoader, load_dataset
from .layers import svd_layers
from .metrics import count_macs, count_params, deployed_params, format_table, rank_table
from .pruning import prune_ranks
from .regularizers import Regularizer
from .train import evaluate, train_epoch


def run_demo(dataset: str, data_dir="data", epochs: int = 4, per_class: int = 200, batch_size: int = 64,
             lr: float = 0.05, sparse: float = 5e-3, energy: float = 0.02, seed: int = 0, log=print) -> dict:
    torch.manual_seed(seed)
    data = load_dataset(dataset, root=data_dir).subset(per_class, max(per_class // 5, 10))
    mean, std = data.channel_stats()
    train = BatchLoader(data.train_x, data.train_y, batch_size, mean, std, train=True, seed=seed)
    test = BatchLoader(data.test_x, data.test_y, 256, mean, std, train=False)
    log(f"data: {data.label}, {len(data.train_y)} training and {len(data.test_y)} test images "
        f"(first {per_class} a class), seed {seed}, CPU float32")

    model = models.resnet20(num_classes=data.num_classes)
    dense_params, dense_macs = count_params(model), count_macs(model)
    svdify(model, skip=["fc"])
    reg = Regularizer(orth=1.0, sort=1.0, sparse=sparse)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    full_rank = sum(layer.max_rank for _, layer in svd_layers(model))
    log(f"model: ResNet-20, convolutions factored at full rank, {reg}; "
        f"after every epoch each layer keeps (1 - {energy}) of its energy")
    history = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        row = train_epoch(model, train, opt, reg)
        prune_ranks(model, energy=energy, optimizer=opt)
        row.update(evaluate(model, test), epoch=epoch,
                   total_rank=sum(layer.rank for _, layer in svd_layers(model)))
        history.append(row)
        log(f"epoch {epoch}/{epochs}: loss {row['train_loss']:.3f}  train acc {row['train_acc']:.1%}  "
            f"test acc {row['test_acc']:.1%}  orth {row['orth']:.2e}  sort {row['sort']:.2e}  "
            f"total rank {row['total_rank']}/{full_rank}  ({time.perf_counter() - t0:.1f} s)")

    table = rank_table(model)
    deployed = deployed_params(model)
    log("\nper-layer ranks after training:")
    log(format_table(table, ["layer", "m", "n", "rank", "max_rank", "break_even",
                             "dense_params", "deployed_params"]))
    log(f"\nparameters: dense {dense_params:,} | factored as trained {count_params(model):,} | "
        f"deployed (cheaper form per layer) {deployed:,} ({deployed / dense_params:.1%} of dense)")
    log(f"multiply-accumulates per image: dense {dense_macs:,} | deployed {count_macs(compact(model)):,}")
    return {"history": history, "rank_table": table, "full_rank": full_rank,
            "dense_params": dense_params, "deployed_params": deployed, "dataset": data.label}
