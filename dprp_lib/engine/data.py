"""Data: CIFAR-10/100 (torchvision), the offline CIFAR-10 JPEG mirror, Fashion-MNIST.

Every data set is decoded once into uint8 tensors (N×C×H×W) and cached under `root`
(default `data/`). Training then keeps the whole set on the training device and augments
whole batches there (see `BatchLoader`): no DataLoader, no per-step host copies.

Where the files come from:
- "cifar10", "cifar100": torchvision's official files, downloaded into `root` and
  checksummed by torchvision.
- "cifar10-mirror": a JPEG re-encoding of CIFAR-10 (lossy; results on it are labelled
  "CIFAR-10 (JPEG mirror)"), given as a `.tar.xz` of class folders or the extracted folder,
  through `source=` or the DPRP_CIFAR10_MIRROR environment variable.
- "cifar10-lossless": the official CIFAR-10 pixels, all 50,000 training images and only test
  images 0-999, from the ConvNetJS sprite archive (`cifar10-lossless-sprites.tar`, checked
  against its size and sha256), through `source=` or DPRP_CIFAR10_LOSSLESS. Its training
  images are put in the mirror's order (class by class, official order within a class), so a
  validation split (`holdout`) holds the same images in both; label results "CIFAR-10,
  official test images 0-999".
- "fashion-mnist": the original IDX files, from `source=`, DPRP_FASHION_MNIST_DIR, the
  Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), or
  torchvision's download.

The cache is keyed on the source (its sha256, or "official" for torchvision's files), so
two sources of one data set never share a cache.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from typing import Literal, get_args
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..method.checkpoint import save_checkpoint
from .filelock import exclusive

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
DatasetName = Literal["cifar10", "cifar100", "cifar10-mirror", "cifar10-lossless", "fashion-mnist"]
DATASETS = get_args(DatasetName)
LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
          "cifar10-mirror": "CIFAR-10 (JPEG mirror)",
          "cifar10-lossless": "CIFAR-10, official test images 0-999",
          "fashion-mnist": "Fashion-MNIST"}


@dataclass
class ImageData:
    """A data set as uint8 images (N×C×H×W) and int64 labels, plus what describes it."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple
    val_x: torch.Tensor | None = None  # the validation split held out of the training images
    val_y: torch.Tensor | None = None

    @property
    def label(self) -> str:
        """How results on this data must be labelled (the mirror is not official CIFAR-10)."""
        return LABELS[self.name]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.train_x.shape[1:])

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images, in [0, 1] units."""
        x = self.train_x.to(torch.float64).div_(255).transpose(0, 1).flatten(1)
        return x.mean(1).tolist(), x.std(1).tolist()

    def subset(self, train_per_class: int | None = None, test_per_class: int | None = None) -> "ImageData":
        """The first N images of each class (deterministic), for quick runs."""
        tx, ty = _first_per_class(self.train_x, self.train_y, train_per_class)
        vx, vy = _first_per_class(self.test_x, self.test_y, test_per_class)
        return ImageData(self.name, tx, ty, vx, vy, self.classes, self.val_x, self.val_y)

    def holdout(self, n: int) -> "ImageData":
        """Hold `n` training images out as the validation split: n / classes of each class, drawn
        by a fixed generator, so the split is the same for every seed and every run."""
        if n == 0:
            return self
        per_class, rest = divmod(n, self.num_classes)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or rest:
            raise ValueError(f"holdout must be a multiple of the {self.num_classes} classes "
                             f"(class-balanced), got {n!r}")
        if self.val_x is not None:
            raise ValueError("this data set already has a validation split")
        for c in range(self.num_classes):
            members = int((self.train_y == c).sum())
            if members <= per_class:
                raise ValueError(f"holdout={n} takes {per_class} images of class {c}, "
                                 f"which has only {members} training images")
        val = balanced_sample(self.train_y, per_class, HOLDOUT_SEED)
        return ImageData(self.name, self.train_x[~val], self.train_y[~val], self.test_x, self.test_y,
                         self.classes, self.train_x[val], self.train_y[val])


def balanced_sample(y: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """A mask over `y` picking `per_class` images of each class (all of a smaller class), drawn by
    a generator seeded with `seed`: the same images every time. The mirror's training images are
    sorted by class, so "the first N" would be one class, not a sample."""
    generator = torch.Generator().manual_seed(seed)
    picked = torch.zeros_like(y, dtype=torch.bool)
    for c in range(int(y.max()) + 1 if len(y) else 0):
        members = (y == c).nonzero().flatten()
        picked[members[torch.randperm(len(members), generator=generator)[:per_class]]] = True
    return picked


def _first_per_class(x, y, n):
    if n is None:
        return x, y
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"images per class must be a positive int, got {n!r}")
    keep = torch.zeros_like(y, dtype=torch.bool)
    for c in y.unique():
        keep[(y == c).nonzero().flatten()[:n]] = True
    return x[keep], y[keep]


# The validation split does not depend on a run's seed: every run holds out the same images.
HOLDOUT_SEED = 2024


class DataUnavailable(FileNotFoundError):
    """The data set is not on disk and could not be downloaded."""


def load_dataset(name: str, root=None, source=None, download: bool = True) -> ImageData:
    """Load a data set by name (one of DATASETS), decoding it once into `root`'s cache (None: the repository's data/)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    root = Path(root) if root is not None else paths.DATA
    source = source or (os.environ.get(SOURCE_ENV[name]) if name in SOURCE_ENV else None)
    cache = root / f"{name}-{source_id(name, source)}.uint8.pt"
    if cache.is_file():
        return _load_cache(name, cache)
    # Processes that start together (parallel runs, test workers) decode once: the others wait
    # for the first one's cache instead of decoding the same archive beside it.
    with exclusive(cache):
        if cache.is_file():
            return _load_cache(name, cache)
        data = _READERS[name](root, source, download)
        # Written atomically: an interrupted decode leaves no half-written cache behind.
        save_checkpoint(cache, train_x=data.train_x, train_y=data.train_y, test_x=data.test_x,
                        test_y=data.test_y, classes=list(data.classes))
    return data


