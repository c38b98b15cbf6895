"""Helpers for the chapters' graded test cells.

`withheld(*functions, namespace=globals())` hides the library's answer to an exercise while a
graded cell checks the student's function: inside the `with` block every reference to those
functions, in the dprp_lib modules and in the notebook's namespace, raises an AssertionError, so a
function that hands the work to the library fails the cell instead of passing it. Everything is
put back when the block ends.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager


def _trap(function):
    name = f"{function.__module__}.{function.__qualname__}"

    def trap(*args, **kwargs):
        raise AssertionError(f"this exercise is to be answered without the library's {name}")
    return trap


@contextmanager
def withheld(*functions, namespace: dict | None = None):
    traps = [(f, _trap(f)) for f in functions]
    spaces = [vars(m) for name, m in list(sys.modules.items())
              if m is not None and (name == "dprp_lib" or name.startswith("dprp_lib."))]
    if namespace is not None:
        spaces.append(namespace)
    patched = []
    for space in spaces:
        for key, value in list(space.items()):
            for f, trap in traps:
                if value is f:
                    patched.append((space, key, value))
                    space[key] = trap
    try:
        yield
    finally:
        for space, key, value in reversed(patched):
            space[key] = value
