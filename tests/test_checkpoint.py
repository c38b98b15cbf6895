import os

import pytest
import torch

import dprp_lib as dprp
from dprp_lib.engine import models


def _pruned():
    torch.manual_seed(0)
    model = dprp.svdify(models.resnet20())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with torch.no_grad():
        for _, layer in dprp.svd_layers(model):
            layer.s.mul_(torch.linspace(1, 0, layer.rank) ** 3)
    dprp.prune_ranks(model, energy=0.05, optimizer=opt)
    return model.eval(), opt


def test_pruned_checkpoint_loads_into_a_fresh_model(tmp_path):
    model, opt = _pruned()
    ranks = [layer.rank for _, layer in dprp.svd_layers(model)]
    assert any(r < layer.max_rank for r, (_, layer) in zip(ranks, dprp.svd_layers(model)))
    path = dprp.save_checkpoint(tmp_path / "ckpt.pt", model=model.state_dict(),
                                optimizer=opt.state_dict(), epoch=3, config={"model": "resnet20"})
    ckpt = torch.load(path, weights_only=True)  # the library's checkpoints read with weights_only
    assert ckpt["epoch"] == 3
    fresh = dprp.svdify(models.resnet20()).eval()
    dprp.load_model_state(fresh, ckpt["model"])
    assert [layer.rank for _, layer in dprp.svd_layers(fresh)] == ranks
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(fresh(x), model(x))
    fresh.load_state_dict(model.state_dict())  # plain torch loading works too


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    dprp.save_checkpoint(path, value=torch.ones(3))

    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError):
        dprp.save_checkpoint(path, value=torch.zeros(3))
    assert torch.equal(dprp.load_checkpoint(path)["value"], torch.ones(3))  # the old file survives
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary left behind


def test_state_dict_from_another_architecture_is_rejected():
    model, _ = _pruned()
    with pytest.raises(ValueError, match="svdify"):
        dprp.load_model_state(models.resnet20(), model.state_dict())
    with pytest.raises(ValueError, match="state_dict"):
        dprp.load_model_state(dprp.svdify(models.resnet32()), model.state_dict())
    with pytest.raises(ValueError, match="state_dict"):
        dprp.load_model_state(dprp.svdify(models.resnet20(num_classes=100)), model.state_dict())
    with pytest.raises(FileNotFoundError):
        dprp.load_checkpoint("no/such/file.pt")
