"""The student release: solutions out, graded tests kept; the student version runs up to the
first exercise, and the instructor version (notebooks/) passes every graded cell."""
import nbformat
import pytest
from papermill.exceptions import PapermillExecutionError

from dprp_lib.course import chapters, execute
from dprp_lib.release import graded_cells, student_version, write_release
from conftest import require_mirror
from test_notebooks import ROOT

GRADED = [p for p in chapters() if graded_cells(nbformat.read(p, as_version=4))]


def test_graded_exercises_exist_and_declare_points():
    assert GRADED, "no chapter holds a graded exercise"
    for path in GRADED:
        nb = nbformat.read(path, as_version=4)
        for g in graded_cells(nb):
            assert g["points"] > 0 and g["grade_id"]
        solutions = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
        assert solutions and all("### BEGIN SOLUTION" in c.source for c in solutions)


def test_student_version_removes_answers_hidden_tests_and_outputs():
    nb = nbformat.v4.new_notebook()
    sol = nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n")
    sol.metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": "f"}
    test = nbformat.v4.new_code_cell("assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(3) == 6\n### END HIDDEN TESTS\n")
    test.metadata["nbgrader"] = {"grade": True, "points": 1, "grade_id": "f_tests"}
    test.outputs = [nbformat.v4.new_output("stream", text="ok")]
    nb.cells = [sol, test]
    out = student_version(nb)
    assert out.cells[0].source == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert out.cells[1].source == "assert f(1) == 2\n" and out.cells[1].outputs == []
    assert "return 2 * x" in nb.cells[0].source  # the instructor version is left as it was


def test_student_release_runs_up_to_the_first_exercise(tmp_path):
    require_mirror()
    # The release sits beside notebooks/ (its relative paths), here in a scratch copy of that layout.
    release = tmp_path / "release"
    for linked in ("dprp_lib", "results", "data"):
        (tmp_path / linked).symlink_to(ROOT / linked)
    written = write_release(release, GRADED[:1])
    nb = nbformat.read(written[0], as_version=4)
    first_graded = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade"))
    with pytest.raises(PapermillExecutionError) as failed:
        execute(written[0], tmp_path / "executed.ipynb",
                {"MODE": "smoke", "DEVICE": "cpu", "METRICS_PATH": str(tmp_path / "m.json"), "RUNS_DIR": str(tmp_path / "runs")})
    assert failed.value.ename == "NotImplementedError"
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    errors = [i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.outputs)]
    # papermill adds a parameters cell: the first error is the first graded cell, nothing failed before it
    graded_sources = [c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(errors) == 1 and code[errors[0]].source == graded_sources[0]
    assert first_graded > 0


@pytest.mark.parametrize("path", GRADED, ids=lambda p: p.stem)
def test_instructor_version_passes_every_graded_cell(path):
    """The stored instructor outputs (which nbval re-checks) show every graded cell passing."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            assert cell.outputs and not any(o.get("output_type") == "error" for o in cell.outputs)
