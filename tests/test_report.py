"""The full-data table: paired changes, intervals, verdicts, and the README showing exactly it."""
from pathlib import Path

import pytest

from dprp_lib.engine import report as R
from dprp_lib.engine import stats as S

ROOT = Path(__file__).resolve().parents[1]


def row(variant, deltas, fraction, method="dprp"):
    return {"variant": variant, "method": method, "deltas": deltas, "deployed_fraction": fraction,
            "interval": S.mean_interval(deltas)}


def test_verdicts_follow_the_interval_and_the_size():
    report = {"rows": [row("dense", [], 1.0, "dense"),
                       row("dprp 94%", [0.5, 0.6, 0.7], 0.93),       # interval above 0: meets (a)
                       row("dprp 50%", [-3.0, -2.5, -2.8], 0.49),    # below -1: misses (b)
                       row("dprp 30%", [0.2, -0.4], 0.3),            # 2 seeds: not decided
                       row("dprp 50% no sort", [5.0, 5.0, 5.0], 0.4)]}  # an ablation, not a point
    v = R.target_verdicts(report)
    assert v["a"]["status"] == "holds" and v["a"]["met_by"] == ["dprp 94%"]
    assert v["b"]["points"]["dprp 50%"].startswith("misses") and v["b"]["points"]["dprp 94%"].startswith("misses: 93")
    assert v["b"]["points"]["dprp 30%"].startswith("not decided: 2 paired")
    assert v["b"]["status"] == "not decided" and "dprp 50% no sort" not in v["b"]["points"]
    spans = R.target_verdicts({"rows": [row("dprp 94%", [-1.0, 0.5, 1.0], 0.9)]})
    assert spans["a"]["points"]["dprp 94%"].startswith("not decided") and "spans +0" in spans["a"]["points"]["dprp 94%"]
    # several points tried: a 95% interval above the bound is not enough, Bonferroni's must be
    one = [0.3, 0.5, 0.7]  # its 95% interval starts just above 0, its 97.5% interval below
    assert S.mean_interval(one)[1] > 0 and S.mean_interval(one, 0.975)[1] < 0
    alone = R.target_verdicts({"rows": [row("dprp 94%", one, 0.9)]})
    assert alone["a"]["status"] == "holds"  # one point tried: 95% is the level
    two = R.target_verdicts({"rows": [row("dprp 94%", one, 0.9), row("dprp 50%", [-1.0, -0.9, -1.1], 0.5)]})
    assert two["a"]["status"] == "not decided" and "97.50% level for 2 points" in two["a"]["points"]["dprp 94%"]
    clear = R.target_verdicts({"rows": [row("dprp 94%", [0.5, 0.6, 0.7], 0.9), row("dprp 50%", [-1.0, -0.9, -1.1], 0.5)]})
    assert clear["a"]["met_by"] == ["dprp 94%"] and "97.50% interval from" in clear["a"]["points"]["dprp 94%"]


def test_the_header_names_each_run_that_trained_in_another_precision():
    def r(variant, amps):
        return {"variant": variant, "seeds": list(range(len(amps))), "amps": amps}
    assert R.precision_label([r("dense", ["bf16", "bf16"]), r("dprp 94%", ["bf16"])]) == "bf16 autocast"
    assert R.precision_label([r("dense", ["off"])]) == "float32"
    mixed = R.precision_label([r("dense", ["bf16", "bf16", "off"]), r("dprp 94%", ["bf16", "bf16", "off"])])
    assert mixed == "bf16 autocast (dense seed 2 in float32; dprp 94% seed 2 in float32)"
    assert R.precision_label([r("dense", ["off", "off", "bf16"])]) == "float32 (dense seed 2 in bf16 autocast)"


def test_section_markers_are_replaced_and_required(tmp_path):
    start, end = R.markers("recipe")
    text = f"before\n{start}\nold\n{end}\nafter\n"
    new = R.with_sections(text, tmp_path, "cifar10-mirror")  # no runs there: every candidate "not run yet"
    assert new.startswith(f"before\n{start}\n| run |") and "not run yet" in new and new.endswith(f"{end}\nafter\n")
    with pytest.raises(ValueError, match="markers"):
        R.with_sections("no markers", tmp_path, "cifar10-mirror")


