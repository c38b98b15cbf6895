"""Run keys, the parallel launcher and the collector, and the GPU-oriented options on the CPU."""
import dataclasses
import json
import math
from pathlib import Path

import pytest

from dprp_lib.engine import experiments as E
from dprp_lib.engine import launcher as L
from dprp_lib.engine.train import fit
from conftest import write_fashion_mnist
from test_train import DATA_DIR, small


def test_config_key_follows_what_changes_the_result():
    base = E.preset("quick")
    assert E.config_key(base) == E.config_key(dataclasses.replace(base, out_dir="x", device="cuda", compile=True,
                                                                  channels_last=False))
    assert E.config_key(base) != E.config_key(dataclasses.replace(base, lr=0.05))
    assert E.config_key(base) != E.config_key(dataclasses.replace(base, amp=True))


def test_grids_share_runs_across_chapters():
    quick = {ch: {E.config_key(c) for c in E.grid(ch, "quick").values()} for ch in E.CHAPTER_GRIDS}
    assert E.config_key(E.preset("quick")) in quick["05_sparsity"] & quick["06_dynamic_rank_pruning"] & quick["07_ablations"]
    ablations = {E.config_key(c) for n, c in E.grid("07_ablations", "quick").items() if not n.startswith("none")}
    assert ablations <= quick["08_resnet20_cifar10"]  # the reproduction set holds each penalty removed in turn



def test_full_data_set_has_the_runs_and_seeds_the_question_needs():
    runs = E.grid("08_resnet20_cifar10", "full")
    seeds = {}
    for name in runs:
        seeds.setdefault(E.variant_of(name), []).append(runs[name].seed)
    assert all(len(s) >= 3 for v, s in seeds.items() if v == "resnet20 dense" or v.startswith("resnet20 dprp ") and "no" not in v)
    assert all(len(s) >= 2 for s in seeds.values()) and len(seeds) == 11
    configs = list(runs.values())
    assert all(c.holdout == 5000 and c.amp == "auto" and c.train_per_class is None for c in configs)
    assert len({(c.lr, c.batch_size, c.label_smoothing, c.weight_decay, c.epochs + c.finetune_epochs) for c in configs}) == 1
    one_shot = [c for c in configs if c.method in ("svd-training", "posthoc")]
    assert one_shot and all(c.cut_to == 0.5 and c.finetune_epochs == 2 for c in one_shot)
    assert E.grid("08_resnet20_cifar10", "full", seeds=[1]).keys() <= runs.keys()


def test_paper_mode_is_the_full_set_at_the_papers_length():
    from dprp_lib.method.pruning import PruneSchedule

    full, paper = E.grid("08_resnet20_cifar10", "full"), E.grid("08_resnet20_cifar10", "paper")
    assert full.keys() == paper.keys()
    for name in full:
        f, p = full[name], paper[name]
        assert p.epochs + p.finetune_epochs == 164 and f.epochs + f.finetune_epochs == 30, name
        assert dataclasses.replace(p, epochs=f.epochs, prune_warmup=f.prune_warmup, prune_every=f.prune_every,
                                   prune_stop=f.prune_stop) == f, name  # nothing else differs
    def cuts(c):
        schedule = PruneSchedule(c.prune_warmup, c.prune_every, c.prune_stop)
        return [e for e in range(1, c.epochs + 1) if schedule.due(e)]
    f, p = E.preset("full"), E.preset("paper")
    assert len(cuts(p)) == len(cuts(f)) == 12
    assert abs(cuts(p)[-1] / p.epochs - cuts(f)[-1] / f.epochs) < 0.01  # the last cut as far into training


def test_variants_pick_runs_in_the_order_given(tmp_path, capsys, monkeypatch):
    common = ["08_resnet20_cifar10", "--mode", "paper", "--threads", "1", "--max-runs", "0", "--results", str(tmp_path)]
    launched = []
    monkeypatch.setattr(L, "launch", lambda configs, *a, **k: launched.append(list(configs)) or {})
    assert L.main(common + ["--variants", "resnet20 dprp 94%", "resnet20 dense"]) == 0
    assert launched == [[f"resnet20 {v} | seed {s}" for v in ("dprp 94%", "dense") for s in (0, 1, 2)]]
    with pytest.raises(SystemExit):
        L.main(common + ["--variants", "dense"])
    assert "--variants: ['dense'] not in the 08_resnet20_cifar10 grid" in capsys.readouterr().err


def test_committed_runs_keep_their_keys():
    from dprp_lib.paths import RESULTS

    folders = [p for p in RESULTS.iterdir() if (p / "config.json").is_file()]
    assert folders
    for folder in folders:
        config = E.TrainConfig.from_dict(json.loads((folder / "config.json").read_text()))
        assert E.config_key(config) == folder.name, folder


