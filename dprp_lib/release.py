"""The student release of the course: every chapter with its solutions taken out.

The chapters in notebooks/ are the instructor version: solutions in place, graded test cells
passing, outputs stored. Exercises use nbgrader's cell format, so the notebooks also work
with nbgrader itself (`nbgrader generate_assignment`):
  - a solution cell has metadata `nbgrader.solution = true`; what lies between
    `### BEGIN SOLUTION` and `### END SOLUTION` is the answer;
  - a graded test cell has `nbgrader.grade = true` and its `points`; a region between
    `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS` is kept from students.

    python -m dprp_lib.release [--out release]

writes release/NN_*.ipynb (beside notebooks/, so the relative paths hold): answers replaced by `raise NotImplementedError()`, hidden
tests removed, every output cleared.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import nbformat

from .course import chapters

SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION[ \t]*\n?", re.M | re.S)
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS\n.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", re.M | re.S)


def nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def graded_cells(nb) -> list[dict]:
    """(grade_id, points) of every graded test cell."""
    return [{"grade_id": nbgrader(c)["grade_id"], "points": nbgrader(c).get("points", 0)}
            for c in nb.cells if nbgrader(c).get("grade")]


def student_version(nb):
    """A copy of `nb` with every answer removed and every output cleared."""
    nb = nbformat.from_dict(nb)  # a copy
    for cell in nb.cells:
        meta = nbgrader(cell)
        if meta.get("solution"):
            if cell.cell_type == "code":
                cell.source = SOLUTION.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError()\n",
                                           cell.source)
            else:
                cell.source = SOLUTION.sub("YOUR ANSWER HERE\n", cell.source)
        if meta.get("grade"):
            cell.source = HIDDEN.sub("", cell.source)
        if "### BEGIN SOLUTION" in cell.source:
            raise ValueError(f"a solution region outside a solution cell: {cell.source[:80]!r}")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    return nb


def write_release(out="release", sources=None) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources or chapters():
        nb = nbformat.read(path, as_version=4)
        target = out / path.name
        nbformat.write(student_version(nb), target)
        written.append(target)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dprp_lib.release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="release", help="a folder beside notebooks/ (default: release)")
    args = p.parse_args(argv)
    written = write_release(args.out)
    total = sum(g["points"] for path in chapters() for g in graded_cells(nbformat.read(path, as_version=4)))
    print(f"wrote the student release of {len(written)} chapters to {args.out}/ ({total} points of graded exercises); "
          "run it from a folder beside dprp_lib/ and results/ (it uses the same relative paths as notebooks/)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