def test_readme_and_results_page_show_the_committed_runs():
    """Every full-data table on these pages is what `dprp report --write` renders from results/."""
    for path in R.PAGES:
        text = path.read_text()
        assert R.with_sections(text, ROOT / "results" / "runs", "cifar10-mirror") == text, \
            f"{path.name} is stale: run dprp report --write"
    assert all(R.markers(name)[0] in R.PAGES[1].read_text() for name in R.SECTIONS)
    assert "\n  - dprp 94%: " in R.PAGES[0].read_text()  # each target's verdict, point by point


def test_cost_rows_put_training_time_and_inference_speed_beside_the_sizes():
    from dprp_lib.engine.report import cost_rows

    rows = [{"variant": "dense", "deployed_fraction": 1.0, "macs_fraction": 1.0, "time_fraction": 1.0, "runs": ["d0"]},
            {"variant": "dprp 50%", "deployed_fraction": 0.496, "macs_fraction": 0.547, "time_fraction": 1.13,
             "runs": ["aaa111", "bbb222"]},
            {"variant": "dprp 30%", "deployed_fraction": 0.29, "macs_fraction": 0.34, "time_fraction": 1.01,
             "runs": ["ccc333"]}]
    deploy = {"sizes": {"~50%": {"source": "results/runs/bbb222 (DPRP, energy 0.0011, seed 0)"},
                        "~75%": {"source": "uniform cut of every layer to 66% of its rank"}},
              "speedup_vs_dense": {rt: {"1": {"~50%": 1.12, "~75%": 0.9}, "256": {"~50%": 1.19, "~75%": 1.0}}
                                   for rt in ("onnxruntime", "eager")}}
    out = {r["variant"]: r for r in cost_rows({"rows": rows}, deploy)}
    assert out["dprp 50%"]["training time/dense"] == "1.13" and out["dprp 50%"]["MACs/dense"] == "54.7%"
    assert out["dprp 50%"]["inference speed-up, batch 1 (ONNX Runtime)"] == "1.12×"  # timed at run bbb222's ranks
    assert out["dprp 30%"]["batch 256 (torch eager)"] == "not timed"  # no benchmark used its ranks
    assert out["dense"]["batch 256 (ONNX Runtime)"] == "1 (reference)"
    deploy["speedup_vs_dense"]["onnxruntime_stage_checked"] = {"1": {"~50%": 1.31}, "256": {"~50%": 1.0}}
    latency = {r["variant"]: r for r in cost_rows({"rows": rows}, deploy)}["dprp 50%"]
    assert latency["inference speed-up, batch 1 (ONNX Runtime)"] == "1.31×"  # the deployment for latency
    assert latency["batch 256 (ONNX Runtime)"] == "1.19×"


def test_paired_rows_compare_seed_by_seed_against_a_reference():
    def acc_row(variant, seeds, accs, fraction):
        return {"variant": variant, "seeds": seeds, "test_acc_values": accs, "deployed_fraction": fraction}
    report = {"rows": [acc_row("dprp 50%", [0, 1, 2], [0.8500, 0.8600, 0.8400], 0.496),  # fractions, as collected
                       acc_row("thin dense", [0, 1], [0.8400, 0.8650], 0.4997),
                       acc_row("posthoc", [2], [0.8000], 0.5)]}
    thin, posthoc, missing = R.paired_rows(report, "dprp 50%", ["thin dense", "posthoc", "svd-training"])
    assert thin["seeds"] == [0, 1] and thin["diffs"] == pytest.approx([-1.0, 0.5]) and thin["mean"] == pytest.approx(-0.25)
    low, high = thin["interval"][1:]
    assert low < -0.25 < high  # two seeds give an interval
    assert posthoc["diffs"] == pytest.approx([-4.0]) and posthoc["interval"] is None  # one seed: no interval
    assert missing["seeds"] == [] and missing["mean"] is None and missing["deployed_fraction"] is None


