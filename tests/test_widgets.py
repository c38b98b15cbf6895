"""The panels, driven headlessly: change a control, check what the panel computed."""
import torch

from dprp_lib.config import TrainConfig
from dprp_lib.experiments import aggregate
from dprp_lib.runs import Run
from dprp_lib.widgets import GridExplorer, RankExplorer, SweepExplorer


def test_rank_explorer_follows_its_slider():
    torch.manual_seed(0)
    image = torch.rand(40, 30, dtype=torch.float64) @ torch.rand(30, 30, dtype=torch.float64)
    panel = RankExplorer(image, k=2)
    low = panel.result
    panel.slider.value = 20
    high = panel.result
    assert (low["k"], high["k"]) == (2, 20)
    assert high["relative_error"] < low["relative_error"]
    assert high["factored"] == 20 * (40 + 30 + 1) and "rank 20" in panel.info.value
    assert panel.figure.axes[1].get_title() == "rank 20"  # the figure was redrawn for the new rank
    assert bytes(panel.picture.value[:4]) == b"\x89PNG"  # and shown as an image in the panel


def _run(kind, weight, acc, rank, seed=0):
    history = [{"epoch": e, "test_acc": acc * e / 3, "params": 1000 - 100 * e,
                "ranks": {"conv1": 16 - e, "fc": 10}} for e in (1, 2, 3)]
    summary = {"test_acc": acc, "total_rank": rank, "full_rank": 26, "deployed_fraction": rank / 26,
               "ranks": history[-1]["ranks"]}
    return Run(TrainConfig(sparse_kind=kind, sparse=weight, seed=seed), summary, history, None, True)


def test_sweep_explorer_switches_runs():
    runs = {("l1", 0.0): _run("l1", 0.0, 0.5, 26), ("l1", 1.0): _run("l1", 1e-4, 0.45, 20),
            ("hoyer", 1.0): _run("hoyer", 1e-3, 0.4, 15)}
    panel = SweepExplorer(runs)
    assert panel.result["key"] == ("l1", 0.0)
    panel.weight.value = 1.0
    assert panel.result["key"] == ("l1", 1.0) and panel.result["total_rank"] == 20
    panel.kind.value = "hoyer"
    assert panel.result["key"] == ("hoyer", 1.0) and panel.result["test_acc"] == 0.4
    assert "hoyer" in panel.info.value


def test_grid_explorer_shows_the_chosen_variant():
    by_variant = {"all penalties": [_run("l1", 1e-4, 0.5, 20, s) for s in (0, 1)],
                  "none": [_run("l1", 0.0, 0.55, 26, s) for s in (0, 1)]}
    panel = GridExplorer(aggregate(by_variant), by_variant)
    assert panel.result["variant"] == "all penalties"
    panel.variant.value = "none"
    assert panel.result["variant"] == "none" and panel.result["total_rank"] == 26
    assert panel.result["test_acc_values"] == [0.55, 0.55]
