"""TrainConfig: every knob of a run, as plain values, checked before any training starts.

Configs are JSON files (see configs/) whose keys are TrainConfig's fields; the command line
overrides any of them with `--set key=value`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal, Union, get_args, get_origin, get_type_hints

from ..method.forms import Form
from ..method.lowrank import check_energy
from ..method.regularizers import SparseKind
from .data import DatasetName
from .methods import METHODS, MethodName
from .models import ModelName
from .precision import Amp
# Fields that say where or how a run is executed, not what it computes: they stay out of a
# run's key, and may change when an interrupted run resumes.
HOW_TO_RUN = frozenset({"out_dir", "resume", "progress", "device", "data_dir", "data_source", "compile",
                        "channels_last", "forms"})
# Fields added after runs were committed: they enter a run's key only when they differ from
# these values, so every earlier run keeps its key.
ADDED_LATER = {"holdout": 0, "width": 1.0, "label_smoothing": 0.0, "cut_to": None}
Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["cosine", "step", "constant"]
WeightDecayOn = Literal["all", "except_uv", "except_factors"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass
class TrainConfig:
    # what to train, on what
    method: MethodName = "dprp"
    model: ModelName = "resnet20"
    width: float = 1.0                # channels per stage × width (a thin network below 1)
    dataset: DatasetName = "cifar10"
    data_dir: str = "data"
    data_source: str | None = None    # the mirror's .tar.xz or folder (else DPRP_CIFAR10_MIRROR)
    train_per_class: int | None = None  # first N images a class (quick runs); None = all
    holdout: int = 0                  # training images held out as the validation split (class-balanced)
    test_per_class: int | None = None
    skip: list = field(default_factory=list)  # layers left dense, by module name
    # the recipe (He et al. 2016 for CIFAR ResNets)
    epochs: int = 164
    batch_size: int = 128
    optimizer: Optimizer = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    # Weight decay on U and V would pull them off orthonormal and fight the orthogonality
    # penalty; with U, V orthonormal, decay on s alone equals decay on the dense weight.
    weight_decay_on: WeightDecayOn = "except_uv"
    schedule: Schedule = "step"
    milestones: list = field(default_factory=lambda: [0.5, 0.75])  # fractions of the run (step)
    gamma: float = 0.1
    warmup_epochs: int = 0            # linear lr warm-up
    augment: bool = True              # random crop (pad 4) + horizontal flip
    label_smoothing: float = 0.0      # of the training loss (evaluation losses are plain)
    # the penalties (our reading of the paper; its λ values are not public)
    orth: float = 1.0
    sort: float = 1.0
    sparse: float = 1e-4
    sparse_kind: SparseKind = "l1"
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
    device: Device = "auto"
    amp: Amp = False                  # bf16 autocast; "auto": where it is native (CPU with
                                      # avx512_bf16/AMX, or CUDA), decided when the run starts
    channels_last: bool = True        # NHWC model and batches (faster on both; same result)
    compile: bool = False             # torch.compile the model
    forms: Form = "count"             # each factored layer's execution form: "count" (fewer
                                      # multiply-accumulates; repeats bit for bit) or "measured"
                                      # (timed at every cut; faster, not bit-reproducible)
    out_dir: str = "runs/run"
    resume: bool = False
    progress: bool = True             # tqdm bar when the output is a terminal

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first bad field."""
        for name, annotation in _annotations().items():
            _check_field(name, getattr(self, name), annotation)
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
            if not METHODS[self.method].one_shot:
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


def _at_least(name, value, low):
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


@cache
def _annotations() -> dict:
    return get_type_hints(TrainConfig)


def _allows(annotation, value) -> bool:
    """Whether `value` fits the field's annotation (JSON's types: True is not a number here)."""
    origin = get_origin(annotation)
    if origin is Literal:
        return any(value is c or (type(value) is type(c) and value == c) for c in get_args(annotation))
    if origin in (Union, types.UnionType):
        return any(_allows(a, value) for a in get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation in (int, float) and isinstance(value, bool):
        return False
    if annotation is float:
        return isinstance(value, (int, float))
    return isinstance(value, origin or annotation)


def _choices(annotation) -> list:
    """The named values a field accepts (its Literal parts)."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType):
        return [c for a in get_args(annotation) for c in _choices(a)]
    return []


def _check_field(name, value, annotation) -> None:
    if _allows(annotation, value):
        return
    choices = _choices(annotation)
    if choices and isinstance(value, str):  # a name that is not one of the choices
        others = " or a boolean" if _allows(annotation, True) else ""
        raise ValueError(f"{name} must be one of {choices}{others}, got {value!r}")
    raise TypeError(f"{name} must be {_pretty(annotation)}, got {value!r} ({type(value).__name__})")


def _pretty(annotation) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(c) for c in get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType):
        return " or ".join(_pretty(a) for a in get_args(annotation))
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))