def _load_cache(name: str, cache: Path) -> ImageData:
    d = torch.load(cache, weights_only=True)
    return ImageData(name, d["train_x"], d["train_y"], d["test_x"], d["test_y"], tuple(d["classes"]))


def source_id(name: str, source) -> str:
    """What the cache is keyed on: 12 hex digits of the source file's sha256 (of the sorted file
    names and sizes for a folder), or "official" for torchvision's (or the Debian package's) files."""
    if name in ("cifar10", "cifar100") or source is None or not Path(source).exists():
        return "official"
    path = Path(source)
    if path.is_dir():
        listing = sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:12]
    return file_sha256(path)[:12]


def file_sha256(path) -> str:
    """The file's sha256, computed once a process for a given path, size and modification time
    (every load keys its cache on it, and the lossless reader checks it again on decoding)."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- CIFAR-10 JPEG mirror ----------------------------------------------------------------
MIRROR_ENV = "DPRP_CIFAR10_MIRROR"
LOSSLESS_ENV = "DPRP_CIFAR10_LOSSLESS"
SOURCE_ENV = {"cifar10-mirror": MIRROR_ENV, "cifar10-lossless": LOSSLESS_ENV,
              "fashion-mnist": "DPRP_FASHION_MNIST_DIR"}


def default_dataset() -> str:
    """The offline mirror when one is configured, else the official CIFAR-10 (downloaded)."""
    return "cifar10-mirror" if os.environ.get(MIRROR_ENV) else "cifar10"


def _read_mirror(root, source, download) -> ImageData:
    source = source or os.environ.get(MIRROR_ENV)
    if not source:
        raise DataUnavailable(
            "the CIFAR-10 JPEG mirror needs its location: pass source=<.tar.xz or folder> or set "
            "DPRP_CIFAR10_MIRROR (or use dataset='cifar10' to download the official files)")
    source = Path(source)
    if not source.exists():
        raise DataUnavailable(f"CIFAR-10 mirror not found at {source} (from source= or DPRP_CIFAR10_MIRROR)")
    files = _mirror_files(source)
    split = {}
    for part in ("train", "test"):
        items = sorted((k, v) for k, v in files.items() if k[0] == part)
        if not items:
            raise DataUnavailable(f"{source} has no {part}/<class>/*.jpg images")
        xs = np.stack([_decode_jpeg(v) for _, v in items])
        ys = [CIFAR10_CLASSES.index(k[1]) for k, _ in items]
        split[part] = (torch.from_numpy(xs).permute(0, 3, 1, 2).contiguous(), torch.tensor(ys))
    return ImageData("cifar10-mirror", *split["train"], *split["test"], CIFAR10_CLASSES)


def _mirror_files(source: Path) -> dict:
    """{(split, class, filename): bytes or path} for every image of the mirror."""
    def key(parts):
        if len(parts) >= 3 and parts[-3] in ("train", "test") and parts[-2] in CIFAR10_CLASSES \
                and parts[-1].lower().endswith((".jpg", ".jpeg", ".png")):
            return parts[-3], parts[-2], parts[-1]
        return None

    files = {}
    if source.is_dir():
        for p in source.rglob("*"):
            k = key(p.relative_to(source).parts)
            if k:
                files[k] = p
        return files
    with tarfile.open(source, "r|*") as tar:
        for member in tar:
            k = key(Path(member.name).parts) if member.isfile() else None
            if k:
                files[k] = tar.extractfile(member).read()
    return files


# --- CIFAR-10, lossless: the ConvNetJS sprite sheets ----------------------------------------
# The archive as described in its README: 51 PNG sheets (1000 images a sheet, one image a row),
# the labels of all 51,000 images, and SHA256SUMS over the members.
LOSSLESS_SIZE = 118_261_760
LOSSLESS_SHA256 = "3d6c523feebe1ccd99d830ea3bf9295d0f6174081468c6eb204bcdd4d6a97ebe"
LOSSLESS_MEMBER = "cifar10-convnetjs/"
LOSSLESS_TRAIN, LOSSLESS_TEST = 50_000, 1_000


def _read_lossless(root, source, download) -> ImageData:
    """All 50,000 official training images and test images 0-999, bit for bit (PNG sheets).

    Training images come out class by class, in official order within each class (the JPEG
    mirror's order: its file k of class c is the k-th training image of class c), so the same
    holdout picks the same images from both. The test images keep their official order.
    """
    if not source:
        raise DataUnavailable(
            f"the lossless CIFAR-10 archive needs its location: pass source=<cifar10-lossless-sprites.tar> "
            f"or set {LOSSLESS_ENV} (or use dataset='cifar10' to download the official files)")
    path = Path(source)
    if not path.is_file():
        raise DataUnavailable(f"lossless CIFAR-10 archive not found at {path} (from source= or {LOSSLESS_ENV})")
    check_archive(path, LOSSLESS_SIZE, LOSSLESS_SHA256)
    x, y = _read_sprites(path)
    train_x, train_y = x[:LOSSLESS_TRAIN], y[:LOSSLESS_TRAIN]
    order = torch.argsort(train_y, stable=True)  # class by class, official order within a class
    return ImageData("cifar10-lossless", train_x[order], train_y[order], x[LOSSLESS_TRAIN:], y[LOSSLESS_TRAIN:],
                     CIFAR10_CLASSES)


def check_archive(path: Path, size: int, sha256: str) -> None:
    """DataUnavailable naming the file and what was expected when it is not the archive described."""
    found = path.stat().st_size
    if found != size:
        raise DataUnavailable(f"{path} is {found:,} bytes; the lossless CIFAR-10 archive is {size:,} bytes "
                              f"(sha256 {sha256}): the file is truncated or another file")
    digest = file_sha256(path)
    if digest != sha256:
        raise DataUnavailable(f"{path} has sha256 {digest}; the lossless CIFAR-10 archive has {sha256} "
                              f"({size:,} bytes): the file is corrupt or another file")


def _read_sprites(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image (N×3×32×32 uint8) and label of the sprite archive, in the archive's order."""
    from PIL import Image

    with tarfile.open(path) as tar:
        def read(name: str) -> bytes:
            return tar.extractfile(LOSSLESS_MEMBER + name).read()
        sums = dict(line.split()[::-1] for line in read("SHA256SUMS").decode().splitlines() if line.strip())
        sums = {Path(k.lstrip("*")).name: v for k, v in sums.items()}
        sheets = []
        for b in range((LOSSLESS_TRAIN + LOSSLESS_TEST) // 1000):
            name = f"cifar10_batch_{b}.png"
            raw = read(name)
            if hashlib.sha256(raw).hexdigest() != sums.get(name):
                raise DataUnavailable(f"{path}: member {name} does not match its line in SHA256SUMS")
            with Image.open(io.BytesIO(raw)) as im:
                if im.mode != "RGB" or im.size != (1024, 1000):
                    raise DataUnavailable(f"{path}: {name} is {im.mode} {im.size}, expected RGB (1024, 1000)")
                sheets.append(np.asarray(im, dtype=np.uint8).reshape(1000, 32, 32, 3))
        labels = json.loads(read("cifar10_labels.json"))["labels"]
    if len(labels) != LOSSLESS_TRAIN + LOSSLESS_TEST:
        raise DataUnavailable(f"{path}: cifar10_labels.json holds {len(labels)} labels, expected 51,000")
    x = torch.from_numpy(np.concatenate(sheets)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels, dtype=torch.int64)


def _decode_jpeg(src) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


# --- the same test images in other encodings -------------------------------------------------
CIFAR10_FAMILY = ("cifar10", "cifar10-mirror", "cifar10-lossless")
OTHER_TESTS = {
    "lossless 0-999": "CIFAR-10, official test images 0-999 (lossless)",
    "jpeg 0-999": "CIFAR-10 (JPEG mirror), test images 0-999",
    "jpeg 10000": "CIFAR-10 (JPEG mirror), all 10,000 test images",
}


def other_test_sets(name: str, root=None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{key of OTHER_TESTS: (images, labels)}: CIFAR-10's test images in the encodings configured
    on this machine (DPRP_CIFAR10_LOSSLESS, DPRP_CIFAR10_MIRROR), for runs on any CIFAR-10 source.

    "jpeg 0-999" is the mirror's copy of official test images 0-999, found through the lossless
    labels (the mirror's file k of class c is the k-th test image of class c), so a model can be
    read on the same 1,000 images in both encodings. Empty for other data sets.
    """
    if name not in CIFAR10_FAMILY:
        return {}
    sets = {}
    lossless = mirror = None
    if os.environ.get(LOSSLESS_ENV):
        lossless = load_dataset("cifar10-lossless", root)
        sets["lossless 0-999"] = (lossless.test_x, lossless.test_y)
    if os.environ.get(MIRROR_ENV):
        mirror = load_dataset("cifar10-mirror", root)
        sets["jpeg 10000"] = (mirror.test_x, mirror.test_y)
    if lossless is not None and mirror is not None:
        sets["jpeg 0-999"] = (mirror.test_x[mirror_positions(lossless.test_y, mirror.test_y)], lossless.test_y)
    return sets


def mirror_positions(official_y: torch.Tensor, mirror_y: torch.Tensor) -> torch.Tensor:
    """Where the mirror (sorted class by class, official order within a class) holds each of the
    official images whose labels are `official_y`, in that order."""
    starts = torch.searchsorted(mirror_y, torch.arange(int(mirror_y.max()) + 1))
    seen = torch.zeros_like(starts)
    positions = []
    for c in official_y.tolist():
        positions.append(int(starts[c] + seen[c]))
        seen[c] += 1
    positions = torch.tensor(positions, dtype=torch.int64)
    if not torch.equal(mirror_y[positions], official_y):
        raise ValueError("the mirror's test images are not sorted by class as expected")
    return positions


# --- CIFAR-10/100 through torchvision ------------------------------------------------------
def _read_torchvision_cifar(name):
    def read(root, source, download):
        from torchvision import datasets

        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        try:
            train = cls(source or root, train=True, download=download)
            test = cls(source or root, train=False, download=download)
        except Exception as e:  # torchvision raises RuntimeError or URLError when offline
            raise DataUnavailable(
                f"{LABELS[name]} is not in {source or root} and could not be downloaded ({e}). "
                f"Download it on a connected machine into {root}/, or for CIFAR-10 use "
                "dataset='cifar10-mirror' with DPRP_CIFAR10_MIRROR pointing at the JPEG mirror") from e

        def tensors(ds):
            return (torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                    torch.tensor(ds.targets, dtype=torch.int64))
        return ImageData(name, *tensors(train), *tensors(test), tuple(train.classes))
    return read


# --- Fashion-MNIST -------------------------------------------------------------------------
_FASHION_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
                  "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_idx(folder: Path, stem: str):
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_fashion(root, source, download) -> ImageData:
    candidates = [source, os.environ.get("DPRP_FASHION_MNIST_DIR"), DEBIAN_FASHION_DIR,
                  Path(root) / "FashionMNIST" / "raw"]
    for folder in (Path(c) for c in candidates if c):
        paths = {k: _find_idx(folder, stem) for k, stem in _FASHION_FILES.items()}
        if all(paths.values()):
            a = {k: torch.from_numpy(_read_idx(p).copy()) for k, p in paths.items()}
            return ImageData("fashion-mnist", a["train_x"].unsqueeze(1), a["train_y"].long(),
                             a["test_x"].unsqueeze(1), a["test_y"].long(), FASHION_CLASSES)
    if download:
        from torchvision import datasets

        try:
            datasets.FashionMNIST(root, train=True, download=True)
            datasets.FashionMNIST(root, train=False, download=True)
            return _read_fashion(root, None, False)
        except Exception as e:
            raise DataUnavailable(_fashion_help(root) + f" (download failed: {e})") from e
    raise DataUnavailable(_fashion_help(root))


def _fashion_help(root) -> str:
    return ("Fashion-MNIST not found: install the Debian package dataset-fashion-mnist "
            f"(files in {DEBIAN_FASHION_DIR}), set DPRP_FASHION_MNIST_DIR to a folder with the "
            f"four IDX files, or let torchvision download it into {root}/")


_READERS = {"cifar10": _read_torchvision_cifar("cifar10"), "cifar100": _read_torchvision_cifar("cifar100"),
            "cifar10-mirror": _read_mirror, "cifar10-lossless": _read_lossless, "fashion-mnist": _read_fashion}


# --- batches on the device -----------------------------------------------------------------
def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Per-image random crop (zero padding `pad`) and horizontal flip of a uint8 batch, on its device."""
    b, _, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    rows = dy + torch.arange(h, device=dev)
    cols = dx + torch.arange(w, device=dev)
    if flip:
        mirrored = torch.rand(b, 1, generator=generator, device=dev) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    batch = torch.arange(b, device=dev)[:, None, None]
    # Advanced indexing around the channel slice puts channels last: (b, h, w, c).
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class BatchLoader:
    """Batches of a uint8 image set held whole on `device`.

    Each epoch is shuffled by a generator seeded from (seed, epoch), so epoch k's order is
    the same whether a run went straight through or resumed (`set_epoch`, as with torch's
    DistributedSampler). With `world_size` > 1 each rank takes its share of one permutation.
    Training batches are augmented on the device (crop + flip), then normalised.
    """

    def __init__(self, x, y, batch_size: int, mean, std, *, train: bool, device="cpu",
                 augment: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 dtype=torch.float32, channels_last: bool = False):
        if x.dtype != torch.uint8:
            raise TypeError(f"x must be a uint8 image tensor, got {x.dtype}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.batch_size, self.train, self.augment = batch_size, train, augment and train
        self.seed, self.rank, self.world_size, self.dtype = seed, rank, world_size, dtype
        self.channels_last = channels_last
        shape = (1, -1, 1, 1)
        self.mean = torch.as_tensor(mean, dtype=dtype, device=self.device).view(shape) * 255
        self.std = torch.as_tensor(std, dtype=dtype, device=self.device).view(shape) * 255
        self.epoch = 0
        self.generator = torch.Generator(device=self.device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.y)
        if not self.train:
            idx = torch.arange(n, device=self.device)
        else:
            self.generator.manual_seed(self.seed * 1_000_003 + self.epoch)
            idx = torch.randperm(n, generator=self.generator, device=self.device)
            # Training drops the ragged tail so every rank gets the same number of full batches.
            per_step = self.batch_size * self.world_size
            idx = idx[: n // per_step * per_step]
        return idx[self.rank::self.world_size]

    def __len__(self) -> int:
        n = len(self.y)
        if self.train:
            return n // (self.batch_size * self.world_size)
        return -(-len(range(self.rank, n, self.world_size)) // self.batch_size)

    def __iter__(self):
        idx = self._indices()
        for i in range(0, len(idx), self.batch_size):
            j = idx[i: i + self.batch_size]
            x = self.x[j]
            if self.augment:
                x = augment(x, self.generator)
            x = (x.to(self.dtype) - self.mean) / self.std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.y[j]