def test_a_paired_verdict_needs_an_interval_that_excludes_zero():
    def paired(diffs):
        return {"variant": "v", "reference": "dprp 50%", "diffs": diffs,
                "mean": sum(diffs) / len(diffs) if diffs else None, "interval": S.mean_interval(diffs)}
    assert R.paired_verdict(paired([-1.9, -1.8, -2.0])).endswith("less accurate than dprp 50%")
    assert R.paired_verdict(paired([1.10, 1.12])).endswith("more accurate than dprp 50%")
    assert R.paired_verdict(paired([-3.0, 1.0])).endswith("not separated from dprp 50%")
    assert "one paired seed" in R.paired_verdict(paired([-5.0])) and "not decided" in R.paired_verdict(paired([-5.0]))
    assert R.paired_verdict(paired([])) == "v: not committed yet"


def test_the_paired_table_names_the_seeds_not_a_bare_number(capsys):
    def acc_row(variant, seeds, accs):
        return {"variant": variant, "seeds": seeds, "test_acc_values": accs, "deployed_fraction": 0.5}
    report = {"rows": [acc_row("dprp 50%", [0, 1], [0.85, 0.86]), acc_row("thin dense", [0], [0.84]),
                       acc_row("posthoc", [0, 1], [0.83, 0.84])]}
    R.show_paired(report, "dprp 50%", ["thin dense", "posthoc", "svd-training"])
    lines = {line.split("  ")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "seed 0 " in lines["thin dense"] and "seeds 0, 1" in lines["posthoc"]
    assert "none yet" in lines["svd-training"]


def test_the_paper_length_set_is_its_own_table():
    paper = R.full_data_rows(ROOT / "results" / "runs", "cifar10-mirror", mode="paper")
    full = R.full_data_rows(ROOT / "results" / "runs", "cifar10-mirror")
    assert {r["epochs"] for r in paper["rows"]} <= {164} and {r["epochs"] for r in full["rows"]} == {30}
    assert not set(sum((r["runs"] for r in paper["rows"]), [])) & set(sum((r["runs"] for r in full["rows"]), []))
    assert len(paper["missing"]) + sum(len(r["seeds"]) for r in paper["rows"]) == 27
    with pytest.raises(ValueError, match="mode must be one of"):
        R.full_data_rows(mode="quick")


def test_progress_names_each_started_runs_precision(tmp_path):
    """A run keeps the precision it started in (amp="auto" finds it under either key): the progress
    table says which, since seeds of one set may differ."""
    import dataclasses
    import json

    from dprp_lib.engine import experiments as E

    configs = E.grid("paper-length", "paper")
    for name, amp in (("resnet20 dense | seed 0", True), ("resnet20 dense | seed 1", False)):
        folder = tmp_path / E.config_key(dataclasses.replace(configs[name], amp=amp))
        folder.mkdir()
        (folder / "checkpoint.pt").write_bytes(b"")  # in progress: a checkpoint, no summary
        (folder / "metrics.jsonl").write_text(json.dumps({"train_acc": 0.5, "val_acc": 0.4, "deployed_params": 269_722,
                                                          "processor": "a CPU"}) + "\n")
    rows = {r["run"]: r for r in R.progress_rows(R.progress("paper-length", tmp_path))}
    assert (rows["dense | seed 0"]["precision"], rows["dense | seed 1"]["precision"]) == ("bf16", "float32")
    assert rows["dense | seed 0"]["state"] == "in progress" and rows["dense | seed 0"]["epochs"] == "1 of 164"
    assert rows["dprp 50% | seed 2"]["precision"] == "—" and rows["dprp 50% | seed 2"]["state"] == "not started"


def test_jpeg_cost_pairs_each_lossless_run_with_its_jpeg_twin(tmp_path):
    """Fake run folders under the grids' keys: the changes are lossless minus JPEG, per seed."""
    import dataclasses
    import json

    from dprp_lib.engine import experiments as E

    def commit(config, summary):
        config = dataclasses.replace(config, amp=True)  # as trained here: bf16 (amp="auto" finds it)
        folder = tmp_path / E.config_key(config)
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config.to_dict()))
        (folder / "summary.json").write_text(json.dumps(summary))
        (folder / "metrics.jsonl").write_text("")

    twins = E.grid("08_resnet20_cifar10", "full", dataset="cifar10-mirror")
    for s in (0, 1):
        name = f"resnet20 dense | seed {s}"
        commit(E.grid("jpeg-cost", "full")[name], {"val_acc": 0.90 + s / 100, "test_acc": 0.91,
                                                     "test:jpeg 10000_acc": 0.88, "test:jpeg 0-999_acc": 0.89})
        commit(twins[name], {"val_acc": 0.87, "test_acc": 0.86 + s / 100})
    cost = R.jpeg_cost(tmp_path)
    dense = cost["paired"]["resnet20 dense"]
    assert dense["val"]["values"] == pytest.approx([3.0, 4.0]) and dense["val"]["interval"] is not None
    assert dense["jpeg_test"]["values"] == pytest.approx([2.0, 1.0])
    assert dense["encoding_0_999"]["values"] == pytest.approx([2.0, 2.0])
    assert [r["lossless_test_acc"] for r in cost["rows"]] == pytest.approx([91.0, 91.0])  # official images 0-999
    assert cost["paired"]["resnet20 dprp 94%"]["val"]["values"] == []
    assert {"resnet20 dense | seed 2 (lossless)", "resnet20 dprp 94% | seed 0 (JPEG twin)"} <= set(cost["missing"])
    rows = {r["variant"]: r for r in R.jpeg_cost_rows(cost)}
    val = R.JPEG_COST_READINGS["val"]
    assert rows["dense"]["seeds"] == 2 and rows["dense"][val].startswith("+3.50 [") and rows["dense"][val].endswith("(+3.00, +4.00)")
    assert rows["dprp 94%"]["seeds"] == 0 and rows["dprp 94%"][val] == "—"
    page = R.with_sections("\n".join(R.markers("jpeg cost")), tmp_path)
    assert "+3.50 [" in page and "dense | seed 2 (lossless)" in page
    # In the committed results every JPEG twin is there: the twins are the full-data set's runs.
    assert not [m for m in R.jpeg_cost()["missing"] if m.endswith("(JPEG twin)")]


