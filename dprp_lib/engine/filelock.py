"""One process at a time: an exclusive lock on a file, for work that processes started together
(parallel runs, test workers, two open chapters) would otherwise each do beside the others."""
from __future__ import annotations

import contextlib
from pathlib import Path


@contextlib.contextmanager
def exclusive(guarded: Path, waiting=None):
    """Hold an exclusive lock on `<guarded>.lock` (created if missing) for the `with` block, while
    one process writes `guarded`; others wait, each calling `waiting()` first if given (to say why
    it stands still). POSIX only: elsewhere there is no lock, and processes that start together
    each do the work."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    lock = Path(guarded).with_name(Path(guarded).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                waiting()
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
