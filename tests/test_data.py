import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from dprp_lib.engine import data as D
from conftest import require_lossless, require_mirror, write_fashion_mnist


def _jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture
def fake_mirror(tmp_path):
    return make_fake_mirror(tmp_path / "mini.tar.xz")


def make_fake_mirror(path, red=None):
    """A tiny archive in the mirror's layout: 3 training and 1 test image per class, red c·25 (or `red`)."""
    with tarfile.open(path, "w:xz" if path.suffix == ".xz" else "w") as tar:
        for split, count in (("train", 3), ("test", 1)):
            for c, name in enumerate(D.CIFAR10_CLASSES):
                for i in range(count):
                    raw = _jpeg((c * 25 if red is None else red, i * 80, 200))
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
    (cache,) = (tmp_path / "cache").glob("cifar10-mirror-*.uint8.pt")
    assert cache.name == f"cifar10-mirror-{D.file_sha256(fake_mirror)[:12]}.uint8.pt"  # keyed on the source


def test_the_cache_is_keyed_on_the_source(fake_mirror, tmp_path, monkeypatch):
    first = D.load_dataset("cifar10-mirror", root=tmp_path / "cache", source=fake_mirror)
    other = make_fake_mirror(tmp_path / "other.tar", red=200)  # another source, same data set name
    second = D.load_dataset("cifar10-mirror", root=tmp_path / "cache", source=other)
    assert second.train_x[second.train_y == 4][:, 0].float().mean().item() > 190  # not the first one's cache
    monkeypatch.setattr(D, "_READERS", {})  # a source already decoded is read from its cache
    again = D.load_dataset("cifar10-mirror", root=tmp_path / "cache", source=fake_mirror)
    assert torch.equal(again.train_x, first.train_x)
    monkeypatch.setenv("DPRP_CIFAR10_MIRROR", str(other))  # the environment variable names the source too
    assert torch.equal(D.load_dataset("cifar10-mirror", root=tmp_path / "cache").train_x, second.train_x)


def test_processes_that_start_together_decode_once(fake_mirror, tmp_path, monkeypatch):
    """Loaders that find no cache at the same time (parallel runs, test workers): one decodes,
    the others wait for its cache, and all get the same images."""
    import threading
    import time

    real, calls = D._READERS["cifar10-mirror"], []

    def slow_reader(*args):
        calls.append(threading.get_ident())
        time.sleep(0.5)  # the others arrive while this one decodes
        return real(*args)

    monkeypatch.setitem(D._READERS, "cifar10-mirror", slow_reader)
    got = [None] * 3

    def load(i):
        got[i] = D.load_dataset("cifar10-mirror", root=tmp_path / "cache", source=fake_mirror)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(torch.equal(d.train_x, got[0].train_x) and torch.equal(d.test_y, got[0].test_y) for d in got)


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
    test_images = write_fashion_mnist(tmp_path / "fm", train=20, test=10)
    monkeypatch.setenv("DPRP_FASHION_MNIST_DIR", str(tmp_path / "fm"))
    d = D.load_dataset("fashion-mnist", root=tmp_path / "cache")
    assert d.train_x.shape == (20, 1, 28, 28) and d.test_y.shape == (10,)
    assert np.array_equal(d.test_x[:, 0].numpy(), test_images)
    assert d.train_y.tolist() == [i % 10 for i in range(20)]


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


# --- the lossless archive: the facts its README states (../shared/data/README.md) ---------------
OFFICIAL_BATCH_COUNTS = [  # images of each class in data_batch_1 ... data_batch_5
    [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981],
    [984, 1007, 1010, 995, 1010, 988, 1008, 1026, 987, 985],
    [994, 1042, 965, 997, 990, 1029, 978, 1015, 961, 1029],
    [1003, 963, 1041, 976, 1004, 1021, 1004, 981, 1024, 983],
    [1014, 1014, 952, 1016, 997, 1025, 980, 977, 1003, 1022],
]
OFFICIAL_BATCH_SHA256 = [
    "a50e8b48728e1667d682a807155c375279d5ae321fb12242c02e3104a6bc8b21",
    "0b825e5592c3b72ea18d6ec2ff5f5b19d33e41a75f5039054a9bb87be3cf69a0",
    "c6ee1dd4601a69ec085d8ebf53ee6441775491a6839a0a9ae8fa198e88a3a429",
    "1f6b6c799cff375a9f8fae2fac909d51ee09f38a6a60eebb9e8fec6f47ddc48f",
    "58e3bbf713e28357476a351d3a05d056372f94c681d04ca9d62a076fdf2a643b",
]


@pytest.fixture(scope="module")
def lossless():
    return D.load_dataset("cifar10-lossless", root="data", source=require_lossless())


