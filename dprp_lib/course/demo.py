"""A short DPRP run on a small real subset: the library's whole loop in one screen.

Trains a factored ResNet-20 for a few epochs with the three penalties, cuts ranks after
every epoch, and reports the per-layer ranks and the sizes before and after.
"""
from __future__ import annotations

import tempfile

from ..engine.config import TrainConfig
from ..engine.runs import load_run
from ..engine.train import fit
from ..method.convert import compact
from ..method.metrics import count_macs, format_table, rank_table


def run_demo(dataset: str, data_dir="data", epochs: int = 4, per_class: int = 200, batch_size: int = 64,
             lr: float = 0.05, sparse: float = 5e-3, energy: float = 0.02, seed: int = 0, log=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="dprp-demo-") as out:
        config = TrainConfig(method="dprp", model="resnet20", dataset=dataset, data_dir=str(data_dir),
                             train_per_class=per_class, test_per_class=max(per_class // 5, 10),
                             skip=["fc"], epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9,
                             nesterov=True, weight_decay=5e-4, schedule="constant", sparse=sparse,
                             energy=energy, prune_warmup=1, prune_every=1, seed=seed, device="cpu",
                             out_dir=out, progress=False)
        log(f"ResNet-20 with its convolutions factored at full rank; penalties orth={config.orth:g}, "
            f"sort={config.sort:g}, sparse={config.sparse:g} ({config.sparse_kind}); after every "
            f"epoch each layer keeps (1 - {energy}) of its energy. Seed {seed}, CPU, float32.")

        def report(epoch, row):
            log(f"epoch {epoch}/{epochs}: loss {row['train_loss']:.3f}  train acc {row['train_acc']:.1%}  "
                f"test acc {row['test_acc']:.1%}  orth {row['orth']:.2e}  sort {row['sort']:.2e}  "
                f"total rank {sum(row['ranks'].values())}  ({row['epoch_time']:.1f} s)")
        summary = fit(config, on_epoch_end=report)
        run = load_run(out)
        model, history = run.model(), run.history

    table = rank_table(model)
    log(f"\ndata: {summary['dataset']}, {summary['train_images']} training and "
        f"{summary['test_images']} test images (first {per_class} a class)")
    log("per-layer ranks after training:")
    log(format_table(table, ["layer", "m", "n", "rank", "max_rank", "break_even",
                             "dense_params", "deployed_params"]))
    log(f"\nparameters: dense {summary['dense_params']:,} | factored as trained {summary['params']:,} | "
        f"deployed (cheaper form per layer) {summary['deployed_params']:,} "
        f"({summary['deployed_fraction']:.1%} of dense)")
    log(f"multiply-accumulates per image: dense {summary['dense_macs']:,} | "
        f"deployed {count_macs(compact(model)):,}")
    return {"summary": summary, "history": history, "rank_table": table}
