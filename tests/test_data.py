import gzip
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from dprp_lib import data as D
from conftest import require_mirror


def _jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture
def fake_mirror(tmp_path):
    """A tiny archive in the mirror's layout: 3 training and 1 test image per class."""
    path = tmp_path / "mini.tar.xz"
    with tarfile.open(path, "w:xz") as tar:
        for split, count in (("train", 3), ("test", 1)):
            for c, name in enumerate(D.CIFAR10_CLASSES):
                for i in range(count):
                    raw = _jpeg((c * 25, i * 80, 200))
                    info = tarfile.TarInfo(f"{split}/{name}/{i:04d}.jpg")
                    info.size = len(raw)
                    tar.addfile(info, io.BytesIO(raw))
    return path


def test_mirror_archive_is_decoded_and_cached(fake_mirror, tmp_path):
    d = D.load_dataset("cifar10-mirror", root=tmp_path / "cache", source=fake_mirror)
    assert d.train_x.shape == (30, 3, 32, 32) and d.train_x.dtype == torch.uint8
    assert d.test_x.shape == (10, 3, 32, 32)
    assert d.train_y.tolist() == [c for c in range(10) for _ in range(3)]  # official class order
    assert d.label == "CIFAR-10 (JPEG mirror)"
    red = d.train_x[d.train_y == 4][:, 0].float().mean().item()
    assert abs(red - 100) < 4  # the colour written is the colour read (JPEG is lossy)
    assert (tmp_path / "cache" / "cifar10-mirror.uint8.pt").is_file()
    again = D.load_dataset("cifar10-mirror", root=tmp_path / "cache")  # from the cache, no source needed
    assert torch.equal(again.train_x, d.train_x)


def test_mirror_from_extracted_folder(fake_mirror, tmp_path):
    with tarfile.open(fake_mirror) as tar:
        tar.extractall(tmp_path / "folder")
    d = D.load_dataset("cifar10-mirror", root=tmp_path / "cache", source=tmp_path / "folder")
    assert len(d.train_y) == 30 and len(d.test_y) == 10


def test_missing_data_is_a_clear_error_and_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("DPRP_CIFAR10_MIRROR", raising=False)
    with pytest.raises(D.DataUnavailable, match="DPRP_CIFAR10_MIRROR"):
        D.load_dataset("cifar10-mirror", root=tmp_path)
    with pytest.raises(D.DataUnavailable, match="not found"):
        D.load_dataset("cifar10-mirror", root=tmp_path, source=tmp_path / "nope.tar.xz")
    with pytest.raises(D.DataUnavailable, match="download"):
        D.load_dataset("cifar10", root=tmp_path, download=False)
    assert list(tmp_path.glob("*.pt")) == []
    with pytest.raises(ValueError, match="dataset"):
        D.load_dataset("imagenet", root=tmp_path)


