import json
import sys
from pathlib import Path

import pytest
import torch

import dprp_lib as dprp
import dprp_lib.__main__ as cli
from dprp_lib.engine import train as T
from dprp_lib.engine.runs import open_run
from conftest import require_lossless
from test_train import ROOT, small

sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.slow
def test_train_eval_export_runs(tmp_path, capsys):
    cfg = small(tmp_path, epochs=1)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert cli.main(["train", str(path), "--set", "epochs=2", "--set", "prune_every=1"]) == 0
    run = Path(cfg.out_dir)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2
    capsys.readouterr()

    assert cli.main(["eval", str(run)]) == 0
    assert f"{summary['test_acc']:.2%}" in capsys.readouterr().out  # eval reproduces the run's accuracy

    # The same model on the official test images 0-999, lossless (another encoding than its own)
    require_lossless()
    assert cli.main(["eval", str(run), "--on", "lossless 0-999"]) == 0
    out = capsys.readouterr().out
    assert "on CIFAR-10, official test images 0-999 (lossless)" in out and "over 1000 images" in out

    assert cli.main(["export", str(run), "-o", str(tmp_path / "small.pt2"), "--forms", "count"]) == 0
    program = torch.export.load(tmp_path / "small.pt2").module()
    model = open_run(run).model().eval()
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(program(x), model(x), rtol=1e-4, atol=1e-4)
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert sum(p.numel() for p in program.parameters()) == dprp.deployed_params(model) - bn_channels  # BN folded

    ort = pytest.importorskip("onnxruntime")
    assert cli.main(["export", str(run), "-o", str(tmp_path / "small.onnx"), "--tune-batch", "1", "--check-stages"]) == 0
    saved = json.loads((tmp_path / "small.onnx.deployment.json").read_text())
    assert saved["runtime"] == "onnxruntime" and saved["batch"] == 1 and saved["stage_check_seconds"] is not None
    if set(saved["forms"].values()) != {"dense"}:  # a factored deployment was timed against every layer dense
        assert saved["stage_check_seconds"]["every layer dense"] > 0
    (out,) = ort.InferenceSession(str(tmp_path / "small.onnx")).run(None, {"images": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), model(x).detach(), rtol=1e-4, atol=1e-4)

    assert cli.main(["runs", str(run)]) == 0
    assert "CIFAR-10 (JPEG mirror)" in capsys.readouterr().out
    (tmp_path / "in-progress").mkdir()  # a glob over a runs folder also picks up unfinished runs
    assert cli.main(["runs", str(run), str(tmp_path / "in-progress")]) == 0
    out, err = capsys.readouterr()
    assert "CIFAR-10 (JPEG mirror)" in out and "skipped" in err and "in-progress" in err


def test_cli_errors_are_one_line_messages(tmp_path, capsys):
    assert cli.main(["train", str(ROOT / "configs/resnet20_cifar10_dprp.json"), "--set", "lr=-1"]) == 2
    assert "lr" in capsys.readouterr().err
    assert cli.main(["runs", str(tmp_path)]) == 2
    assert "summary.json" in capsys.readouterr().err
    assert cli.main(["eval", str(tmp_path / "none.pt")]) == 2

    # compact: not a run's checkpoint, or an unknown format, is named in one line
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pt")
    capsys.readouterr()
    for bad in ("notes.pt", "foreign.pt"):
        assert cli.main(["export", str(tmp_path / bad), "-o", str(tmp_path / "m.onnx")]) == 2
        err = capsys.readouterr().err
        assert bad in err and "checkpoint" in err and "\n" not in err.strip()
    assert cli.main(["export", str(tmp_path / "foreign.pt"), "-o", str(tmp_path / "m.tflite")]) == 2
    assert ".onnx" in capsys.readouterr().err
    for file, runtime in (("m.onnx", "compiled"), ("m.pt2", "onnxruntime")):  # a runtime that cannot run the file
        assert cli.main(["export", str(tmp_path / "foreign.pt"), "-o", str(tmp_path / file), "--runtime", runtime]) == 2
        err = capsys.readouterr().err
        assert file in err and runtime in err
    assert not (tmp_path / "m.onnx").exists()


def test_one_dprp_command_with_every_subcommand(capsys):
    """The installed console script is the same parser as `python -m dprp_lib`, and the commands
    with a parser of their own (grid, report, course, release) are reached through it."""
    import subprocess

    script = Path(sys.executable).with_name("dprp")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("train", "eval", "export", "runs", "grid", "report", "course", "release", "demo"):
        assert f"dprp {command}" in out, command
    for command in ("grid", "report", "course", "release"):
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, "--help"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: dprp {command}"), command
    assert cli.main(["report", "--dataset", "cifar10-mirror"]) == 0  # the committed full-data table
    assert "| dense |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["compact", "run"])  # the old name is gone: one name for each thing
    from dprp_lib.method.deployment import RUNTIMES

    export = cli._parser().parse_args(["export", "run", "-o", "m.pt2", "--runtime", "compiled"])
    assert export.runtime == "compiled"
    (runtime,) = [a for a in cli._parser()._subparsers._group_actions[0].choices["export"]._actions
                  if a.dest == "runtime"]
    assert tuple(runtime.choices) == RUNTIMES  # the command offers every runtime deploy() times in


