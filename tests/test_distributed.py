import json
import os
import subprocess
import sys

import pytest

from test_train import ROOT, rows, small


@pytest.mark.slow
def test_two_gloo_processes_prune_identically(tmp_path):
    cfg = small(tmp_path, epochs=2, batch_size=25)  # 25 per process: the same global batch of 50
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "dprp_lib", "train", str(path)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    finished = (tmp_path / "run" / "summary.json").exists()  # tells a crash in training from one at exit
    assert done.returncode == 0, f"summary written: {finished}\n{done.stderr[-3000:]}"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2
    first, second = summary["ranks_by_process"]
    assert first == second == summary["ranks"]
    assert summary["total_rank"] < summary["full_rank"]  # pruning happened, in step on both
    history = rows(tmp_path / "run")
    assert len(history) == 2 and history[-1]["train_loss"] < history[0]["train_loss"]
