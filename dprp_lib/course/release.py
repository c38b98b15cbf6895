"""The student release of the course, made by nbgrader itself.

The chapters in notebooks/ are the instructor version: solutions in place, graded test cells
passing, outputs stored. Their exercises are nbgrader cells:
  - an answer cell has metadata `nbgrader.solution = true`; what lies between
    `### BEGIN SOLUTION` and `### END SOLUTION` is the answer (code, or the model answer and
    rubric of a written answer);
  - a graded test cell has `nbgrader.grade = true` and its `points`; a region between
    `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS` is kept from students;
  - a written answer (`solution` and `grade` on a markdown cell) is graded by hand.

The course directory is the repository, in the layout nbgrader expects (nbgrader_config.py at
the root points nbgrader there):
  source/<chapter>/<chapter>.ipynb        links to notebooks/<chapter>.ipynb, written here
  release/<chapter>/<chapter>.ipynb       nbgrader generate_assignment: answers and hidden tests
                                          out, outputs cleared, cells locked and checksummed
  submitted/<student>/<chapter>/...       what students hand in
  autograded/, feedback/, gradebook.db    nbgrader autograde and generate_feedback
source/ is generated rather than committed: notebooks/ stays the one copy under version control
(the chapters, the site and the tests all read it), and a link cannot drift from it.

    dprp release [--out release] [CHAPTER ...]

writes source/ and runs nbgrader's generate_assignment for every chapter (or the named ones).
The rest is nbgrader's own commands, run from the repository root:
    nbgrader autograde 01_svd_basics            # every student under submitted/
    nbgrader generate_feedback 01_svd_basics
    nbgrader formgrader                         # the written answers, graded by hand
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import nbformat

from ..paths import ROOT
from .build import chapters

COURSE_ID = "dprp"


def nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def graded_cells(nb) -> list[dict]:
    """grade_id, points and kind ("auto": a test cell, "manual": a written answer) of every graded cell."""
    return [{"grade_id": nbgrader(c)["grade_id"], "points": nbgrader(c).get("points", 0),
             "kind": "manual" if nbgrader(c).get("solution") else "auto"}
            for c in nb.cells if nbgrader(c).get("grade")]


def course_config(root=ROOT, release="release"):
    """nbgrader's configuration for a course directory at `root` (nbgrader_config.py uses it too)."""
    from traitlets.config import Config

    c = Config()
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.root = str(Path(root).resolve())
    c.CourseDirectory.release_directory = str(release)
    c.CourseDirectory.db_url = f"sqlite:///{Path(root).resolve() / 'gradebook.db'}"
    # The chapters' slowest cells (chapter 01's reconstructions, a chapter loading its runs) take
    # tens of seconds on a 2-core CPU; nbgrader's default is 30 s a cell.
    c.Execute.timeout = 600
    # Each chapter is one assignment of one notebook; nothing else in source/ is released.
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]
    return c


def api(root=ROOT, release="release", execute: bool = True):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    in_process_alembic()
    config = course_config(root, release)
    if not execute:  # nbgrader autograde --no-execute: grade the outputs the notebook carries
        config.Execute.enabled = config.ClearOutput.enabled = False
    return NbGraderAPI(CourseDirectory(config=config), config=config)


def in_process_alembic() -> None:
    """A new gradebook asks the `alembic` command for the head of nbgrader's migrations: a second
    Python that must be on PATH (it is not, in a virtualenv that is not activated) and takes 5-30 s
    to start on a busy 2-core machine. This gives nbgrader the same answer, read in this process."""
    import nbgrader.api

    nbgrader.api.get_alembic_version = _alembic_head


def _alembic_head() -> str:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import _temp_alembic_ini

    with _temp_alembic_ini("sqlite://") as ini:
        return ScriptDirectory.from_config(AlembicConfig(ini)).get_current_head()


def _check(result: dict, what: str) -> dict:
    if not result.get("success"):
        raise RuntimeError(f"nbgrader {what} failed: {result.get('error')}\n{result.get('log')}")
    return result


def write_source(root=ROOT, sources=None) -> list[str]:
    """source/<chapter>/<chapter>.ipynb for every chapter: links to notebooks/ (copies where links fail)."""
    names = []
    for path in sources or chapters():
        path = Path(path).resolve()
        target = Path(root) / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        try:
            target.symlink_to(os.path.relpath(path, target.parent))
        except OSError:
            shutil.copyfile(path, target)
        names.append(path.stem)
    return names


def generate(root=ROOT, sources=None, release="release") -> list[Path]:
    """nbgrader generate_assignment for each chapter; the released notebooks."""
    grader = api(root, release)
    written = []
    for name in write_source(root, sources):
        _check(grader.generate_assignment(name, force=True, create=True), f"generate_assignment {name}")
        written.append(Path(root) / release / name / f"{name}.ipynb")
    return written


def autograde(root, assignment: str, student: str, execute: bool = True) -> dict:
    """nbgrader autograde of submitted/<student>/<assignment>/, then the scores it recorded. With
    `execute=False` (nbgrader's --no-execute) the submission is graded on the outputs it carries,
    for a notebook that was executed already (its locked cells are still restored)."""
    _check(api(root, execute=execute).autograde(assignment, student, force=True, create=True),
           f"autograde {assignment} {student}")
    return scores(root, assignment, student)


def feedback(root, assignment: str, student: str) -> Path:
    """nbgrader generate_feedback: feedback/<student>/<assignment>/<assignment>.html."""
    _check(api(root).generate_feedback(assignment, student, force=True), f"generate_feedback {assignment} {student}")
    return Path(root) / "feedback" / student / assignment / f"{assignment}.html"


def scores(root, assignment: str, student: str) -> dict:
    """The gradebook's view of one submission: total score, max and each graded cell."""
    from nbgrader.api import Gradebook

    with Gradebook(course_config(root).CourseDirectory.db_url, COURSE_ID) as gb:
        submission = gb.find_submission(assignment, student)
        cells = {}
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                cells[grade.name] = {"score": grade.score, "max_score": grade.max_score,
                                     "auto_score": grade.auto_score, "needs_manual_grade": grade.needs_manual_grade}
        return {"score": submission.score, "max_score": submission.max_score,
                "needs_manual_grade": submission.needs_manual_grade, "cells": cells}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dprp release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="release", help="the release folder of the course directory (default: release)")
    p.add_argument("chapters", nargs="*", help="chapter names, e.g. 01_svd_basics (default: every chapter)")
    args = p.parse_args(argv)
    sources = chapters()
    if args.chapters:
        unknown = set(args.chapters) - {s.stem for s in sources}
        if unknown:
            p.error(f"no such chapter: {', '.join(sorted(unknown))}")
        sources = [s for s in sources if s.stem in args.chapters]
    written = generate(ROOT, sources, args.out)
    graded = [g for path in sources for g in graded_cells(nbformat.read(path, as_version=4))]
    auto = sum(g["points"] for g in graded if g["kind"] == "auto")
    manual = sum(g["points"] for g in graded if g["kind"] == "manual")
    print(f"nbgrader generate_assignment: {len(written)} chapters released to {args.out}/<chapter>/ "
          f"({auto} points of autograded exercises, {manual} of written answers graded by hand); "
          f"the course directory is {ROOT} (nbgrader_config.py): nbgrader autograde CHAPTER grades submitted/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
