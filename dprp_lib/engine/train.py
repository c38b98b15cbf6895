"""One training loop for dense baselines, DPRP and the earlier methods.

    summary = fit(TrainConfig(method="dprp", model="resnet20", dataset="cifar10", epochs=164))

The methods (dense, dprp, svd-training, posthoc) share the recipe, the data order and the
initial function; what differs between them is declared once, in `methods.METHODS`.
svd-training and posthoc can choose their one cut's energy to reach a deployed size
(`cut_to`), so they can be compared with DPRP at equal size.

A run writes to `out_dir`: config.json, metrics.jsonl (one line an epoch), checkpoint.pt
(after every epoch, atomically) and summary.json. `resume=True` continues from the
checkpoint to the same result as an uninterrupted run. Nothing in a training step waits on
the host: losses and counts accumulate on the device and are read once an epoch.
Under torchrun the run is data-parallel (DistributedDataParallel); pruning decisions are
taken from rank 0's singular values so factor shapes stay identical on every process.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..method.checkpoint import load_checkpoint, load_model_state
from ..method.convert import svdify
from ..method.forms import measure_forms, set_forms
from ..method.layers import svd_layers
from ..method.metrics import count_macs, count_params, deployed_params, order_violations, spectrum_gap
from ..method.pruning import PruneSchedule, energy_for_size, prune_ranks
from ..method.regularizers import Regularizer
from .config import TrainConfig
from .data import BatchLoader, balanced_sample, load_dataset, other_test_sets
from .methods import METHODS
from .models import build_model
from .precision import bf16_is_fast, choose_amp, processor  # noqa: F401 (bf16_is_fast: public here too)
from .runs import RunFolder


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class RunExists(FileExistsError):
    """out_dir already holds a run; resume it or choose another out_dir."""


# --- the two loops ---------------------------------------------------------------------------
def train_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                regularizer: Regularizer | None = None, set_lr=None, autocast=None,
                progress=None, reg_model: nn.Module | None = None,
                label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    """One pass over `loader`. Returns device-side sums (read them once, after the epoch).

    `set_lr(i)` sets the learning rate before step i of the epoch; `autocast` is a context
    manager factory for mixed precision (the penalties stay in float32); `reg_model` is the
    module the penalties read (the unwrapped model under DistributedDataParallel).
    """
    model.train()
    dev = next(model.parameters()).device
    keys = ("loss", "correct", "seen", "orth", "sort", "sparse", "steps", "nonfinite")
    sums = {k: torch.zeros((), device=dev) for k in keys}
    autocast = autocast or contextlib.nullcontext
    for i, (x, y) in enumerate(loader):
        if set_lr is not None:
            set_lr(i)
        with autocast():
            out = model(x)
            loss = F.cross_entropy(out, y, label_smoothing=label_smoothing)
        total = loss.float()
        if regularizer is not None:
            penalty, parts = regularizer(reg_model or model)
            total = total + penalty
            for k, v in parts.items():
                sums[k] += v.detach()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        sums["nonfinite"] += (~torch.isfinite(total.detach())).float()
        sums["loss"] += loss.detach().float() * len(y)
        sums["correct"] += (out.argmax(1) == y).sum()
        sums["seen"] += len(y)
        sums["steps"] += 1
        if progress is not None:
            progress.update(1)
    return sums


@torch.no_grad()
def evaluate_sums(model: nn.Module, loader, autocast=None) -> dict[str, torch.Tensor]:
    model.eval()
    dev = next(model.parameters()).device
    sums = {k: torch.zeros((), device=dev) for k in ("loss", "correct", "seen")}
    autocast = autocast or contextlib.nullcontext
    for x, y in loader:
        with autocast():
            out = model(x)
        sums["loss"] += F.cross_entropy(out.float(), y, reduction="sum")
        sums["correct"] += (out.argmax(1) == y).sum()
        sums["seen"] += len(y)
    return sums


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader, autocast=None) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance from `loader`'s batches (the
    weights stay as they are); returns `model`.

    A cut changes what each layer outputs, but the running statistics still describe the
    uncut network: part of the accuracy lost right after a cut is this mismatch, which the
    next training steps repair on their own.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over every batch
    model.train()
    autocast = autocast or contextlib.nullcontext
    for x, _ in loader:
        with autocast():
            model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
    return model


def evaluate(model: nn.Module, loader, split: str = "test") -> dict:
    """Mean cross-entropy and top-1 accuracy of `model` over `loader`, as {split}_loss, {split}_acc."""
    return summarise_test(evaluate_sums(model, loader), split)


def summarise_test(sums: dict, split: str = "test") -> dict:
    s = {k: v.item() for k, v in sums.items()}
    return {f"{split}_loss": s["loss"] / max(s["seen"], 1), f"{split}_acc": s["correct"] / max(s["seen"], 1)}


def summarise_epoch(sums: dict) -> dict:
    s = {k: v.item() for k, v in sums.items()}
    out = {"train_loss": s["loss"] / max(s["seen"], 1), "train_acc": s["correct"] / max(s["seen"], 1)}
    steps = max(s["steps"], 1)
    out.update({k: s[k] / steps for k in ("orth", "sort", "sparse")})
    out["nonfinite_steps"] = int(s["nonfinite"])
    return out


# --- learning rate -------------------------------------------------------------------------
def lr_at(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate at `step` of 1-based `epoch`, for the main phase or fine-tuning."""
    if epoch > config.epochs:  # fine-tuning after a one-shot cut: cosine from lr·gamma to 0
        done = (epoch - config.epochs - 1 + step / steps_per_epoch) / max(config.finetune_epochs, 1)
        return config.lr * config.gamma * 0.5 * (1 + math.cos(math.pi * done))
    progress = (epoch - 1 + step / steps_per_epoch) / config.epochs
    warm = config.warmup_epochs / config.epochs
    if progress < warm:
        return config.lr * (progress / warm)
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * (progress - warm) / (1 - warm)))
    passed = sum(epoch > round(m * config.epochs) for m in config.milestones)
    return config.lr * config.gamma ** passed


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW; weight decay only on the parameters `weight_decay_on` names."""
    no_decay = set()
    for _, layer in svd_layers(model):
        if config.weight_decay_on in ("except_uv", "except_factors"):
            no_decay |= {id(layer.U), id(layer.V)}
        if config.weight_decay_on == "except_factors":
            no_decay.add(id(layer.s))
    params = list(model.parameters())
    groups = [{"params": [p for p in params if id(p) not in no_decay], "weight_decay": config.weight_decay},
              {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    return torch.optim.AdamW(groups, lr=config.lr)


# --- distributed ---------------------------------------------------------------------------
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.started_here = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.started_here = True

    def stop(self) -> None:
        if self.started_here:
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, sums: dict) -> dict:
        if self.enabled:
            keys = sorted(sums)
            flat = torch.stack([sums[k].float() for k in keys])
            dist.all_reduce(flat)
            sums = dict(zip(keys, flat.unbind()))
        return sums

    def broadcast(self, tensors) -> None:
        if self.enabled:
            for t in tensors:
                dist.broadcast(t, 0)

    def gather(self, obj) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def resolve_device(name: str, ddp: Distributed | None = None) -> torch.device:
    """"auto" (CUDA when available, else CPU), "cpu" or "cuda" (this process's GPU under torchrun)."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    ddp = ddp or Distributed()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but no CUDA device is available (use device='cpu' or 'auto')")
        torch.cuda.set_device(ddp.local_rank)
        return torch.device("cuda", ddp.local_rank)
    return torch.device("cpu")


# --- checkpoints -----------------------------------------------------------------------------
# --- the run ---------------------------------------------------------------------------------
CALIBRATION_IMAGES = 2000  # training images that re-estimate BatchNorm statistics at a cut
CALIBRATION_SEED = 7      # draws them, class-balanced (data.balanced_sample)


def fit(config: TrainConfig, on_epoch_end=None) -> dict:
    """Train as `config` says; return the summary (also written to out_dir/summary.json).

    `on_epoch_end(epoch, row)` is called after each epoch's checkpoint is on disk.
    """
    config.validate()
    ddp = Distributed()
    device = resolve_device(config.device, ddp)
    config = settle_amp(config, device)
    ddp.start(device)
    try:
        summary = _fit(config, ddp, device, on_epoch_end)
        # Every process reaches here before any tears the group down: a process that destroys
        # it while a peer still talks to it can abort at exit ("terminate called without an
        # active exception").
        ddp.barrier()
        return summary
    finally:
        ddp.stop()


def settle_amp(config: TrainConfig, device: torch.device) -> TrainConfig:
    """`amp="auto"` made definite: the precision a resumed run started with, else this machine's
    fast path (bf16 only where it is native). The definite value is what config.json records."""
    if config.amp != "auto":
        return config
    ckpt_path = RunFolder(config.out_dir).checkpoint
    if config.resume and ckpt_path.exists():
        amp = bool(load_checkpoint(ckpt_path)["config"]["amp"])
    else:
        amp = choose_amp(device.type)
    return dataclasses.replace(config, amp=amp)


def _fit(config: TrainConfig, ddp: Distributed, device: torch.device, on_epoch_end) -> dict:
    code = code_version()  # the code this process trains with, recorded in the summary
    folder = _open_folder(config, ddp)
    images = _Images(config, ddp, device)
    run = _Run(config, ddp, device, images, folder.checkpoint)
    if ddp.main:
        folder.start(config, run.history)
    run.choose_forms()

    wrapped = _wrap(run.model, config, ddp, device)
    bar = _progress(config, ddp, total=(run.total_epochs - run.start_epoch) * len(images.train),
                    epochs=run.total_epochs)
    elapsed = run.history[-1]["time"] if run.history else 0.0
    for epoch in range(run.start_epoch + 1, run.total_epochs + 1):
        t0 = time.perf_counter()
        row = run.train_epoch(epoch, wrapped, bar)
        pruned = {}
        if run.cut_is_due(epoch):
            # DDP's reducer holds each parameter's gradient accumulator, which remembers the
            # parameter's shape: drop it before shapes change, and wrap the model anew after.
            wrapped = None
            gc.collect()
            pruned = run.cut(row)
            wrapped = _wrap(run.model, config, ddp, device)
        run.evaluate(row, epoch)
        elapsed += time.perf_counter() - t0
        row.update(_sizes(run.model, images.input_size), pruned={k: v for k, v in pruned.items() if v[0] != v[1]},
                   time=round(elapsed, 3), epoch_time=round(time.perf_counter() - t0, 3), processor=processor())
        run.history.append(row)
        if ddp.main:
            folder.end_epoch(row, model=run.model.state_dict(), optimizer=run.optimizer.state_dict(), epoch=epoch,
                             history=run.history, config=config.to_dict(), factored=run.factored,
                             num_classes=images.data.num_classes,
                             normalization={"mean": images.mean, "std": images.std})
        ddp.barrier()
        if bar is not None:
            watched = images.watched
            bar.set_postfix(epoch=epoch, loss=f"{row['train_loss']:.3f}", **{watched: f"{row[f'{watched}_acc']:.3f}"})
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    if bar is not None:
        bar.close()

    summary = _summary(config, images.data, run.history, run.dense_params, run.dense_macs, device, ddp, run.model,
                       code)
    if ddp.main:
        folder.finish(summary)
    return summary


def _open_folder(config: TrainConfig, ddp: Distributed) -> RunFolder:
    folder = RunFolder(config.out_dir)
    if ddp.main:
        if folder.checkpoint.exists() and not config.resume:
            raise RunExists(f"{folder.path} already holds a run (checkpoint.pt): pass resume=True to "
                            "continue it, or choose another out_dir")
        folder.path.mkdir(parents=True, exist_ok=True)
    ddp.barrier()
    return folder


class _Images:
    """A run's images as loaders, normalised by its training images' statistics."""

    def __init__(self, config: TrainConfig, ddp: Distributed, device: torch.device):
        self.config, self.ddp, self.device = config, ddp, device
        # Rank 0 decodes into the cache first, the others read it.
        if ddp.main:
            data = load_dataset(config.dataset, config.data_dir, config.data_source)
        ddp.barrier()
        if not ddp.main:
            data = load_dataset(config.dataset, config.data_dir, config.data_source)
        self.data = data = data.holdout(config.holdout).subset(config.train_per_class, config.test_per_class)
        self.input_size = (1,) + data.image_shape
        self.mean, self.std = mean, std = data.channel_stats()
        self.train = BatchLoader(data.train_x, data.train_y, config.batch_size, mean, std, train=True,
                                 device=device, augment=config.augment, seed=config.seed,
                                 rank=ddp.rank, world_size=ddp.world_size, channels_last=config.channels_last)
        self.test = self.evaluation(data.test_x, data.test_y)
        # Fixed, class-balanced training images for re-estimating BatchNorm statistics at a cut,
        # augmented as training's are: the running statistics describe augmented batches, and plain
        # images gave statistics 1.5 points of validation accuracy worse than them on the full-data
        # runs (dense and DPRP 50%, seed 0). Drawn, shuffled and augmented by their own generators,
        # reseeded the same for every cut and process, so training's batches are untouched.
        picked = balanced_sample(data.train_y, CALIBRATION_IMAGES // data.num_classes, CALIBRATION_SEED)
        self.calibration = BatchLoader(data.train_x[picked], data.train_y[picked], min(500, int(picked.sum())),
                                       mean, std, train=True, augment=config.augment, seed=CALIBRATION_SEED,
                                       device=device, channels_last=config.channels_last)
        # With a validation split, each epoch (and every choice) reads it; the test set is read
        # once, after the last epoch. Without one (quick course runs), each epoch reads the test set.
        if config.holdout:
            self.watch, self.watched = self.evaluation(data.val_x, data.val_y), "val"
        else:
            self.watch, self.watched = self.test, "test"
        if len(self.train) == 0:
            raise ValueError(f"batch_size={config.batch_size} is larger than the training set "
                             f"({len(data.train_y)} images over {ddp.world_size} process(es))")

    def evaluation(self, x, y) -> BatchLoader:
        return BatchLoader(x, y, 500, self.mean, self.std, train=False, device=self.device, rank=self.ddp.rank,
                           world_size=self.ddp.world_size, channels_last=self.config.channels_last)


class _Run:
    """A run in progress: its model, optimizer, penalties and history, one epoch at a time."""

    def __init__(self, config: TrainConfig, ddp: Distributed, device: torch.device, images: _Images, checkpoint):
        self.config, self.ddp, self.device, self.images = config, ddp, device, images
        num_classes = images.data.num_classes
        # The same initial function for every method.
        torch.manual_seed(config.seed)
        self.model = model = build_model(config.model, num_classes, config.width).to(device)
        # Every fraction is of the full-width dense network (a thin control is measured against it too).
        reference = model if config.width == 1 else build_model(config.model, num_classes).to(device)
        self.dense_params, self.dense_macs = count_params(reference), count_macs(reference, images.input_size)
        self.method = method = METHODS[config.method]
        self.factored = method.factored  # becomes True for posthoc at its cut
        if self.factored:
            svdify(model, skip=config.skip)
        self.regularizer = (Regularizer(config.orth, config.sort, config.sparse, config.sparse_kind)
                            if method.penalties else None)
        self.schedule = PruneSchedule(config.prune_warmup, config.prune_every, config.prune_stop)
        self.total_epochs = config.epochs + (config.finetune_epochs if method.one_shot else 0)
        self.start_epoch, self.history, saved = 0, [], None
        if config.resume and checkpoint.exists():
            saved = load_checkpoint(checkpoint, map_location=device)
            _check_same_run(config, saved["config"])
            if saved["factored"] and not self.factored:  # posthoc after its cut
                svdify(model, skip=config.skip)
                self.factored = True
            load_model_state(model, saved["model"])
            self.start_epoch, self.history = saved["epoch"], saved["history"]
        self.optimizer = make_optimizer(config, model)
        if self.start_epoch:
            self.optimizer.load_state_dict(saved["optimizer"])
            if method.one_shot and self.start_epoch >= config.epochs and not method.sparse_after_cut:
                self.regularizer.sparse = 0.0
        if config.channels_last:
            model.to(memory_format=torch.channels_last)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp)

    def choose_forms(self) -> None:
        """With forms="measured", each factored layer runs in the form timed faster for a
        training step at the current ranks (a cut can make the counted choice the slower one)."""
        config = self.config
        if config.forms == "measured" and self.factored:
            example = torch.zeros((config.batch_size,) + self.images.data.image_shape, device=self.device)
            if config.channels_last:
                example = example.contiguous(memory_format=torch.channels_last)
            set_forms(self.model, measure_forms(self.model, example, training=True, amp=config.amp))

    def cut_is_due(self, epoch: int) -> bool:
        if self.method.cuts == "scheduled":
            return self.schedule.due(epoch)
        return self.method.one_shot and epoch == self.config.epochs

    def train_epoch(self, epoch: int, wrapped: nn.Module, bar) -> dict:
        """One epoch of training steps; the epoch's row of metrics so far."""
        config, train, optimizer = self.config, self.images.train, self.optimizer
        train.set_epoch(epoch)
        steps = len(train)

        def set_lr(i):
            lr = lr_at(config, epoch, i, steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
        sums = train_epoch(wrapped, train, optimizer, self.regularizer, set_lr, self.autocast, bar,
                           reg_model=self.model, label_smoothing=config.label_smoothing)
        row = {"epoch": epoch, "phase": "finetune" if epoch > config.epochs else "train",
               "lr": optimizer.param_groups[0]["lr"]}
        row.update(summarise_epoch(self.ddp.sum(sums)))
        if row["nonfinite_steps"]:
            raise NonFiniteLoss(
                f"epoch {epoch}: the loss was NaN or infinite in {row['nonfinite_steps']} step(s); "
                f"stopped. The last good checkpoint ({RunFolder(config.out_dir).checkpoint}, epoch {epoch - 1}) "
                "is kept: lower lr or the penalty weights and resume")
        return row

    def cut(self, row: dict) -> dict:
        """Cut ranks as the method says (factoring first for posthoc); record in `row` what the cut
        itself cost: accuracy before and after it, each with BatchNorm statistics re-estimated for
        the network as it is (the running statistics lag behind training). {layer: (old, new)}."""
        config, method, model, watched = self.config, self.method, self.model, self.images.watched
        row[f"{watched}_acc_before_cut"] = self._evaluate(self.images.watch, watched)[f"{watched}_acc"]
        row[f"{watched}_acc_before_cut_recalibrated"] = self._recalibrated_accuracy()
        if method.factor_at_cut:
            svdify(model, skip=config.skip)
            if config.channels_last:
                model.to(memory_format=torch.channels_last)
        reorder = method.reorder(config.reorder)
        energy = _cut_energy(config, model, self.dense_params, reorder)
        pruned = _prune(model, None if method.factor_at_cut else self.optimizer, energy, config.min_rank, reorder,
                        self.ddp)
        if method.factor_at_cut:
            self.optimizer = make_optimizer(config, model)  # over the factors; the checkpoint holds them
            self.factored = True
        if method.one_shot:
            row["cut_energy"] = energy
        if not method.sparse_after_cut:
            self.regularizer.sparse = 0.0
        self.choose_forms()
        row[f"{watched}_acc_after_cut_recalibrated"] = self._recalibrated_accuracy()
        return pruned

    def evaluate(self, row: dict, epoch: int) -> None:
        """The epoch's accuracy on the watched split; after the last epoch, also the test set and
        the same test images in the other encodings this machine has (lossless, JPEG)."""
        images = self.images
        row.update(self._evaluate(images.watch, images.watched))
        if epoch != self.total_epochs:
            return
        if images.watch is not images.test:
            row.update(self._evaluate(images.test, "test"))
        if self.config.test_per_class is None:
            for key, (x, y) in other_test_sets(self.config.dataset, self.config.data_dir).items():
                row.update(self._evaluate(images.evaluation(x, y), f"test:{key}"))

    def _evaluate(self, loader, split: str) -> dict:
        return _evaluate(self.model, loader, self.ddp, self.autocast, split)

    def _recalibrated_accuracy(self) -> float:
        images = self.images
        return _recalibrated_accuracy(self.model, images.calibration, images.watch, self.ddp, self.autocast,
                                      images.watched)


def _check_same_run(config: TrainConfig, saved: dict) -> None:
    # What may differ on resume: where the run lives and how it is shown or run.
    saved = TrainConfig.from_dict(saved).result_fields()
    mine = config.result_fields()
    changed = sorted(k for k in set(mine) | set(saved) if mine.get(k) != saved.get(k))
    if changed:
        raise ValueError(f"cannot resume: the config differs from the checkpoint's in {changed}")


def _wrap(model: nn.Module, config: TrainConfig, ddp: Distributed, device: torch.device) -> nn.Module:
    wrapped = model
    if ddp.enabled:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def _cut_energy(config: TrainConfig, model: nn.Module, dense_params: int, reorder: bool) -> float:
    """The energy of this cut: the config's, or for one-shot methods with `cut_to`, the one
    that reaches that deployed size."""
    if config.cut_to is None:
        return config.energy
    return energy_for_size(model, config.cut_to, dense_params, config.min_rank, reorder)


def _prune(model, optimizer, energy, min_rank, reorder, ddp: Distributed) -> dict:
    # Every process cuts by rank 0's singular values, so shapes stay identical everywhere.
    ddp.broadcast([layer.s.data for _, layer in svd_layers(model)])
    return prune_ranks(model, energy=energy, min_rank=min_rank, optimizer=optimizer, reorder=reorder)


def _evaluate(model, loader, ddp: Distributed, autocast, split: str = "test") -> dict:
    # Batch-norm statistics drift apart across processes between broadcasts: use rank 0's.
    ddp.broadcast([b for b in model.buffers() if b.is_floating_point()])
    return summarise_test(ddp.sum(evaluate_sums(model, loader, autocast)), split)


def _recalibrated_accuracy(model, calibration, loader, ddp: Distributed, autocast, split: str) -> float:
    # On a copy, so that training goes on exactly as without this measurement.
    copy_ = recalibrate_batchnorm(copy.deepcopy(model), calibration, autocast)
    return _evaluate(copy_, loader, ddp, autocast, split)[f"{split}_acc"]


def _sizes(model: nn.Module, input_size) -> dict:
    return {"params": count_params(model), "deployed_params": deployed_params(model),
            "macs": count_macs(model, input_size), "spectrum_gap": spectrum_gap(model),
            "order_violations": order_violations(model),
            "ranks": {name: layer.rank for name, layer in svd_layers(model)}}


def _summary(config, data, history, dense_params, dense_macs, device, ddp, model, code) -> dict:
    last = history[-1]
    one_shot = METHODS[config.method].one_shot
    ranks = last["ranks"]
    summary = {
        "method": config.method, "model": config.model, "dataset": data.label,
        "train_images": len(data.train_y), "test_images": len(data.test_y),
        "seed": config.seed, "epochs": config.epochs, "finetune_epochs": config.finetune_epochs,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "processes": ddp.world_size, "amp": "bf16" if config.amp else "off", "compile": config.compile,
        "processors": sorted({h["processor"] for h in history if "processor" in h}),
        "test_acc": last["test_acc"], "test_loss": last["test_loss"],
        **{k: v for k, v in last.items() if k.startswith("test:")},
        **({"val_acc": last["val_acc"], "val_loss": last["val_loss"], "val_images": len(data.val_y)}
           if config.holdout else {}),
        "dense_params": dense_params, "params": last["params"],
        "deployed_params": last["deployed_params"],
        "deployed_fraction": last["deployed_params"] / dense_params,
        "dense_macs": dense_macs, "macs": last["macs"], "macs_fraction": last["macs"] / dense_macs,
        "total_rank": sum(ranks.values()),
        "full_rank": sum(layer.max_rank for _, layer in svd_layers(model)),
        "ranks": ranks, "time": last["time"],
        "ranks_by_process": ddp.gather(ranks),
        "code": code,
    }
    for row in history:  # the one-shot methods: accuracy and energy at their cut
        for key in ("val_acc_before_cut", "test_acc_before_cut", "cut_energy"):
            if one_shot and key in row:
                summary[key] = row[key]
    return summary


def code_version() -> dict:
    """The library version and, in a git checkout, the commit (with "+changes" when the tree differs)."""
    from .. import __version__

    root = Path(__file__).resolve().parents[2]  # the checkout holding dprp_lib/
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "dprp_lib"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, ""
    return {"version": __version__, "commit": commit, "library_changed": bool(commit and dirty)}


def _progress(config: TrainConfig, ddp: Distributed, total: int, epochs: int):
    if not (config.progress and ddp.main and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{config.method} {config.model}, {epochs} epochs", unit="step",
                dynamic_ncols=True)
