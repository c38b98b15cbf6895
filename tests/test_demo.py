import pytest

import dprp_lib.__main__ as cli
from dprp_lib.course.demo import run_demo
from conftest import require_mirror


@pytest.mark.slow
def test_demo_learns_and_prunes_on_real_images():
    source = require_mirror()
    lines = []
    out = run_demo("cifar10-mirror", "data", epochs=3, per_class=60, batch_size=50, log=lines.append)
    first, last, summary = out["history"][0], out["history"][-1], out["summary"]
    assert summary["dataset"] == "CIFAR-10 (JPEG mirror)" and source
    assert last["train_loss"] < first["train_loss"]  # it learns
    assert summary["test_acc"] > 0.15  # above the 10% of chance, on 10 classes
    assert summary["total_rank"] < summary["full_rank"]  # ranks fell
    assert summary["deployed_params"] < summary["dense_params"]
    assert any("layer3.2.conv2" in line for line in lines)


def test_cli_reports_missing_data(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("DPRP_CIFAR10_MIRROR", raising=False)
    assert cli.main(["demo", "--dataset", "cifar10-mirror", "--data-dir", str(tmp_path)]) == 2
    assert "DPRP_CIFAR10_MIRROR" in capsys.readouterr().err
