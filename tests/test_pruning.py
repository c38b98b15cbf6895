import copy
import pytest
import torch
from torch import nn
import torch.nn.functional as F

import dprp_lib as dprp
from dprp_lib.method.pruning import energy_for_size


def test_energy_rank_against_brute_force():
    torch.manual_seed(0)
    for _ in range(200):
        s = torch.rand(int(torch.randint(1, 12, ())))
        energy = float(torch.rand(()) * 0.5)
        e = s.double() ** 2
        k = next(k for k in range(1, len(s) + 1) if e[:k].sum() >= (1 - energy) * e.sum() - 1e-15)
        assert dprp.energy_rank(s, energy) == k
    assert dprp.energy_rank(torch.tensor([1.0, 1.0, 0.0, 0.0]), 0.0) == 2
    # index order: a large value late in s keeps everything before it
    assert dprp.energy_rank(torch.tensor([1.0, 0.01, 0.01, 5.0]), 0.05) == 4


def _model():
    torch.manual_seed(0)
    model = dprp.svdify(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3),
                                      nn.Flatten(), nn.Linear(16 * 4 * 4, 10)))
    with torch.no_grad():  # a spectrum with a clear tail in every layer
        for _, layer in dprp.svd_layers(model):
            layer.s.copy_(torch.linspace(1, 0, layer.rank) ** 4)
    return model


def _step(model, opt):
    x, y = torch.randn(4, 3, 6, 6), torch.randint(0, 10, (4,))
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=1e-3),
    lambda p: torch.optim.AdamW(p, lr=1e-3, amsgrad=True),
])
def test_prune_slices_factors_and_optimizer_state(make_opt):
    model = _model()
    opt = make_opt(model.parameters())
    _step(model, opt)
    layers = dict(dprp.svd_layers(model))
    before = {name: {id(p): {k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)}
                     for p in layer.factors()} for name, layer in layers.items()}
    changes = dprp.prune_ranks(model, energy=0.05, min_rank=2, optimizer=opt)
    assert set(changes) == set(layers)
    for name, layer in layers.items():
        old, new = changes[name]
        assert new == layer.rank and 2 <= new < old
        for p in layer.factors():
            for key, value in opt.state[p].items():
                if key == "step":
                    continue
                assert value.shape == p.shape
                kept = before[name][id(p)][key][..., :new]
                assert torch.equal(value, kept), f"{name} {key}: kept entries changed"
    _step(model, opt)  # the next step runs on the sliced state


def test_prune_keeps_leading_directions_in_index_order():
    layer = dprp.SVDLinear(6, 5)
    with torch.no_grad():
        layer.s.copy_(torch.tensor([2.0, 0.01, 1.0, 0.01, 0.01]))
    U = layer.U.detach().clone()
    dprp.prune_ranks(layer, energy=0.01)
    assert layer.rank == 3
    torch.testing.assert_close(layer.U, U[:, :3])


def test_reorder_cuts_the_smallest_directions():
    layer = dprp.SVDLinear(6, 5)
    with torch.no_grad():
        layer.s.copy_(torch.tensor([2.0, 0.01, 1.0, 0.01, 0.01]))
    opt = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    layer(torch.randn(2, 6)).sum().backward()
    opt.step()
    U, s = layer.U.detach().clone(), layer.s.detach().clone()
    buf = opt.state[layer.U]["momentum_buffer"].clone()
    dprp.prune_ranks(layer, energy=0.01, reorder=True, optimizer=opt)
    assert layer.rank == 2
    torch.testing.assert_close(layer.s, s[[0, 2]])
    torch.testing.assert_close(layer.U, U[:, [0, 2]])
    torch.testing.assert_close(opt.state[layer.U]["momentum_buffer"], buf[:, [0, 2]])


def test_grouped_layers_share_one_rank():
    layer = dprp.SVDConv2d(4, 8, 3, groups=2)
    with torch.no_grad():
        layer.s.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]))
    dprp.prune_ranks(layer, energy=0.0)
    assert layer.rank == 3 and layer.s.shape == (2, 3)


def test_pruning_never_goes_below_min_rank():
    layer = dprp.SVDLinear(8, 6)
    with torch.no_grad():
        layer.s.copy_(torch.tensor([1.0, 0, 0, 0, 0, 0]))
    assert dprp.prune_ranks(layer, energy=0.5, min_rank=3) == {"": (6, 3)}


def test_bad_arguments_are_named():
    model = _model()
    with pytest.raises(ValueError, match="energy"):
        dprp.prune_ranks(model, energy=1.0)
    with pytest.raises(ValueError, match="energy"):
        dprp.prune_ranks(model, energy=-0.1)
    with pytest.raises(ValueError, match="min_rank"):
        dprp.prune_ranks(model, min_rank=0)
    with pytest.raises(ValueError, match="min_rank"):
        dprp.prune_ranks(model, min_rank=9)  # the first conv has rank 8
    stale = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer"):
        dprp.prune_ranks(model, optimizer=stale)
    assert all(layer.rank == layer.max_rank for _, layer in dprp.svd_layers(model))  # nothing changed


def test_prune_schedule():
    sched = dprp.PruneSchedule(warmup=10, every=5, stop=30)
    assert [e for e in range(1, 41) if sched.due(e)] == [10, 15, 20, 25, 30]
    assert [e for e in range(1, 6) if dprp.PruneSchedule(warmup=0, every=1).due(e)] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="every"):
        dprp.PruneSchedule(every=0)
    with pytest.raises(ValueError, match="warmup"):
        dprp.PruneSchedule(warmup=-1)
    with pytest.raises(ValueError, match="stop"):
        dprp.PruneSchedule(warmup=10, stop=5)


def test_energy_for_size_finds_the_cut_that_reaches_a_deployed_size():
    torch.manual_seed(0)
    model = dprp.svdify(dprp.models.resnet20())
    dense = 269_722
    for fraction in (0.8, 0.5, 0.3):
        energy = energy_for_size(model, fraction, dense)
        trial = copy.deepcopy(model)
        dprp.prune_ranks(trial, energy=energy, reorder=True)
        assert fraction - 0.02 < dprp.deployed_params(trial) / dense <= fraction
    assert energy_for_size(model, 1.5, dense) == 0.0  # already small enough
    with pytest.raises(ValueError, match="min_rank"):
        energy_for_size(model, 0.01, dense, min_rank=4)