def test_amp_auto_finds_runs_in_either_precision_and_resumes_in_its_own(tmp_path, monkeypatch):
    from dprp_lib.engine import runs

    config = E.preset("smoke", amp="auto")
    monkeypatch.setattr(runs, "choose_amp", lambda device: False)
    assert runs.definite(config, tmp_path).amp is False  # nothing started: this machine's fast path
    started = tmp_path / E.config_key(dataclasses.replace(config, amp=True))
    started.mkdir()
    (started / "checkpoint.pt").write_bytes(b"")  # a run started in bf16 on another machine
    assert runs.definite(config, tmp_path).amp is True
    assert runs.definite(dataclasses.replace(config, amp=False), tmp_path).amp is False  # explicit stays
    # The committed full-data set (trained in bf16) is found by the auto presets on any machine.
    monkeypatch.setattr(runs, "choose_amp", lambda device: False)
    table = E.collect("08_resnet20_cifar10", "full", dataset="cifar10-mirror")
    assert table["missing"] == [] and sum(len(r["seeds"]) for r in table["rows"]) == 27


def test_paper_length_and_jpeg_cost_sets_are_on_the_lossless_images():
    paper, cost = E.grid("paper-length", "paper"), E.grid("jpeg-cost", "full")
    assert list(paper)[:3] == [f"resnet20 {v} | seed 0" for v in ("dense", "dprp 94%", "dprp 50%")]  # seed 0 first
    assert len(paper) == 9 and len(cost) == 6
    for c in [*paper.values(), *cost.values()]:
        assert c.dataset == "cifar10-lossless" and c.holdout == 5000 and c.amp == "auto" and c.batch_size == 128
    assert {c.epochs for c in paper.values()} == {164} and {c.epochs for c in cost.values()} == {30}
    assert {c.energy for c in paper.values() if c.method == "dprp"} == {E.DPRP_POINTS["94%"], E.DPRP_POINTS["50%"]}
    # Each 30-epoch lossless run is the twin of a committed JPEG-mirror run: only the data set differs.
    jpeg = E.grid("08_resnet20_cifar10", "full", dataset="cifar10-mirror")
    for name, c in cost.items():
        assert dataclasses.replace(jpeg[name], dataset="cifar10-lossless") == c, name


def test_svd_training_preset_fine_tunes_within_the_same_length():
    for mode in E.MODES:
        plain, svd = E.preset(mode), E.preset(mode, method="svd-training")
        assert svd.epochs >= 1 and svd.finetune_epochs >= 1 and svd.epochs + svd.finetune_epochs == plain.epochs
    assert E.preset("quick", method="svd-training", epochs=5).finetune_epochs == 0  # explicit epochs are kept as given


@pytest.mark.slow
def test_launch_trains_a_run_with_two_names_once(tmp_path):
    config = dataclasses.replace(E.preset("smoke"), data_dir=str(E.paths.DATA), epochs=1)
    lines = []
    codes = L.launch({"orth=1": config, "sort=1": config}, tmp_path, parallel=2, threads=1, log=lines.append)
    assert codes == {"orth=1": 0} and lines[0].startswith("0 of 1 runs already")  # one process, not two
    assert (tmp_path / E.config_key(config) / "summary.json").is_file()
    assert L.launch({"orth=1": config, "sort=1": config}, tmp_path, parallel=2, log=lines.append) == {}
    assert lines[-1].startswith("1 of 1 runs already")


def test_launch_prepares_each_data_set_once_before_starting_processes(tmp_path, monkeypatch):
    configs = {f"tiny | seed {s}": dataclasses.replace(small(tmp_path), epochs=1, seed=s) for s in (0, 1, 2)}
    events = []
    monkeypatch.setattr(L, "load_dataset", lambda *a: events.append(("data", a)))
    monkeypatch.setattr(L, "other_test_sets", lambda *a: events.append(("other encodings", a)))

    class Finished:  # a training process that has already exited
        returncode = 0

        def __init__(self, cmd, **kw):
            events.append(("train", cmd[-1]))

        def poll(self):
            return 0

    monkeypatch.setattr(L.subprocess, "Popen", Finished)
    codes = L.launch(configs, tmp_path / "results", parallel=3, log=lambda line: None)
    assert codes == {name: 0 for name in configs}
    c = configs["tiny | seed 0"]
    assert events[0] == ("data", (c.dataset, c.data_dir, c.data_source))
    assert [kind for kind, _ in events] == ["data", "other encodings", "train", "train", "train"]


