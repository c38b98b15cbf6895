"""The benchmark scripts run end to end on the CPU (their numbers are reported, never asserted)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.slow
def test_step_modes_times_every_step_and_writes_its_table(tmp_path, capsys):
    import step_modes

    out = tmp_path / "modes.json"
    result = step_modes.main(["--device", "cpu", "--batch-size", "4", "--modes", "eager",
                              "--warmup", "1", "--repeats", "1", "--rounds", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    rows = {r["step"]: r for r in result["rows"]}
    assert set(rows) == set(step_modes.KINDS) and rows["dense"]["vs dense (same mode)"] == 1.0
    assert all(r["ms"] > 0 and r["vs eager (same step)"] == 1.0 for r in rows.values())
    assert "dprp half rank" in capsys.readouterr().out
