"""Run keys, the parallel launcher and the collector, and the GPU-oriented options on the CPU."""
import dataclasses
import math
import json

from dprp_lib import experiments as E
from dprp_lib.train import fit
from test_train import DATA_DIR, small


def test_config_key_follows_what_changes_the_result():
    base = E.preset("quick")
    assert E.config_key(base) == E.config_key(dataclasses.replace(base, out_dir="x", device="cuda", compile=True))
    assert E.config_key(base) != E.config_key(dataclasses.replace(base, lr=0.05))
    assert E.config_key(base) != E.config_key(dataclasses.replace(base, amp=True))


def test_grids_share_runs_across_chapters():
    quick = {ch: {E.config_key(c) for c in E.grid(ch, "quick").values()} for ch in E.CHAPTER_GRIDS}
    assert E.config_key(E.preset("quick")) in quick["05_sparsity"] & quick["06_dynamic_rank_pruning"] & quick["07_ablations"]
    ablations = {E.config_key(c) for n, c in E.grid("07_ablations", "quick").items() if not n.startswith("none")}
    assert ablations <= quick["08_resnet20_cifar10"]  # the reproduction set holds each penalty removed in turn
    assert len(E.grid("08_resnet20_cifar10", "full")) == 33  # ResNet-20: 9 variants, ResNet-32: 2; 3 seeds


def test_svd_training_preset_fine_tunes_within_the_same_length():
    for mode in E.MODES:
        plain, svd = E.preset(mode), E.preset(mode, method="svd-training")
        assert svd.epochs >= 1 and svd.finetune_epochs >= 1 and svd.epochs + svd.finetune_epochs == plain.epochs
    assert E.preset("quick", method="svd-training", epochs=5).finetune_epochs == 0  # explicit epochs are kept as given


def test_launch_trains_in_parallel_processes_then_collects(tmp_path, monkeypatch):
    configs = {f"tiny | seed {s}": dataclasses.replace(small(tmp_path), epochs=1, seed=s) for s in (0, 1)}
    lines = []
    codes = E.launch(configs, tmp_path / "results", parallel=2, log=lines.append)
    assert codes == {"tiny | seed 0": 0, "tiny | seed 1": 0}
    assert E.launch(configs, tmp_path / "results", parallel=2, log=lines.append) == {}  # nothing left to do
    assert "2 of 2 runs already" in lines[-1]
    monkeypatch.setattr(E, "grid", lambda chapter, mode, dataset=None: configs)
    table = E.collect("any", "smoke", tmp_path / "results")
    (row,) = table["rows"]
    assert row["variant"] == "tiny" and row["seeds"] == [0, 1] and table["missing"] == []
    assert row["dataset"] == "CIFAR-10 (JPEG mirror)" and len(row["test_acc_values"]) == 2


def test_bf16_autocast_and_compile_run_on_the_cpu_through_a_cut(tmp_path):
    summary = fit(dataclasses.replace(E.preset("smoke", data_dir=DATA_DIR), out_dir=str(tmp_path / "run"),
                                      device="cpu", amp=True, compile=True, dataset="cifar10-mirror"))
    assert summary["amp"] == "bf16" and summary["compile"] is True
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert history[0]["pruned"] and math.isfinite(history[-1]["train_loss"])  # cut, then trained on
