import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dprp_lib as dprp
from dprp_lib.engine import data as D, runs, train as T
from dprp_lib.engine.config import TrainConfig
from conftest import require_mirror

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = str(ROOT / "data")
VARYING = {"time", "epoch_time"}  # wall-clock fields; everything else must repeat exactly


def small(tmp_path, name="run", **kw) -> TrainConfig:
    """A real but tiny run: a half-width ResNet-20 (8/16/32 channels) on 300 training and 100 test
    images of the CIFAR-10 JPEG mirror. These tests check mechanics, not accuracy: a fit's cost is
    nearly all per image (300 images: 45% cheaper a fit than 600), and the loss still falls."""
    require_mirror()
    values = dict(method="dprp", model="resnet20", width=0.5, dataset="cifar10-mirror", data_dir=DATA_DIR,
                  train_per_class=30, test_per_class=10, epochs=2, batch_size=50, lr=0.05,
                  schedule="constant", sparse=5e-3, energy=0.02, prune_warmup=1, prune_every=1,
                  device="cpu", progress=False, out_dir=str(tmp_path / name))
    values.update(kw)
    return TrainConfig(**values)


def rows(run_dir):
    return [json.loads(line) for line in Path(run_dir, "metrics.jsonl").read_text().splitlines()]


def stable(history):
    return [{k: v for k, v in r.items() if k not in VARYING} for r in history]