def test_fashion_mnist_idx_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    folder = tmp_path / "fm"
    folder.mkdir()
    for stem, shape in (("train-images-idx3-ubyte", (20, 28, 28)), ("train-labels-idx1-ubyte", (20,)),
                        ("t10k-images-idx3-ubyte", (10, 28, 28)), ("t10k-labels-idx1-ubyte", (10,))):
        arr = rng.integers(0, 10 if len(shape) == 1 else 256, shape, dtype=np.uint8)
        header = bytes([0, 0, 8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
        with gzip.open(folder / f"{stem}.gz", "wb") as f:
            f.write(header + arr.tobytes())
        if stem.startswith("t10k-images"):
            test_images = arr
    monkeypatch.setenv("DPRP_FASHION_MNIST_DIR", str(folder))
    d = D.load_dataset("fashion-mnist", root=tmp_path / "cache")
    assert d.train_x.shape == (20, 1, 28, 28) and d.test_y.shape == (10,)
    assert np.array_equal(d.test_x[:, 0].numpy(), test_images)


def test_subset_takes_the_first_images_of_each_class():
    y = torch.tensor([0, 1, 0, 1, 0, 2, 2])
    x = torch.arange(7, dtype=torch.uint8).view(7, 1, 1, 1)
    d = D.ImageData("cifar10", x, y, x, y, D.CIFAR10_CLASSES).subset(2, 1)
    assert d.train_x.flatten().tolist() == [0, 1, 2, 3, 5, 6]
    assert d.test_x.flatten().tolist() == [0, 1, 5]
    with pytest.raises(ValueError):
        d.subset(0)


def _loader(train, **kw):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(50)
    return D.BatchLoader(x, y, 16, [0.5] * 3, [0.25] * 3, train=train, **kw), x


def test_batches_are_reproducible_per_epoch_and_shuffled():
    loader, _ = _loader(True, seed=3)
    order = [torch.cat([y for _, y in loader]) for _ in range(2)]
    assert torch.equal(order[0], order[1]) and len(order[0]) == 48 == 3 * 16 and len(loader) == 3
    loader.set_epoch(1)
    assert not torch.equal(torch.cat([y for _, y in loader]), order[0])
    other, _ = _loader(True, seed=3)
    other.set_epoch(1)
    assert [b.tolist() for _, b in other] == [b.tolist() for _, b in loader]


def test_training_batches_are_crops_and_flips_of_the_padded_images():
    loader, x = _loader(True, seed=1)
    xb, yb = next(iter(loader))
    images = (xb * 0.25 + 0.5) * 255  # undo normalisation
    padded = torch.nn.functional.pad(x.float(), (4, 4, 4, 4))
    flips = 0
    for img, label in zip(images, yb):
        src = padded[label]
        windows = [src[:, i:i + 8, j:j + 8] for i in range(9) for j in range(9)]
        match = [w for w in windows if torch.allclose(img, w, atol=1e-3)]
        flipped = [w for w in windows if torch.allclose(img, w.flip(-1), atol=1e-3)]
        assert match or flipped
        flips += bool(flipped) and not match
    assert 0 < flips < len(yb)


def test_eval_batches_are_unaugmented_in_order_and_sharded_across_ranks():
    loader, x = _loader(False)
    xs, ys = zip(*loader)
    assert torch.equal(torch.cat(ys), torch.arange(50))
    torch.testing.assert_close(torch.cat(xs) * 0.25 * 255 + 0.5 * 255, x.float())
    shards = [torch.cat([y for _, y in _loader(True, seed=0, rank=r, world_size=2)[0]]) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 16  # 50 // (16 * 2) steps of 16 each
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_real_mirror_is_cifar10():
    source = require_mirror()
    d = D.load_dataset("cifar10-mirror", root="data", source=source)
    assert d.train_x.shape == (50000, 3, 32, 32) and d.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(d.train_y).tolist() == [5000] * 10
    assert torch.bincount(d.test_y).tolist() == [1000] * 10
    mean, _ = d.channel_stats()
    assert mean == pytest.approx([0.4913, 0.4821, 0.4465], abs=2e-3)  # as ../shared/data/README.md states


def test_holdout_is_class_balanced_fixed_and_disjoint():
    y = torch.arange(10).repeat(20)  # 20 images of each of 10 classes
    x = torch.arange(200, dtype=torch.uint8).view(200, 1, 1, 1)
    d = D.ImageData("cifar10", x, y, x[:10], y[:10], D.CIFAR10_CLASSES)
    a, b = d.holdout(50), d.holdout(50)
    assert torch.equal(a.val_x, b.val_x)  # the same images every time (no seed involved)
    assert a.val_y.bincount().tolist() == [5] * 10 and a.train_y.bincount().tolist() == [15] * 10
    assert set(a.val_x.flatten().tolist()).isdisjoint(a.train_x.flatten().tolist())
    assert len(a.train_y) + len(a.val_y) == 200 and d.holdout(0) is d
    assert torch.equal(a.subset(3).val_x, a.val_x)  # subsetting keeps the split
    with pytest.raises(ValueError, match="multiple of the 10 classes"):
        d.holdout(55)
    with pytest.raises(ValueError, match="only 20"):
        d.holdout(200)


def test_balanced_sample_takes_each_class_equally_from_class_sorted_labels():
    y = torch.arange(4).repeat_interleave(10)  # sorted by class, as the mirror's training images are
    a, b = D.balanced_sample(y, 3, seed=1), D.balanced_sample(y, 3, seed=1)
    assert torch.equal(a, b) and y[a].bincount().tolist() == [3] * 4
    assert not torch.equal(a, D.balanced_sample(y, 3, seed=2))
    assert y[D.balanced_sample(y, 50, seed=1)].bincount().tolist() == [10] * 4  # a small class: all of it


def test_channels_last_batches_hold_the_same_values():
    loader, _ = _loader(False)
    nhwc, _ = _loader(False, channels_last=True)
    for (a, _), (b, _) in zip(loader, nhwc):
        assert torch.equal(a, b) and b.is_contiguous(memory_format=torch.channels_last)