def test_the_lossless_table_pairs_validation_as_well_as_test_accuracy(tmp_path):
    """Fake finished runs of the paper-length set: validation changes are paired per seed like test ones."""
    import dataclasses
    import json

    from dprp_lib.engine import experiments as E

    configs = E.grid("paper-length", "paper")
    summaries = {"resnet20 dense | seed 0": (0.93, 0.92), "resnet20 dense | seed 1": (0.94, 0.93),
                 "resnet20 dprp 94% | seed 0": (0.925, 0.90), "resnet20 dprp 94% | seed 1": (0.93, 0.94)}
    for name, (val, test) in summaries.items():
        config = dataclasses.replace(configs[name], amp=True)
        folder = tmp_path / E.config_key(config)
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config.to_dict()))
        (folder / "metrics.jsonl").write_text("")
        (folder / "summary.json").write_text(json.dumps({
            "val_acc": val, "test_acc": test, "deployed_fraction": 1.0 if "dense" in name else 0.9,
            "macs_fraction": 1.0, "total_rank": 1, "time": 10.0, "dataset": "lossless", "train_images": 45_000,
            "test_images": 1_000, "device": "cpu", "amp": "bf16", "compile": False, "deployed_params": 1,
            "dense_params": 1}))
    report = R.full_data_rows(tmp_path, None, "paper", "paper-length")
    dprp = next(r for r in report["rows"] if r["variant"] == "dprp 94%")
    assert dprp["val_deltas"] == pytest.approx([-0.5, -1.0]) and dprp["deltas"] == pytest.approx([-2.0, 1.0])
    assert dprp["val_interval"] == pytest.approx(S.mean_interval([-0.5, -1.0]))
    shown = {r["variant"]: r for r in R.display_rows(report, validation=True)}
    assert shown["dprp 94%"]["Δ val (points)"] == "-0.75" and shown["dprp 94%"]["Δ test (points)"] == "-0.50"
    assert shown["dense"]["val acc %"] == "93.50 ± 0.71" and shown["dense"]["Δ val (points)"] == "—"
    assert "val acc %" not in R.display_rows(report)[0]  # the JPEG set's tables keep their columns