def interrupt_after_first_epoch(cfg) -> None:
    """Start `cfg`'s run and stop it as if killed once its first epoch is saved."""
    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        T.fit(cfg, on_epoch_end=interrupt)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted 3-epoch DPRP run, shared by the tests that compare against it."""
    cfg = small(tmp_path_factory.mktemp("ref"), epochs=3)
    summary = T.fit(cfg)
    return cfg, summary, rows(cfg.out_dir)


@pytest.mark.slow
def test_a_run_learns_prunes_and_writes_its_files(reference):
    cfg, summary, history = reference
    out = Path(cfg.out_dir)
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"}
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert {"train_acc", "test_acc", "orth", "sort", "sparse", "params", "deployed_params", "macs",
            "ranks", "time", "lr"} <= set(history[0])
    assert summary["dataset"] == "CIFAR-10 (JPEG mirror)" and summary["seed"] == 0
    # strong sparsity: ranks fell, and with them the parameter count
    assert summary["total_rank"] < summary["full_rank"]
    assert history[-1]["params"] < history[0]["params"] < 76_632  # below the full-rank count
    assert json.loads((out / "summary.json").read_text())["test_acc"] == summary["test_acc"]


@pytest.mark.slow
def test_same_seed_gives_the_same_metrics(reference, tmp_path):
    cfg, _, history = reference
    T.fit(small(tmp_path, epochs=2))
    assert stable(rows(tmp_path / "run")) == stable(history[:2])


@pytest.mark.slow
def test_final_checkpoint_reloads_into_a_fresh_model(reference):
    cfg, summary, _ = reference
    run = runs.load_run(cfg.out_dir)
    ckpt, model = run.checkpoint(), run.model()
    assert {n: l.rank for n, l in dprp.svd_layers(model)} == summary["ranks"]
    data = D.load_dataset("cifar10-mirror", DATA_DIR).subset(None, cfg.test_per_class)
    norm = ckpt["normalization"]
    loader = D.BatchLoader(data.test_x, data.test_y, 100, norm["mean"], norm["std"], train=False)
    assert T.evaluate(model, loader)["test_acc"] == pytest.approx(summary["test_acc"])


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_result(reference, tmp_path):
    _, summary, history = reference
    cfg = small(tmp_path, epochs=3)
    interrupt_after_first_epoch(cfg)
    assert len(rows(cfg.out_dir)) == 1
    with pytest.raises(T.RunExists):
        T.fit(cfg)  # a new run would overwrite the saved one
    cfg.resume = True
    resumed = T.fit(cfg)
    assert stable(rows(cfg.out_dir)) == stable(history)
    assert resumed["test_acc"] == summary["test_acc"] and resumed["ranks"] == summary["ranks"]


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_result(reference, tmp_path):
    _, summary, history = reference
    cfg = small(tmp_path, epochs=3)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    cmd = [sys.executable, "-m", "dprp_lib", "train", str(path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = Path(cfg.out_dir) / "metrics.jsonl"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            proc.send_signal(signal.SIGKILL)  # no chance to clean up
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert 1 <= len(rows(cfg.out_dir)) < 3
    done = subprocess.run(cmd + ["--set", "resume=true"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert stable(rows(cfg.out_dir)) == stable(history)


@pytest.mark.slow
def test_a_committed_checkpoint_resumes_elsewhere_through_the_launcher(reference, tmp_path):
    """What a campaign commits of an unfinished run (config, metrics, checkpoint; no launch spec),
    copied to another clone's results/, is resumed there by the launcher to the uninterrupted result."""
    import shutil

    from dprp_lib.engine import experiments as E, launcher as L

    _, summary, history = reference
    cfg = small(tmp_path, epochs=3)
    cfg.out_dir = str(tmp_path / "campaign" / E.config_key(cfg))
    interrupt_after_first_epoch(cfg)
    assert L.snapshot({"tiny": cfg}, tmp_path / "campaign", tmp_path / "clone", log=None) == [E.config_key(cfg)]
    clone = tmp_path / "clone" / E.config_key(cfg)
    campaign = json.loads(Path(cfg.out_dir, "config.json").read_text())
    # the copy's config is the campaign's, recording where the copy lives, not the campaign's folder
    assert json.loads((clone / "config.json").read_text()) == {**campaign, "out_dir": str(clone)}
    shutil.rmtree(tmp_path / "campaign")  # the first machine is gone
    assert sorted(p.name for p in clone.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl"]
    assert L.launch({"tiny": cfg}, tmp_path / "clone", parallel=1, threads=torch.get_num_threads(),
                    log=lambda line: None) == {"tiny": 0}
    assert stable(rows(clone)) == stable(history)
    assert json.loads((clone / "summary.json").read_text())["test_acc"] == summary["test_acc"]


@pytest.mark.slow
def test_amp_auto_is_settled_when_a_run_starts_and_kept_when_it_resumes(reference, tmp_path, monkeypatch):
    _, _, history = reference
    monkeypatch.setattr(T, "choose_amp", lambda device: False)  # a machine without native bf16
    cfg = small(tmp_path, epochs=3, amp="auto")
    interrupt_after_first_epoch(cfg)
    assert json.loads(Path(cfg.out_dir, "config.json").read_text())["amp"] is False
    monkeypatch.setattr(T, "choose_amp", lambda device: True)  # resumed where bf16 is native
    cfg.resume = True
    resumed = T.fit(cfg)
    assert resumed["amp"] == "off"  # in the precision it started with, to the float32 run's result
    assert stable(rows(cfg.out_dir)) == stable(history)
    fresh = T.fit(small(tmp_path, "fresh", epochs=1, amp="auto"))  # a run starting there takes bf16
    assert fresh["amp"] == "bf16" and fresh["processors"] == [T.processor()]


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = small(tmp_path, method="dense", epochs=3)
    real = T.lr_at
    monkeypatch.setattr(T, "lr_at", lambda c, epoch, *a: 1e30 if epoch == 2 else real(c, epoch, *a))
    with pytest.raises(T.NonFiniteLoss, match="epoch 2"):
        T.fit(cfg)
    ckpt = torch.load(Path(cfg.out_dir) / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len(rows(cfg.out_dir)) == 1


@pytest.mark.slow
def test_svd_training_cuts_once_then_fine_tunes(tmp_path):
    cfg = small(tmp_path, method="svd-training", epochs=2, finetune_epochs=1, energy=0.05)
    summary = T.fit(cfg)
    history = rows(cfg.out_dir)
    assert [r["phase"] for r in history] == ["train", "train", "finetune"]
    assert [bool(r["pruned"]) for r in history] == [False, True, False]  # one cut, at the end of training
    assert summary["total_rank"] < summary["full_rank"]
    assert history[-1]["lr"] < cfg.lr


@pytest.mark.slow
def test_posthoc_trains_dense_then_truncates(tmp_path):
    summary = T.fit(small(tmp_path, method="posthoc", epochs=2, energy=0.05))
    history = rows(tmp_path / "run")
    assert history[0]["ranks"] == {} and history[0]["orth"] == 0
    assert "test_acc_before_cut" in summary and summary["total_rank"] < summary["full_rank"]


@pytest.mark.slow
def test_dense_and_dprp_share_data_order_and_initial_function(tmp_path):
    dense = small(tmp_path, "d", method="dense")
    factored = small(tmp_path, "f", method="dprp", orth=0.0, sort=0.0, sparse=0.0, prune_warmup=99)
    a, b = T.fit(dense), T.fit(factored)
    # same function at step 0, same batches: only the parametrisation differs, so the first
    # epoch's training loss agrees closely (not exactly: the gradient steps differ)
    ra, rb = rows(dense.out_dir)[0], rows(factored.out_dir)[0]
    assert abs(ra["train_loss"] - rb["train_loss"]) < 0.1
    assert a["dense_params"] == b["dense_params"] == 269_722


def test_learning_rate_schedules():
    cfg = TrainConfig(epochs=100, lr=0.1, schedule="step", milestones=[0.5, 0.75])
    assert T.lr_at(cfg, 50, 0, 10) == pytest.approx(0.1)
    assert T.lr_at(cfg, 51, 0, 10) == pytest.approx(0.01)
    assert T.lr_at(cfg, 76, 0, 10) == pytest.approx(0.001)
    cos = TrainConfig(epochs=10, lr=0.1, schedule="cosine", warmup_epochs=1)
    assert T.lr_at(cos, 1, 0, 10) == 0.0 and T.lr_at(cos, 1, 5, 10) == pytest.approx(0.05)
    assert T.lr_at(cos, 2, 0, 10) == pytest.approx(0.1)
    assert T.lr_at(cos, 10, 9, 10) < 0.001
    ft = TrainConfig(method="svd-training", epochs=10, finetune_epochs=4, lr=0.1, gamma=0.1)
    assert T.lr_at(ft, 11, 0, 10) == pytest.approx(0.01)


def test_weight_decay_skips_u_and_v_by_default():
    model = dprp.svdify(dprp.models.resnet20())
    opt = T.make_optimizer(TrainConfig(weight_decay=5e-4), model)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    layer = model.layer1[0].conv1
    assert id(layer.s) in decayed and id(layer.U) not in decayed and id(layer.V) not in decayed
    assert id(model.bn1.weight) in decayed
    all_opt = T.make_optimizer(TrainConfig(weight_decay=5e-4, weight_decay_on="all"), model)
    assert len(all_opt.param_groups) == 1


@pytest.mark.parametrize("field,value,error", [
    ("model", "resnet21", ValueError), ("dataset", "imagenet", ValueError), ("method", "magic", ValueError),
    ("epochs", -1, ValueError), ("lr", -0.1, ValueError), ("lr", 0.0, ValueError),
    ("orth", -1.0, ValueError), ("sort", -1.0, ValueError), ("sparse", -1e-4, ValueError),
    ("energy", 1.0, ValueError), ("batch_size", 0, ValueError), ("sparse_kind", "l2", ValueError),
    ("epochs", "ten", TypeError), ("lr", True, TypeError), ("milestones", [1.5], ValueError),
    ("holdout", -10, ValueError), ("width", 0.0, ValueError), ("label_smoothing", 1.0, ValueError),
    ("cut_to", 1.5, ValueError), ("cut_to", 0.5, ValueError),  # the second: dprp has no single cut
    # choices come from the fields' Literal annotations; a value of the wrong type is a TypeError
    ("device", "tpu", ValueError), ("forms", "fastest", ValueError), ("schedule", "linear", ValueError),
    ("amp", "bf16", ValueError), ("amp", 1, TypeError), ("train_per_class", 2.5, TypeError),
    ("skip", "conv1", TypeError), ("nesterov", "yes", TypeError),
])
def test_bad_config_values_are_rejected_by_name(field, value, error, tmp_path):
    with pytest.raises(error, match=field):
        TrainConfig(**{field: value, "out_dir": str(tmp_path / "never")})
    assert not (tmp_path / "never").exists()


def test_svd_training_needs_a_main_phase_before_its_cut(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(method="svd-training", epochs=0, finetune_epochs=2)


def test_config_files_and_overrides(tmp_path):
    configs = sorted((ROOT / "configs").glob("*.json"))
    assert len(configs) == 10
    for path in configs:
        cfg = TrainConfig.load(path)
        assert cfg.method in ("dense", "dprp") and cfg.model in path.name
    cfg = TrainConfig.load(ROOT / "configs/resnet20_cifar10_dprp.json", ["epochs=3", "model=resnet32", "skip=[\"fc\"]"])
    assert (cfg.epochs, cfg.model, cfg.skip) == (3, "resnet32", ["fc"])
    with pytest.raises(ValueError, match="unknown config field"):
        TrainConfig.load(ROOT / "configs/resnet20_cifar10_dprp.json", ["epoch=3"])
    with pytest.raises(ValueError, match="key=value"):
        TrainConfig.load(ROOT / "configs/resnet20_cifar10_dprp.json", ["epochs"])


@pytest.mark.slow
def test_resume_refuses_a_different_config(reference, tmp_path):
    cfg, _, _ = reference
    changed = TrainConfig(**{**cfg.to_dict(), "lr": 0.2, "resume": True})
    with pytest.raises(ValueError, match="lr"):
        T.fit(changed)


@pytest.mark.slow
def test_a_validation_split_is_watched_each_epoch_and_the_test_set_read_once(tmp_path):
    cfg = small(tmp_path, method="dense", epochs=2, holdout=100, label_smoothing=0.1)
    summary = T.fit(cfg)
    history = rows(tmp_path / "run")
    assert all("val_acc" in r and "val_loss" in r for r in history)
    assert "test_acc" not in history[0] and "test_acc" in history[-1]  # test: after the last epoch only
    assert summary["val_images"] == 100 and summary["train_images"] == 10 * cfg.train_per_class  # held out before the subset
    assert summary["val_acc"] == history[-1]["val_acc"] and summary["test_acc"] == history[-1]["test_acc"]


def test_label_smoothing_is_in_the_training_loss():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    x, y = torch.randn(8, 3, 2, 2), torch.randint(0, 5, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    for smoothing in (0.0, 0.3):
        sums = T.train_epoch(model, [(x, y)], opt, label_smoothing=smoothing)
        expected = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=smoothing)
        assert (sums["loss"] / sums["seen"]).item() == pytest.approx(expected.item(), rel=1e-5)
    assert T.train_epoch(model, [(x, y)], opt, label_smoothing=0.3)["loss"] != T.train_epoch(model, [(x, y)], opt)["loss"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["posthoc", "svd-training"])
def test_one_shot_methods_cut_to_a_deployed_size_then_fine_tune(tmp_path, method):
    cfg = small(tmp_path, method=method, epochs=2, finetune_epochs=1, cut_to=0.5, width=1.0)  # 0.5 of this dense net
    summary = T.fit(cfg)
    history = rows(tmp_path / "run")
    assert [r["phase"] for r in history] == ["train", "train", "finetune"]
    assert 0.47 < summary["deployed_fraction"] <= 0.5  # the bisection lands just under the target
    assert 0 < summary["cut_energy"] < 1 and "test_acc_before_cut" in summary
    assert history[-1]["lr"] < cfg.lr and math.isfinite(history[-1]["train_loss"])  # fine-tuned at lr·gamma


@pytest.mark.slow
def test_thin_network_is_measured_against_the_full_width_one(tmp_path):
    summary = T.fit(small(tmp_path, method="dense", epochs=1, width=0.71))
    assert summary["dense_params"] == 269_722
    assert summary["deployed_fraction"] == pytest.approx(0.4997, abs=1e-3)
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()  # the one place it is written
    assert summary["code"]["version"] == re.search(r'^version = "([^"]+)"', pyproject, re.M)[1]


@pytest.mark.slow
def test_resume_ignores_how_a_run_is_executed(reference, tmp_path):
    """An interrupted run resumes with other how-to-run fields (memory layout, progress bar, folder):
    they are not part of what it computes, so the resume is not refused, and it trains on."""
    _, _, history = reference
    cfg = small(tmp_path, epochs=3)
    interrupt_after_first_epoch(cfg)
    again = TrainConfig(**{**cfg.to_dict(), "resume": True, "channels_last": False, "progress": True})
    summary = T.fit(again)
    resumed = rows(cfg.out_dir)
    assert [r["epoch"] for r in resumed] == [1, 2, 3] and stable(resumed[:1]) == stable(history[:1])
    assert summary["total_rank"] < summary["full_rank"] and math.isfinite(resumed[-1]["train_loss"])


@pytest.mark.slow
def test_measured_forms_are_chosen_at_the_start_and_after_every_cut(tmp_path, monkeypatch):
    calls = []

    def all_factored(model, example, training=False, amp=False, **kw):
        calls.append((tuple(example.shape), training))
        return {name: "factored" for name, _ in dprp.svd_layers(model)}

    monkeypatch.setattr(T, "measure_forms", all_factored)
    summary = T.fit(small(tmp_path, "measured", epochs=2, forms="measured"))
    cuts = sum(1 for r in rows(tmp_path / "measured") if "test_acc_before_cut" in r)
    assert cuts == 2 and calls == [((50, 3, 32, 32), True)] * (1 + cuts)
    # every layer ran factored: the MAC count is of that form, above the counted choice's
    run = runs.load_run(tmp_path / "measured")
    counted = dprp.count_macs(run.model())
    assert summary["macs"] > counted
    # the count (the default) never measures
    calls.clear()
    T.fit(small(tmp_path, "counted", epochs=1))
    assert calls == []


@pytest.mark.slow
def test_a_run_with_measured_forms_trains(tmp_path):
    summary = T.fit(small(tmp_path, epochs=2, forms="measured"))
    history = rows(tmp_path / "run")
    assert history[-1]["train_loss"] < history[0]["train_loss"] and summary["total_rank"] < summary["full_rank"]


@pytest.mark.slow
def test_each_cut_also_records_the_accuracy_with_batchnorm_recalibrated(reference):
    _, _, history = reference
    cut_rows = [r for r in history if "test_acc_before_cut" in r]
    keys = ("test_acc_before_cut_recalibrated", "test_acc_after_cut_recalibrated")
    assert cut_rows and all(0 <= r[k] <= 1 for r in cut_rows for k in keys)
    assert all(k not in r for r in history if r not in cut_rows for k in keys)


@pytest.mark.slow
def test_batchnorm_is_recalibrated_on_a_class_balanced_sample(tmp_path, monkeypatch):
    """The mirror's training images are sorted by class: the first N would be a few classes only
    (on the full data, 2,000 airplanes), whose statistics misjudge every other class."""
    seen = []

    def spy(model, loader, autocast=None):
        batches = list(loader)
        seen.append((torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]), loader.augment))
        return recalibrate(model, loader, autocast)

    recalibrate = T.recalibrate_batchnorm
    monkeypatch.setattr(T, "recalibrate_batchnorm", spy)
    monkeypatch.setattr(T, "CALIBRATION_IMAGES", 200)  # 20 of each class's 30
    T.fit(small(tmp_path, epochs=2))
    assert len(seen) == 4  # before and after each of the two cuts
    # The same images, augmented the same way, each time: augmented, because BatchNorm's running
    # statistics describe augmented batches (plain images gave worse statistics, measured).
    assert all(torch.equal(x, seen[0][0]) and torch.equal(y, seen[0][1]) and aug for x, y, aug in seen)
    assert seen[0][1].bincount(minlength=10).tolist() == [20] * 10


def test_batchnorm_recalibration_re_estimates_statistics_from_the_batches():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4, momentum=0.1))
    batches = [(torch.randn(8, 3, 5, 5) * 3 + 2, torch.zeros(8)) for _ in range(4)]
    model[1].running_mean.fill_(100.0)  # statistics of some other network
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    T.recalibrate_batchnorm(model, batches)
    with torch.no_grad():
        out = torch.cat([model[0](x) for x, _ in batches])
    assert torch.allclose(model[1].running_mean, out.mean((0, 2, 3)), atol=1e-5)
    batch_vars = torch.stack([model[0](x).detach().var((0, 2, 3)) for x, _ in batches])  # unbiased, per batch
    assert torch.allclose(model[1].running_var, batch_vars.mean(0), atol=1e-4)
    assert model[1].momentum == 0.1 and not model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # only statistics changed