@pytest.mark.slow
def test_launch_trains_in_parallel_processes_then_collects(tmp_path, monkeypatch):
    configs = {f"tiny | seed {s}": dataclasses.replace(small(tmp_path), epochs=1, seed=s) for s in (0, 1)}
    lines = []
    assert L.launch(configs, tmp_path / "results", parallel=2, log=lines.append, limit=1) == {"tiny | seed 0": 0}
    assert "training 1 of the 2 missing" in lines[0]
    assert L.launch(configs, tmp_path / "results", parallel=2, log=lines.append) == {"tiny | seed 1": 0}
    assert L.launch(configs, tmp_path / "results", parallel=2, log=lines.append) == {}  # nothing left to do
    assert "2 of 2 runs already" in lines[-1]
    monkeypatch.setattr(E, "grid", lambda chapter, mode, dataset=None: configs)
    table = E.collect("any", "smoke", tmp_path / "results")
    (row,) = table["rows"]
    assert row["variant"] == "tiny" and row["seeds"] == [0, 1] and table["missing"] == []
    assert row["dataset"] == "CIFAR-10 (JPEG mirror)" and len(row["test_acc_values"]) == 2


@pytest.mark.slow
def test_bf16_autocast_and_compile_run_on_the_cpu_through_a_cut(tmp_path, monkeypatch):
    # The engine's path, not the network's: the four-layer CNN on Fashion-MNIST-shaped images
    # (random) compiles in half the time of a ResNet-20 where inductor's cache is cold (as in CI).
    write_fashion_mnist(tmp_path / "fm", train=200, test=100)
    monkeypatch.setenv("DPRP_FASHION_MNIST_DIR", str(tmp_path / "fm"))
    summary = fit(dataclasses.replace(E.preset("smoke", data_dir=str(tmp_path / "data")), out_dir=str(tmp_path / "run"),
                                      device="cpu", amp=True, compile=True, dataset="fashion-mnist", model="small_cnn"))
    assert summary["amp"] == "bf16" and summary["compile"] is True
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert history[0]["pruned"] and math.isfinite(history[-1]["train_loss"])  # cut, then trained on


def test_a_run_wanted_twice_at_once_is_trained_once(tmp_path, monkeypatch):
    """Two kernels (or test workers) that need the same run at the same time: one trains it, the
    other waits for it and loads what it wrote."""
    import threading
    import time

    write_fashion_mnist(tmp_path / "fm", train=200, test=100)
    monkeypatch.setenv("DPRP_FASHION_MNIST_DIR", str(tmp_path / "fm"))
    config = E.preset("smoke", dataset="fashion-mnist", model="small_cnn", device="cpu")
    trained = []

    def slow_fit(c):
        trained.append(c.out_dir)
        time.sleep(0.5)  # the other arrives while this one trains
        return fit(c)

    monkeypatch.setattr(E, "fit", slow_fit)
    got, said = [None, None], []

    def want(i):
        got[i] = E.run_or_load(config, results=tmp_path / "results", scratch=tmp_path / "scratch", log=said.append,
                               data_dir=tmp_path / "data")

    threads = [threading.Thread(target=want, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert trained == [str(tmp_path / "scratch" / E.config_key(got[0].config))]
    assert sorted(r.loaded for r in got) == [False, True] and got[0].summary == got[1].summary
    assert sorted(line.split()[0] for line in said) == ["training", "waiting:"]  # the one that waits says why


def test_cut_drops_and_epoch_noise_read_a_history():
    history = [{"epoch": 1, "test_acc": 0.30}, {"epoch": 2, "test_acc": 0.40},
               {"epoch": 3, "test_acc_before_cut": 0.50, "test_acc": 0.40, "test_acc_before_cut_recalibrated": 0.55,
                "test_acc_after_cut_recalibrated": 0.53},
               {"epoch": 4, "test_acc_before_cut": 0.52, "test_acc": 0.50, "test_acc_before_cut_recalibrated": 0.56,
                "test_acc_after_cut_recalibrated": 0.56},
               {"epoch": 5, "test_acc": 0.55}]
    d = E.cut_drops(history)
    # raw: (10 + 2) / 2 points; re-estimated on both sides of each cut: (2 + 0) / 2
    assert d["cuts"] == 2 and abs(d["raw"] - 6.0) < 1e-9 and abs(d["recalibrated"] - 1.0) < 1e-9
    old = [{k: v for k, v in h.items() if "recalibrated" not in k} for h in history]
    assert E.cut_drops(old)["recalibrated"] is None  # runs trained before the measurement existed
    # |Δ| over the last 2 epochs: |0.50 − 0.40| = 10, |0.55 − 0.50| = 5 points; median 7.5
    assert abs(E.epoch_noise(history, last=2) - 7.5) < 1e-9
