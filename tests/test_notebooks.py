"""Every chapter and every worked solution runs in smoke mode, and its metrics show what the chapter claims.

(The stored outputs of the default mode are checked separately by nbval: `pytest --nbval notebooks/`,
part of `make test`.)
"""
import json
import os
from pathlib import Path

import nbformat
import pytest

from dprp_lib.course.build import chapters, execute, run_course
from conftest import metrics_from_this_session, require_mirror

ROOT = Path(__file__).resolve().parents[1]
FULL_SET_RUNS = 27  # experiments.full_set: 5 variants × 3 seeds, 6 × 2
NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = sorted((NOTEBOOKS / "solutions").glob("*.ipynb"))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """The smoke runs, one folder for the whole session: chapters share runs (chapter 03's orth=1
    is chapter 04's sort=1, 06's dprp and 07's all penalties), and the xdist workers that execute
    them share the folder, so each run is trained once (run_or_load trains a run wanted twice at
    once only once); the solutions load their chapter's."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's own
    (root / "smoke-runs").mkdir(exist_ok=True)
    return root / "smoke-runs"


def run_notebook(path: Path, tmp_path: Path, runs_dir: Path, mode: str = "smoke") -> dict:
    require_mirror()
    execute(path, tmp_path / path.name, {"MODE": mode, "DEVICE": "cpu", "DATA_DIR": str(ROOT / "data"), "RUNS_DIR": str(runs_dir)},
            cell_timeout=900,  # no smoke or committed-run cell comes near this; a stall fails, not hangs
            metrics_dir=tmp_path / "metrics")
    return json.loads((tmp_path / "metrics" / f"{path.stem}.json").read_text())


def claims_01(m):
    assert m["eckart_young_max_gap"] < 1e-10  # ‖A − A_k‖ is exactly the energy left out
    assert -1e-12 < m["gradient_descent_excess"] < 1e-6  # gradient descent reaches the Eckart–Young error, not below it
    small = min(m["image_shape"])
    assert m["rank_for_90pct_energy"] < 0.1 * small  # a photograph's spectrum falls fast
    assert m["relative_error_rank20"] < 0.35
    assert abs(m["break_even_rank"] - m["image_shape"][0] * m["image_shape"][1] / (sum(m["image_shape"]) + 1)) < 1e-9


def claims_02(m):
    assert m["from_dense_max_error"] < 1e-5 and m["two_stage_from_scratch_error"] < 1e-5
    assert m["forms_max_error"] < 1e-4
    assert (m["resnet20_conv_params_factored"], m["resnet20_conv_params_dense"]) == (300_896, 267_696)
    assert m["rank99_fraction_dprp"] < m["rank99_fraction_trained"]  # DPRP concentrates the energy


def claims_03(m):
    # the penalty keeps U, V orthonormal and |s| honest (λ_orth = 10 against 0: visible even at smoke scale)
    assert m["final_orth"]["orth=10"] < m["final_orth"]["orth=0"]
    assert m["final_spectrum_gap"]["orth=10"] < m["final_spectrum_gap"]["orth=0"]
    if m["mode"] != "smoke":
        assert m["final_orth"]["orth=1"] < m["final_orth"]["orth=0"] / 2
        assert m["final_spectrum_gap"]["orth=1"] < m["final_spectrum_gap"]["orth=0"]
    assert set(m["acc_lost_at_cuts"]) == set(m["final_orth"])  # the reading's check is computed for every run
    if m["mode"] == "quick":  # the reading: stale BatchNorm statistics are most of a cut's measured drop,
        raw, recal = m["acc_lost_at_cuts"], m["acc_lost_at_cuts_recalibrated"]
        assert all(recal[k] < raw[k] for k in raw)
        # and without the penalty the cuts cost no more than with it, within the epoch-to-epoch noise
        assert recal["orth=0"] <= recal["orth=1"] + m["epoch_noise"]


def claims_04(m):
    v, r = m["mean_order_violations"], m["total_rank"]
    assert v["sort=0, reorder before each cut"] < v["sort=0"]  # sorting at each cut removes violations
    if m["mode"] != "smoke":  # two smoke epochs are too few for the penalty to act
        assert v["sort=1"] < v["sort=0"] / 2  # the sorting penalty keeps s sorted
        assert r["sort=1"] < r["sort=0"]  # and the same ε then cuts deeper
    if m["mode"] == "quick":  # the reading: as measured, the deepest cutter loses most at its cuts;
        lost, recal = m["acc_lost_at_cuts"], m["acc_lost_at_cuts_recalibrated"]
        assert max(lost, key=lost.get) == min(r, key=r.get) == "sort=1"
        assert all(recal[k] < lost[k] for k in lost)  # stale BatchNorm statistics: most of a measured drop
        # re-estimated, the drops differ by less than twice the epoch noise: single runs cannot rank them
        assert max(recal.values()) - min(recal.values()) < 2 * m["epoch_noise"]


def claims_05(m):
    r = m["total_rank"]
    assert r["l1 x2"] < r["l1 x0"]  # ranks fall when sparsity is on
    kind, weight = m["widget"]["key"]  # the panel shows the committed run it names, not some other one
    shown = f"{kind} x{weight:g}"
    assert (m["widget"]["total_rank"], m["widget"]["deployed_fraction"], m["widget"]["test_acc"]) == \
        (r[shown], m["deployed_fraction"][shown], m["test_acc"][shown])


def claims_06(m):
    others = ["thin dense (same size as dprp 50%)", "posthoc + fine-tune at dprp 50%", "svd-training at dprp 50%"]
    full_data_is_whole(m, ["dense", "dprp 94%", "dprp 75%", "dprp 50%", "dprp 30%", *others])
    assert list(m["full_data"]["against_dprp_50"]) == others  # each method at equal size, paired with DPRP
    runs = sorted(m["energy_runs"].values(), key=lambda e: e["energy"])
    ranks = [e["total_rank"] for e in runs]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > ranks[-1]  # a larger ε cuts deeper
    methods = m["methods"]
    assert methods["dense"]["deployed_fraction"] == 1.0
    assert m["posthoc_at_dprp_ranks"]["deployed_fraction"] == pytest.approx(methods["dprp"]["deployed_fraction"], abs=0.02)
    if m["mode"] != "smoke":
        assert methods["dprp"]["deployed_fraction"] < methods["svd-training"]["deployed_fraction"] <= methods["posthoc"]["deployed_fraction"]
        assert m["posthoc_at_dprp_ranks"]["test_acc"] < methods["dprp"]["test_acc"] - 0.1
    scratch = m["scratch"]  # the students' own loop (section 5): the loss falls, the ranks fall
    assert scratch["losses"][-1] < 0.9 * scratch["losses"][0] and scratch["test_acc"] > 0.15
    assert scratch["ranks"][-1] <= 0.8 * scratch["start_rank"] and scratch["ranks"] == sorted(scratch["ranks"], reverse=True)


def claims_07(m):
    full_data_is_whole(m, ["dprp 50%", "dprp 50% no sparse", "dprp 50% no sort", "dprp 50% no orth"])
    assert list(m["full_data"]["against_dprp_50"]) == ["dprp 50% no sparse", "dprp 50% no sort", "dprp 50% no orth"]
    full = m["full_data"]
    if not full["missing"]:  # what the full-data reading says
        size, interval = full["deployed"], full["intervals"]
        assert interval["dprp 50% no orth"][2] < 0 and abs(size["dprp 50% no orth"] - size["dprp 50%"]) < 0.05
        assert all(interval[v][1] < 0 < interval[v][2] for v in ("dprp 50% no sparse", "dprp 50% no sort"))
        assert size["dprp 50% no sort"] > 0.95 and size["dprp 50% no sparse"] > size["dprp 50%"] + 0.03
    rows = {r["variant"]: r for r in m["rows"]}
    assert set(rows) == {"all penalties", "no orth", "no sort", "no sparse", "none"}
    assert rows["all penalties"]["total_rank"] < rows["none"]["total_rank"]
    assert set(m["findings"]) == {"sparsity", "sorting", "orthogonality"}
    assert m["widget"]["variant"] == "all penalties"
    if m["mode"] != "smoke":
        assert all(len(r["seeds"]) == 3 for r in rows.values())
        assert m["findings"]["sparsity"]["deployed_separated"]  # sparsity drives compression


def claims_08(m):
    assert m["method"] == "dprp" and m["total_rank"] < m["full_rank"]  # DPRP cut ranks
    if m["mode"] != "smoke":
        assert m["deployed_fraction"] < 0.6
    if m["mode"] == "quick":  # the reading: the opposite of the paper's, DPRP ends well below dense
        assert m["test_acc"] < m["dense_test_acc"] - 0.03 and m["dense_test_acc"] > 0.3  # both well above chance
    # the full-data set: what is committed plus what is listed as missing is the whole plan
    assert m["set_runs"] + m["set_missing"] == FULL_SET_RUNS and m["recipe_candidates"] == 2
    # section 6's reading, from the committed 164-epoch runs: on every seed all three variants have finished
    for seed in (0, 1, 2):
        runs = {v: m["paper_progress"][f"resnet20 {v} | seed {seed}"] for v in ("dense", "dprp 94%", "dprp 50%")}
        if all(r["state"] == "finished" for r in runs.values()):
            gap = {v: r["train_acc"] - r["val_acc"] for v, r in runs.items()}
            assert gap["dense"] > gap["dprp 94%"] > gap["dprp 50%"], seed  # the penalties and cuts narrow the gap ...
            assert runs["dense"]["val_acc"] > runs["dprp 94%"]["val_acc"] > runs["dprp 50%"]["val_acc"], seed  # ... not by generalising better
    # section 5's reading, from the committed lossless 30-epoch runs against their JPEG twins (every finished seed)
    for variant, cost in m["jpeg_cost"].items():
        assert all(3 < v < 5 for v in cost["val"]), variant  # the mirror costs 3-5 points of validation accuracy
        assert all(v > 10 for v in cost["encoding_0_999"]), variant  # the same test images as JPEG: over 10 points lost
        assert all(-8 < v < -6 for v in cost["jpeg_test"]), variant  # on JPEG test images the JPEG-trained twin wins


def claims_09(m):
    assert m["paper_rows"] == 6
    variants = {r["variant"] for r in m["rows"]}
    assert {"resnet20 dense", "resnet20 dprp"} <= variants  # from chapter 08's runs
    if m["mode"] != "smoke":
        assert all(r["seeds"] == 3 for r in m["rows"] if r["mode"] == "quick")
        assert "quick" in m["targets"]
    full_data_is_whole(m)
    assert set(m["full_data"]["verdicts"]) == {"a", "b"} and "full" in m["targets"]
    full_data_is_whole(m, key="paper_length")  # the GPU set at 164 epochs, shown apart, also never as whole when partial
    assert set(m["paper_length"]["verdicts"]) == {"a", "b"} and "paper" in m["targets"]
    # section 4's reading, from the figure's own intervals (the whole data set is read in every mode)
    whole = m["figure"]["paper_inside"]["whole data set"]
    assert whole["dprp_highest"] < 1.18  # every DPRP interval lies below the paper's +1.18 ...
    assert whole["holding"] == ["posthoc + fine-tune at dprp 50%"]  # ... but not every interval excludes it
    if m["mode"] == "quick":  # laptop mode: four of the five intervals hold +1.18, only strong DPRP's lies below 0
        laptop = m["figure"]["paper_inside"]["laptop mode (quick)"]
        assert (len(laptop["holding"]), laptop["settings"]) == (4, 5) and laptop["below_zero"] == ["dprp (strong, 4ε)"]


def full_data_is_whole(m, variants=None, key="full_data"):
    """A chapter shows the committed full-data runs and lists the rest: never a partial set as whole."""
    from dprp_lib.engine.experiments import grid, variant_of
    planned = {variant_of(n).removeprefix("resnet20 ") for n in grid("08_resnet20_cifar10", "full")}
    shown = set(m[key]["variants"]) | {variant_of(n).removeprefix("resnet20 ") for n in m[key]["missing"]}
    assert shown == (planned if variants is None else set(variants))


CLAIMS = {"08_resnet20_cifar10": claims_08, "09_results_vs_paper": claims_09, "01_svd_basics": claims_01, "02_svd_layers": claims_02, "03_orthogonality": claims_03,
          "04_sorting": claims_04, "05_sparsity": claims_05, "06_dynamic_rank_pruning": claims_06,
          "07_ablations": claims_07}


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.stem)
def test_chapter_in_smoke_mode(path, tmp_path, runs_dir):
    """Every chapter runs end to end in smoke mode, training the tiny runs of its grid that no chapter
    before it in this session has trained (the others it loads, as it would committed ones)."""
    assert path.stem in CLAIMS, f"{path.name} has no claims checked here"
    metrics = run_notebook(path, tmp_path, runs_dir)
    assert metrics["mode"] == "smoke"
    CLAIMS[path.stem](metrics)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solutions_run(path, tmp_path, runs_dir):
    """The worked solutions run through and record their answers: read from nbval's execution in
    this session (quick mode; conftest orders this test after it), else executed here in smoke mode."""
    metrics = metrics_from_this_session(path.stem)
    if metrics is None:
        metrics = run_notebook(path, tmp_path, runs_dir)
        assert metrics["mode"] == "smoke"
    assert metrics["answers"]


@pytest.mark.parametrize("path", [p for p in chapters() if p.stem >= "03"], ids=lambda p: p.stem)
def test_chapter_claims_hold_on_the_committed_quick_runs(path, tmp_path):
    """The chapter's claims, in the mode its stored outputs are in (loads results/, trains nothing):
    read from nbval's execution in this session when it ran (conftest orders this test after it),
    else by executing the chapter here."""
    metrics = metrics_from_this_session(path.stem)
    if metrics is None:
        metrics = run_notebook(path, tmp_path, tmp_path / "no-training-expected", mode="quick")
        assert not (tmp_path / "no-training-expected").exists(), "a committed run is missing from results/"
    assert metrics["mode"] == "quick"
    CLAIMS[path.stem](metrics)


def test_reproduction_in_full_mode_loads_the_committed_full_data_runs(tmp_path):
    """A researcher's `-p MODE full` with the default parameters gets the committed full-data recipe
    (bf16 included) for both runs, so it loads them instead of retraining for an hour."""
    metrics = run_notebook(NOTEBOOKS / "08_resnet20_cifar10.ipynb", tmp_path, tmp_path / "no-training-expected",
                           mode="full")
    assert metrics["mode"] == "full" and metrics["method"] == "dprp"
    assert 0.8 < metrics["dense_test_acc"] < 1 and metrics["deployed_fraction"] < 0.6
    assert not (tmp_path / "no-training-expected").exists(), "full mode retrained a committed run"


def test_every_chapter_has_solutions():
    assert {p.stem.replace("_solutions", "") for p in SOLUTIONS} == {p.stem for p in chapters()}


def test_course_runner_writes_notebook_html_and_report(tmp_path):
    require_mirror()
    report = run_course("smoke", tmp_path, only=["01"], device="cpu")
    assert [r["status"] for r in report] == ["ok"]
    assert (tmp_path / "notebooks" / "01_svd_basics.ipynb").is_file()
    assert "<html" in (tmp_path / "html" / "01_svd_basics.html").read_text()[:2000].lower()
    assert json.loads((tmp_path / "course.json").read_text())[0]["chapter"] == "01_svd_basics"


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.stem)
def test_chapter_states_prerequisites_study_time_and_references(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    head = nb.cells[0].source
    assert "**Prerequisites:**" in head and "**Study time:** about" in head
    refs = [c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## References")]
    assert len(refs) == 1 and "https://arxiv.org/abs/2401.08014" in refs[0]  # every chapter links the paper
    checks = [c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("**Check your understanding**")]
    assert checks and all("<details><summary>Answer</summary>" in c for c in checks)  # short questions, answers folded


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.stem)
def test_every_stored_output_comes_from_a_run_cell(path):
    """nbval refuses a code cell that holds outputs but no execution count ("unrun reference cell")."""
    nb = nbformat.read(path, as_version=4)
    unrun = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.outputs and c.execution_count is None]
    assert not unrun, f"cells {unrun} hold outputs but were never executed: re-execute the chapter"


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.stem)
def test_test_plumbing_comes_last_and_stays_off_the_site(path):
    """save_metrics is for the tests, not the lesson: after the references, tagged remove-cell."""
    import nbformat

    cells = nbformat.read(path, as_version=4).cells
    plumbing = [i for i, c in enumerate(cells) if "save_metrics(" in c.source]
    assert plumbing == [len(cells) - 1]
    assert "remove-cell" in cells[-1].metadata.get("tags", [])
    assert [c.source[:13] for c in cells if c.source.startswith("## References")] and \
        max(i for i, c in enumerate(cells) if c.source.startswith("## References")) < plumbing[0]


def test_chapters_import_the_installed_package_and_find_the_repository_folders(tmp_path):
    """No sys.path edits, no folders relative to notebooks/: a chapter copied elsewhere still loads its
    committed runs. The copy keeps the chapter's own cells up to its runs (parameters, setup,
    `chapter_runs`), then records what the kernel found; the rest of the chapter is nbval's."""
    for path in chapters() + SOLUTIONS:
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert "sys.path" not in code and '"../' not in code, path.name
    require_mirror()
    nb = nbformat.read(NOTEBOOKS / "04_sorting.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    runs_cell = next(i for i, c in enumerate(code) if "nb.chapter_runs(" in c.source)
    nb.cells = code[:2] + [code[runs_cell], nbformat.v4.new_code_cell(
        "from dprp_lib import paths\n"
        "from dprp_lib.course.notebook import save_metrics\n"
        "save_metrics('04_sorting', runs=len(runs), loaded=sum(r.loaded for r in runs.values()),\n"
        "             folders={k: str(getattr(paths, k)) for k in ('ROOT', 'DATA', 'RESULTS', 'SCRATCH')})")]
    assert "tags" in code[0].metadata and "parameters" in code[0].metadata["tags"]
    copy = tmp_path / "elsewhere" / "04_sorting.ipynb"
    copy.parent.mkdir()
    nbformat.write(nb, copy)
    execute(copy, tmp_path / "out.ipynb", {"MODE": "quick", "DEVICE": "cpu"}, cell_timeout=900, metrics_dir=tmp_path)
    found = json.loads((tmp_path / "04_sorting.json").read_text())
    assert found["runs"] == found["loaded"] == 4  # every run of the grid loaded from results/, none trained
    assert found["folders"] == {"ROOT": str(ROOT), "DATA": str(ROOT / "data"), "RESULTS": str(ROOT / "results" / "runs"),
                                "SCRATCH": str(ROOT / "build" / "runs")}
