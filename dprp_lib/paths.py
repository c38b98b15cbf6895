"""The repository's own folders, found from the package itself so a chapter runs from any directory.

The course installs the package in editable mode, so the package's parent is the repository. An
install elsewhere (a wheel in site-packages) has no repository around it: the current directory
stands in for it.
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
ROOT = _PACKAGE_PARENT if (_PACKAGE_PARENT / "pyproject.toml").is_file() else Path.cwd()
DATA = ROOT / "data"                  # downloads and decode caches
RESULTS = ROOT / "results" / "runs"   # committed runs
SCRATCH = ROOT / "build" / "runs"     # runs trained on this machine
METRICS = ROOT / "build" / "metrics"  # each chapter's key numbers, read back by the tests


def shown(path) -> str:
    """`path` relative to the repository when it lies inside it (shorter, and the same on every machine)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)