def test_lossless_archive_holds_the_official_pixels(lossless):
    import hashlib

    d = lossless
    assert d.train_x.shape == (50000, 3, 32, 32) and d.test_x.shape == (1000, 3, 32, 32)
    assert torch.bincount(d.train_y).tolist() == [5000] * 10
    assert d.label == "CIFAR-10, official test images 0-999"
    mean, std = d.channel_stats()
    assert mean == pytest.approx([0.4914, 0.4822, 0.4465], abs=6e-5)
    assert std == pytest.approx([0.2470, 0.2435, 0.2616], abs=6e-5)  # the mirror's are lower
    assert d.test_y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # official test_batch order
    # In official order (the archive's own), the five training batches are the official ones.
    x, y = D._read_sprites(__import__("pathlib").Path(require_lossless()))
    assert y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    for k in range(5):
        part = slice(k * 10000, (k + 1) * 10000)
        assert torch.bincount(y[part], minlength=10).tolist() == OFFICIAL_BATCH_COUNTS[k]
        rows = x[part].reshape(10000, 3072).numpy()  # channel-first rows, as data_batch_k[b'data']
        assert hashlib.sha256(rows.tobytes()).hexdigest() == OFFICIAL_BATCH_SHA256[k], f"data_batch_{k + 1}"
    # The loader's order is the mirror's: class by class, official order within a class.
    order = torch.argsort(y[:50000], stable=True)
    assert torch.equal(d.train_x, x[:50000][order]) and torch.equal(d.test_x, x[50000:])


def test_lossless_and_mirror_hold_out_the_same_validation_images(lossless):
    mirror = D.load_dataset("cifar10-mirror", root="data", source=require_mirror())
    a, b = lossless.holdout(5000), mirror.holdout(5000)
    assert torch.equal(a.val_y, b.val_y) and torch.equal(a.train_y, b.train_y)
    same = (a.val_x.float() - b.val_x.float()).abs().mean().item()
    shifted = (a.val_x.float() - b.val_x.roll(1, 0).float()).abs().mean().item()
    assert same < 8 < 50 < shifted  # JPEG error (about 6 levels) against unrelated images (about 70)


def test_other_encodings_of_the_test_images(lossless, monkeypatch):
    monkeypatch.setenv("DPRP_CIFAR10_LOSSLESS", require_lossless())
    monkeypatch.setenv("DPRP_CIFAR10_MIRROR", require_mirror())
    sets = D.other_test_sets("cifar10-lossless", "data")
    assert set(sets) == set(D.OTHER_TESTS)
    assert len(sets["jpeg 10000"][1]) == 10000 and len(sets["lossless 0-999"][1]) == 1000
    (x, y), (jx, jy) = sets["lossless 0-999"], sets["jpeg 0-999"]
    assert torch.equal(y, jy) and (x.float() - jx.float()).abs().mean() < 8  # the same images, re-encoded
    assert D.other_test_sets("fashion-mnist", "data") == {}
    monkeypatch.delenv("DPRP_CIFAR10_MIRROR")
    assert set(D.other_test_sets("cifar10-mirror", "data")) == {"lossless 0-999"}


def test_mirror_positions_follow_class_then_official_order():
    mirror_y = torch.tensor([0, 0, 0, 1, 1, 2])
    assert D.mirror_positions(torch.tensor([1, 0, 0, 2, 1]), mirror_y).tolist() == [3, 0, 1, 5, 4]
    with pytest.raises(ValueError, match="sorted by class"):
        D.mirror_positions(torch.tensor([0]), torch.tensor([1, 0]))


def test_a_wrong_or_missing_lossless_archive_is_named_and_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("DPRP_CIFAR10_LOSSLESS", raising=False)
    with pytest.raises(D.DataUnavailable, match="DPRP_CIFAR10_LOSSLESS"):
        D.load_dataset("cifar10-lossless", root=tmp_path)
    with pytest.raises(D.DataUnavailable, match="not found at .*nope.tar"):
        D.load_dataset("cifar10-lossless", root=tmp_path, source=tmp_path / "nope.tar")
    short = tmp_path / "short.tar"
    short.write_bytes(b"x" * 1000)
    with pytest.raises(D.DataUnavailable, match=r"short.tar is 1,000 bytes; .* 118,261,760 bytes \(sha256 3d6c523f"):
        D.load_dataset("cifar10-lossless", root=tmp_path, source=short)
    corrupt = tmp_path / "corrupt.tar"
    with open(corrupt, "wb") as f:
        f.truncate(D.LOSSLESS_SIZE)  # the right size, the wrong bytes
    with pytest.raises(D.DataUnavailable, match="corrupt.tar has sha256 .*; the lossless CIFAR-10 archive has 3d6c523f"):
        D.load_dataset("cifar10-lossless", root=tmp_path, source=corrupt)
    assert list(tmp_path.glob("*.pt")) == []
