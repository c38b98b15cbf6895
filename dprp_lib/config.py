"""TrainConfig: every knob of a run, as plain values, checked before any training starts.

Configs are JSON files (see configs/) whose keys are TrainConfig's fields; the command line
overrides any of them with `--set key=value`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .data import DATASETS
from .forms import FORMS
from .lowrank import check_energy
from .methods import METHODS as METHOD_TABLE
from .models import MODELS
from .precision import check_amp
from .regularizers import SPARSE_KINDS

METHODS = tuple(METHOD_TABLE)
# Fields that say where or how a run is executed, not what it computes: they stay out of a
# run's key, and may change when an interrupted run resumes.
HOW_TO_RUN = frozenset({"out_dir", "resume", "progress", "device", "data_dir", "data_source", "compile",
                        "channels_last", "forms"})
# Fields added after runs were committed: they enter a run's key only when they differ from
# these values, so every earlier run keeps its key.
ADDED_LATER = {"holdout": 0, "width": 1.0, "label_smoothing": 0.0, "cut_to": None}
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
WD_TARGETS = ("all", "except_uv", "except_factors")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    # what to train, on what
    method: str = "dprp"              # dense | dprp | svd-training | posthoc
    model: str = "resnet20"
    width: float = 1.0                # channels per stage × width (a thin network below 1)
    dataset: str = "cifar10"          # cifar10 | cifar100 | cifar10-mirror | fashion-mnist
    data_dir: str = "data"
    data_source: str | None = None    # the mirror's .tar.xz or folder (else DPRP_CIFAR10_MIRROR)
    train_per_class: int | None = None  # first N images a class (quick runs); None = all
    holdout: int = 0                  # training images held out as the validation split (class-balanced)
    test_per_class: int | None = None
    skip: list = field(default_factory=list)  # layers left dense, by module name
    # the recipe (He et al. 2016 for CIFAR ResNets)
    epochs: int = 164
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    # Weight decay on U and V would pull them off orthonormal and fight the orthogonality
    # penalty; with U, V orthonormal, decay on s alone equals decay on the dense weight.
    weight_decay_on: str = "except_uv"  # all | except_uv | except_factors
    schedule: str = "step"            # cosine | step | constant
    milestones: list = field(default_factory=lambda: [0.5, 0.75])  # fractions of the run (step)
    gamma: float = 0.1
    warmup_epochs: int = 0            # linear lr warm-up
    augment: bool = True              # random crop (pad 4) + horizontal flip
    label_smoothing: float = 0.0      # of the training loss (evaluation losses are plain)
    # the penalties (our reading of the paper; its λ values are not public)
    orth: float = 1.0
    sort: float = 1.0
    sparse: float = 1e-4
    sparse_kind: str = "l1"
    # rank pruning
    energy: float = 1e-3              # fraction of Σ s² a cut may drop
    min_rank: int = 1
    prune_warmup: int = 10            # first pruning after this epoch
    prune_every: int = 5
    prune_stop: int | None = None     # no pruning after this epoch (None: until the end)
    reorder: bool = False             # sort directions by |s| before cutting (not the paper's)
    finetune_epochs: int = 0          # svd-training, posthoc: epochs after their single cut
    cut_to: float | None = None       # svd-training, posthoc: choose their cut's energy so the
                                      # deployed model holds this fraction of dense parameters
    # how to run it
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda
    amp: bool | str = False           # bf16 autocast; "auto": where it is native (CPU with
                                      # avx512_bf16/AMX, or CUDA), decided when the run starts
    channels_last: bool = True        # NHWC model and batches (faster on both; same result)
    compile: bool = False             # torch.compile the model
    forms: str = "count"              # each factored layer's execution form: "count" (fewer
                                      # multiply-accumulates; repeats bit for bit) or "measured"
                                      # (timed at every cut; faster, not bit-reproducible)
    out_dir: str = "runs/run"
    resume: bool = False
    progress: bool = True             # tqdm bar when the output is a terminal

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first bad field."""
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        _choice("method", self.method, METHODS)
        _choice("model", self.model, tuple(MODELS))
        _choice("dataset", self.dataset, DATASETS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("weight_decay_on", self.weight_decay_on, WD_TARGETS)
        _choice("sparse_kind", self.sparse_kind, SPARSE_KINDS)
        _choice("device", self.device, DEVICES)
        _choice("forms", self.forms, FORMS)
        check_amp(self.amp)
        for name in ("epochs", "warmup_epochs", "prune_warmup", "finetune_epochs", "seed", "holdout"):
            _at_least(name, getattr(self, name), 0)
        for name in ("batch_size", "prune_every", "min_rank"):
            _at_least(name, getattr(self, name), 1)
        for name in ("train_per_class", "test_per_class", "prune_stop"):
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 1)
        for name in ("lr", "momentum", "weight_decay", "gamma", "orth", "sort", "sparse"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.lr == 0:
            raise ValueError("lr must be > 0")
        if not (math.isfinite(self.width) and self.width > 0):
            raise ValueError(f"width must be a number > 0, got {self.width}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.cut_to is not None:
            if not 0 < self.cut_to <= 1:
                raise ValueError(f"cut_to must be a fraction of the dense parameters in (0, 1], got {self.cut_to}")
            if not METHOD_TABLE[self.method].one_shot:
                raise ValueError(f"cut_to sets the single cut of svd-training or posthoc; method is {self.method!r} "
                                 "(DPRP's size follows from energy, sparse and the schedule)")
        check_energy(self.energy)
        if self.epochs == 0:
            raise ValueError("epochs must be >= 1 (svd-training cuts once at the end of its main epochs)")
        if not all(isinstance(m, (int, float)) and 0 < m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be fractions of the run in (0, 1), got {self.milestones}")
        if not all(isinstance(s, str) for s in self.skip):
            raise TypeError(f"skip must be a list of module names, got {self.skip}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def result_fields(self) -> dict:
        """The fields that change what the run computes (its identity: see HOW_TO_RUN, ADDED_LATER)."""
        return {k: v for k, v in self.to_dict().items()
                if k not in HOW_TO_RUN and not (k in ADDED_LATER and v == ADDED_LATER[k])}

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    @classmethod
    def load(cls, path, overrides=()) -> "TrainConfig":
        """A config from a JSON file, with `key=value` overrides (values parsed as JSON when they can be)."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {path} is not valid JSON: {e}") from e
        values.pop("_comment", None)
        values.update(parse_overrides(overrides))
        return cls.from_dict(values)


def parse_overrides(items) -> dict:
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"an override must look like key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw  # a bare string such as model=resnet32
    return out


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _at_least(name, value, low):
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list}


def _check_type(name, value, annotation) -> None:
    options = [a.strip() for a in str(annotation).split("|")]
    if value is None and "None" in options:
        return
    for opt in options:
        t = _TYPES.get(opt)
        if t is None:
            continue
        if t is not bool and isinstance(value, bool):
            continue  # True is not a number here
        if isinstance(value, t):
            return
    raise TypeError(f"{name} must be {annotation}, got {value!r} ({type(value).__name__})")