@pytest.mark.slow
def test_speed_benchmark_writes_its_ratios(tmp_path, capsys):
    import speed

    result = speed.main(["--batch-size", "8", "--repeats", "1", "--rounds", "1", "--device", "cpu",
                         "--out", str(tmp_path / "speed.json")])
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert set(saved["ratios"]) == set(result["ratios"]) >= {"dprp_full_rank_step_vs_dense",
                                                             "data_pipeline_share_of_epoch"}
    assert 0 < saved["ratios"]["small_params_vs_dense"] <= 0.5
    assert "half rank, measured forms" in capsys.readouterr().out


@pytest.mark.slow
def test_deploy_benchmark_writes_its_ratios(tmp_path, capsys):
    """End to end at one batch size (each ResNet-20 deployment is exported to ONNX: seconds each);
    the choices across batch sizes are `summarize`'s, checked below on timings made up for it."""
    import deploy

    result = deploy.main(["--batches", "1", "--runtimes", "eager", "onnxruntime_stage_checked", "--round-s", "0.01",
                          "--rounds", "1", "--threads", "1", "--out", str(tmp_path / "deploy.json")])
    saved = json.loads((tmp_path / "deploy.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert set(saved["sizes"]) == {"~75%", "~50%", "~30%"}
    for name, size in saved["sizes"].items():  # each size is near its target and smaller than dense
        assert abs(size["deployed_fraction"] - int(name[1:-1]) / 100) <= 0.1 and size["params_vs_dense"] < 1
    assert set(saved["speedup_vs_dense"]) == {"eager", "onnxruntime_stage_checked"}
    assert all(set(by) == {"1"} for by in saved["speedup_vs_dense"].values())
    goal = saved["goals"]["1"]  # the row of the runtime where dense was fastest
    assert goal["row"] == {"eager": "eager", "onnxruntime": "onnxruntime_stage_checked"}[goal["runtime"]]
    assert goal["speedups"] == {n: saved["speedup_vs_dense"][goal["row"]]["1"][n] for n in ("~50%", "~30%")}
    assert set(saved["best"]) == {"1"} and set(saved["layers_50pct"]) == {"eager", "onnxruntime"}
    assert all(len(rows) == 20 for rows in saved["layers_50pct"].values())
    out = capsys.readouterr().out
    assert "speed-up over dense in the same runtime" in out and ("NOT met" in out or "MET" in out)


def test_deploy_summary_reads_goals_in_the_runtime_where_dense_is_fastest():
    import deploy

    sizes = {"~75%": {"fraction": 0.74}, "~50%": {"fraction": 0.49}, "~30%": {"fraction": 0.31}}
    rows = ["eager", "onnxruntime", "onnxruntime_stage_checked", "onnxruntime_counted_forms"]
    ms = {  # batch 1: dense fastest in ONNX Runtime; batch 4 (no goal there): in eager
        "eager": {"1": (2.0, 1.9, 1.5, 1.2), "4": (4.0, 3.0, 2.0, 1.0)},
        "onnxruntime": {"1": (1.0, 1.0, 0.9, 0.8), "4": (5.0, 4.0, 3.0, 2.5)},
        "onnxruntime_stage_checked": {"1": (1.1, 1.0, 1.05, 0.9), "4": (5.0, 4.0, 3.0, 2.5)},
        "onnxruntime_counted_forms": {"1": (1.0, 0.1, 0.1, 0.1), "4": (5.0, 0.1, 0.1, 0.1)},  # a comparison, never picked
    }
    seconds = {rt: {b: dict(zip(["dense", *sizes], v)) for b, v in by.items()} for rt, by in ms.items()}
    speedups, best, goals = deploy.summarize(seconds, sizes, [1, 4], rows)
    assert speedups["eager"]["4"]["~30%"] == 4.0
    assert set(goals) == {"1"}  # a goal only at the batch sizes that have one
    goal = goals["1"]  # ONNX Runtime, read in its stage-checked row, at <= 50% of the parameters
    assert (goal["runtime"], goal["row"]) == ("onnxruntime", "onnxruntime_stage_checked")
    assert goal["speedups"] == {"~50%": 1.1 / 1.05, "~30%": 1.1 / 0.9} and goal["met"] is False  # 1.05x < 1.1x
    # the fastest deployment of each size against dense where dense is fastest (ONNX Runtime at 1, eager at 4)
    assert best["1"]["~30%"] == {"row": "onnxruntime", "speedup_vs_fastest_dense": 1.0 / 0.8}
    assert best["4"]["~30%"] == {"row": "eager", "speedup_vs_fastest_dense": 4.0 / 1.0}


@pytest.mark.slow
def test_eval_on_a_test_set_that_is_not_configured_says_what_is_missing(tmp_path, capsys, monkeypatch):
    cfg = small(tmp_path, epochs=1, train_per_class=10, test_per_class=5)
    T.fit(cfg)
    monkeypatch.delenv("DPRP_CIFAR10_LOSSLESS", raising=False)
    assert cli.main(["eval", cfg.out_dir, "--on", "jpeg 0-999"]) == 2
    err = capsys.readouterr().err
    assert "test set 'jpeg 0-999' is not available" in err and "DPRP_CIFAR10_LOSSLESS" in err
