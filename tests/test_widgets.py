"""The panels, driven headlessly: change a control, check what the panel computed."""
import torch

from dprp_lib.engine.config import TrainConfig
from dprp_lib.engine.experiments import aggregate
from dprp_lib.engine.runs import Run
from dprp_lib.course.widgets import GridExplorer, RankExplorer, SweepExplorer


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


def test_layer_cost_calculator_reports_the_layers_break_even_ranks():
    from dprp_lib.course.widgets import LayerCostCalculator

    panel = LayerCostCalculator(64, 64, 3)
    assert panel.result["break_even_deployed"] == 64 * 576 / (64 + 576)
    panel.kernel.value = 1
    panel.c_out.value = 256
    # a 1×1 64 → 256 conv: m = 256, n = 64; the break-even rank (51.2) lies below the full rank 64
    assert (panel.result["m"], panel.result["n"], panel.result["max_rank"]) == (256, 64, 64)
    assert panel.result["break_even_deployed"] == 256 * 64 / 320 and "80% of its full rank" in panel.info.value
    assert len(panel.views()) == 18 and (256, 256, 3) in panel.views()  # the static page spans the range


def test_drift_explorer_shows_s_departing_from_the_true_spectrum():
    from dprp_lib.course.widgets import DriftExplorer

    panel = DriftExplorer()
    panel.drift.value = 0.0
    still = panel.result
    assert still["orth"] < 1e-20 and still["gap"] < 1e-12
    assert abs(still["cut_error"] - still["promised_error"]) < 1e-12  # orthonormal: |s| tells the truth
    panel.factors.value = "U and V"
    panel.drift.value = 1.0
    moved = panel.result
    assert moved["orth"] > 0.1 and moved["gap"] > 0.3
    assert moved["cut_error"] > moved["best_error"]  # the cut that trusts |s| is no longer the best one


def test_energy_cut_explorer_compares_index_order_with_sorted():
    from dprp_lib.course.widgets import EnergyCutExplorer

    shuffled = torch.tensor([3.0, 0.2, 2.0, 1.0, 0.5, 0.1, 1.5, 0.05])
    panel = EnergyCutExplorer({"layer": shuffled}, energies=(0.01, 0.1))
    panel.energy.value = 0.1
    # sorted: 3, 2, 1.5 hold > 90% of Σ s²; in index order the rule must reach 1.5 at index 7
    assert panel.result["kept_sorted"] == 3 and panel.result["kept_index_order"] == 7
    assert panel.result["larger_values_cut"] == 0 and "keeps 7 of 8" in panel.info.value


def test_truncation_explorer_cuts_each_model_at_each_energy():
    import dprp_lib as dprp
    from dprp_lib.course.widgets import TruncationExplorer

    torch.manual_seed(0)
    dense = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    dense_params = dprp.count_params(dense)
    factored = dprp.svdify(dense)
    full = dprp.count_params(factored)
    x = torch.randn(64, 20)
    target = factored(x).argmax(1)
    panel = TruncationExplorer({"net": factored}, lambda m: (m(x).argmax(1) == target).float().mean().item(),
                               dense_params, energies=(1e-4, 0.3))
    assert panel.result["energy"] == 0.3 and panel.result["total_rank"] < 16 + 4
    small = panel.result
    panel.energy.value = 1e-4
    assert panel.result["total_rank"] > small["total_rank"] and panel.result["accuracy"] >= small["accuracy"]
    assert panel.result["deployed_fraction"] > small["deployed_fraction"]
    assert dprp.count_params(factored) == full  # the model itself is not cut
