"""The helpers every chapter calls first and last, in every mode, with the training stubbed."""
import json

import pytest

from dprp_lib.engine import experiments as E
from dprp_lib.course import notebook
from dprp_lib.engine.runs import Run


def fake_runs(chapter, mode):
    """What run_grid returns, without training: each config's run, with the summary fit writes."""
    runs = {}
    for name, config in E.grid(chapter, mode).items():
        train = 45_000 if config.holdout else (config.train_per_class or 5000) * 10
        summary = {"dataset": "CIFAR-10 (JPEG mirror)", "train_images": train,
                   "test_images": (config.test_per_class or 1000) * 10,
                   **({"val_images": config.holdout} if config.holdout else {})}
        runs[name] = Run(config, summary, [], None, loaded=True)
    return runs


@pytest.mark.parametrize("mode", E.MODES)
@pytest.mark.parametrize("chapter", ["03_orthogonality", "04_sorting", "05_sparsity",
                                     "06_dynamic_rank_pruning", "07_ablations"])
def test_chapter_runs_describes_its_runs_in_every_mode(chapter, mode, monkeypatch, capsys):
    monkeypatch.setattr(notebook, "run_grid", lambda ch, m, *a, **k: fake_runs(ch, m))
    runs = notebook.chapter_runs(chapter, mode)
    out = capsys.readouterr().out
    assert len(runs) == len(E.grid(chapter, mode))
    base = E.preset(mode)
    if base.train_per_class:  # smoke, quick: a subset of each class
        assert f"{base.train_per_class * 10:,} training and {base.test_per_class * 10:,} test images" in out
    else:  # full, paper: every image, the validation split said
        assert "45,000 training (5,000 more held out for validation) and 10,000 test images" in out
    assert f"{base.epochs} epochs" in out and f"{len(runs)} runs, {len(runs)} loaded" in out
    seeds = sorted({r.config.seed for r in runs.values()})  # the runs' own: chapter 07's grid has three
    assert (f"seeds {', '.join(map(str, seeds))}," if len(seeds) > 1 else f"seed {seeds[0]},") in out


@pytest.mark.parametrize("mode", E.MODES)
def test_setup_accepts_every_mode_and_refuses_others(mode, capsys):
    assert notebook.setup(mode, seed=3, device="cpu").type == "cpu"
    assert capsys.readouterr().out.startswith(f"mode {mode}, seed 3, device CPU")
    with pytest.raises(ValueError, match="MODE must be one of"):
        notebook.setup("fast")


def test_save_metrics_writes_plain_json_where_the_environment_says(tmp_path, monkeypatch):
    import numpy as np
    import torch

    monkeypatch.setenv("DPRP_METRICS_DIR", str(tmp_path / "metrics"))
    path = notebook.save_metrics("x", acc=np.float32(0.5), ranks=torch.tensor([1, 2]))
    assert path == tmp_path / "metrics" / "x.json"
    assert json.loads(path.read_text()) == {"acc": 0.5, "ranks": [1, 2]}
    with pytest.raises(TypeError, match="cannot write object"):
        notebook.save_metrics("bad", thing=object())
    monkeypatch.delenv("DPRP_METRICS_DIR")
    assert notebook.save_metrics("x", acc=1).parent == notebook.paths.METRICS


def test_no_parameters_cell_holds_test_plumbing():
    import nbformat
    from dprp_lib.course.build import chapters

    for path in chapters():
        cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        assert "METRICS" not in cell.source, path.name
