import os
import time
from pathlib import Path

import pytest
import torch

from dprp_lib import paths

# `make test` runs the suite in pytest-xdist workers: each gets its share of the cores, and so do the
# processes it starts (chapter kernels, launched runs), since more threads than cores slow torch several fold.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
torch.set_num_threads(THREADS)
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)

# A developer runs the fast part with  make test PYTEST_ARGS='-m "not slow and not notebook and not browser"'
MARKERS = {
    "slow": "trains a network, exports one or runs a benchmark (seconds to minutes each)",
    "notebook": "executes chapters: nbval against the stored outputs, the chapters' claims, the release",
    "browser": "drives chromium through JupyterLab and the course site",
}
NOTEBOOK_MODULES = {"test_notebooks.py", "test_release.py"}
# nbval executes every chapter and worked-solutions notebook in its stored (quick) mode, writing
# build/metrics/<notebook>.json; the tests named here run after it and read those files instead of
# executing each notebook again (each executes it itself where nbval did not run).
SESSION_START = time.time()
RUNS_BEFORE = set(paths.SCRATCH.glob("*")) if paths.SCRATCH.is_dir() else set()
AFTER_NBVAL = ("test_chapter_claims_hold_on_the_committed_quick_runs", "test_solutions_run")
# The work units that take longest on 2 cores, longest first, sent to the workers first so that
# none is left running a long one alone at the end; the rest follow in the order collected.
# Measured per unit (wall seconds, 4 workers, a cold inductor cache as in CI): release 273, train
# 221, browser 214, experiments 151 (its cold torch.compile 104), chapter 06 121, cli 85, chapter
# 05 70, chapter 04 67, chapter 07 54, chapter 08 49, deploy 44, demo 42, chapter 03 41.
LONGEST_FIRST = ("tests/test_release.py", "tests/test_train.py", "tests/test_browser.py", "tests/test_experiments.py",
                 "chapter-06", "tests/test_cli.py", "chapter-05", "chapter-04", "chapter-07", "chapter-08",
                 "tests/test_deploy.py", "tests/test_demo.py", "chapter-03", "tests/test_notebooks.py",
                 "tests/test_course.py", "chapter-02")


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.suffix == ".ipynb" or item.path.name in NOTEBOOK_MODULES:
            item.add_marker(pytest.mark.notebook)
        if item.path.name == "test_browser.py":
            item.add_marker(pytest.mark.browser)
    items.sort(key=lambda i: reads_nbval(i.nodeid))  # stable: after every nbval item
    rank = {unit: n for n, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda i: rank.get(work_unit(i.nodeid), len(rank)))  # stable: each unit keeps its order


def reads_nbval(nodeid: str) -> bool:
    """Whether the test reads what nbval's execution of a notebook wrote (see AFTER_NBVAL)."""
    return nodeid.partition("::")[2].partition("[")[0] in AFTER_NBVAL


# Chapter 09 reads the runs that chapter 08 trains in smoke mode (test_notebooks' module fixture).
SHARED_UNITS = {"09": "08"}


def work_unit(nodeid: str) -> str:
    """What one xdist worker runs in a row: a test module (its module fixtures are built once),
    except that all of a chapter's execution goes together, in the order collected: its smoke run
    and its solutions', nbval of both, then the claims that read what nbval's execution wrote."""
    path, _, rest = nodeid.partition("::")
    param = rest.partition("[")[2]
    if path.startswith("notebooks/"):
        chapter = Path(path).name[:2]
    elif path.endswith("test_notebooks.py") and param[:2].isdigit() and param[2:3] == "_":
        chapter = param[:2]
    else:
        return path
    return "chapter-" + SHARED_UNITS.get(chapter, chapter)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Each `make test` worker is sent whole work units (see work_unit) in the order collected."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # its default sorts the units by their number of tests

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return work_unit(nodeid)

    return ByWorkUnit(config, log)


def metrics_from_this_session(notebook: str) -> dict | None:
    """The metrics nbval's execution of `notebook` (a chapter or its worked solutions, by stem) wrote
    during this test session, if it did so in quick mode without training anything (no new run in
    build/runs/); else None."""
    import json

    path = paths.METRICS / f"{notebook}.json"
    if not path.is_file() or path.stat().st_mtime < SESSION_START:
        return None
    trained = set(paths.SCRATCH.glob("*")) - RUNS_BEFORE if paths.SCRATCH.is_dir() else set()
    assert not trained, f"the stored-mode execution trained {sorted(p.name for p in trained)}: a committed run is missing"
    metrics = json.loads(path.read_text())
    return metrics if metrics.get("mode") == "quick" else None


@pytest.fixture
def f64():
    """Run a test in float64 (exactness checks), restoring the default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def require_mirror() -> str:
    """The CIFAR-10 JPEG mirror's path."""
    return _require_data("DPRP_CIFAR10_MIRROR", "the offline CIFAR-10 mirror")


def require_lossless() -> str:
    """The lossless CIFAR-10 archive's path."""
    return _require_data("DPRP_CIFAR10_LOSSLESS", "the lossless CIFAR-10 archive")


def _require_data(variable: str, what: str) -> str:
    """The file `variable` names; in CI its absence is a failure, elsewhere a skip."""
    path = os.environ.get(variable)
    if path and os.path.exists(path):
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{variable} is not set in CI: run the tests through `make test`")
    pytest.skip(f"{what} is not available (set {variable})")


def write_fashion_mnist(folder: Path, train: int, test: int, seed: int = 0):
    """Fashion-MNIST's four gzipped IDX files in `folder`, with random 28×28 images and labels
    0–9 in turn; returns the test images (uint8, N×28×28)."""
    import gzip

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for stem, n in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
            with gzip.open(folder / f"{stem}-{kind}-ubyte.gz", "wb") as f:
                f.write(header + arr.tobytes())
    return images  # the last written: t10k's
