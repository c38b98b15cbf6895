"""How `make test` splits the suite between its pytest-xdist workers (conftest.work_unit)."""
from pathlib import Path

from conftest import AFTER_NBVAL, LONGEST_FIRST, reads_nbval, work_unit

ROOT = Path(__file__).resolve().parents[1]


def test_a_chapters_execution_is_one_work_unit():
    unit = {work_unit(n) for n in (
        "notebooks/05_sparsity.ipynb::Cell 3",
        "notebooks/solutions/05_sparsity_solutions.ipynb::Cell 0",
        "tests/test_notebooks.py::test_chapter_in_smoke_mode[05_sparsity]",
        "tests/test_notebooks.py::test_solutions_run[05_sparsity_solutions]",
        f"tests/test_notebooks.py::{AFTER_NBVAL[0]}[05_sparsity]",
    )}
    assert unit == {"chapter-05"}
    assert work_unit("notebooks/06_dynamic_rank_pruning.ipynb::Cell 3") == "chapter-06"
    # chapter 09's smoke run reads the runs that chapter 08's trained, in the same worker
    assert work_unit("tests/test_notebooks.py::test_chapter_in_smoke_mode[09_results_vs_paper]") == \
        work_unit("tests/test_notebooks.py::test_chapter_in_smoke_mode[08_resnet20_cifar10]") == "chapter-08"


def test_every_other_test_goes_with_its_module():
    assert work_unit("tests/test_train.py::test_interrupted_run_resumes_to_the_same_result") == "tests/test_train.py"
    assert work_unit("tests/test_notebooks.py::test_every_chapter_has_solutions") == "tests/test_notebooks.py"
    assert work_unit("tests/test_layers.py::test_gradcheck[factored]") == "tests/test_layers.py"
    # a parameter that merely starts with digits is not a chapter
    assert work_unit("tests/test_notebooks.py::test_x[05]") == "tests/test_notebooks.py"


def test_the_longest_units_named_exist():
    chapters = {p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    for unit in LONGEST_FIRST:
        assert (ROOT / unit).is_file() if unit.startswith("tests/") else unit.removeprefix("chapter-") in chapters, unit


def test_the_tests_that_read_nbvals_metrics_are_known_by_name():
    assert reads_nbval(f"tests/test_notebooks.py::{AFTER_NBVAL[0]}[05_sparsity]")
    assert reads_nbval("tests/test_notebooks.py::test_solutions_run[05_sparsity_solutions]")
    assert not reads_nbval("notebooks/solutions/05_sparsity_solutions.ipynb::Cell 0")
    assert not reads_nbval("tests/test_notebooks.py::test_chapter_in_smoke_mode[05_sparsity]")
