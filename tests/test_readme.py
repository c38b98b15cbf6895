"""The README's first screen: its example runs as written, and its headline numbers are the table's."""
import re
from pathlib import Path

import pytest
import torch

from dprp_lib.engine import report as R

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_the_first_example_runs_as_written(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", README, re.S)[1]
    assert len(code.strip().splitlines()) <= 11  # a ten-line tour (plus its imports)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    loader = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))) for _ in range(2)]
    namespace = {"loader": loader}
    exec(compile(code, "README.md", "exec"), namespace)
    model, small = namespace["model"], namespace["small"]
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())  # the cut cut
    assert (tmp_path / "model.onnx").stat().st_size > 100_000


def test_the_headline_is_the_committed_full_data_table():
    headline = re.search(r"\*\*The result so far\*\*(.*?)\n\n", README, re.S)[1].replace("−", "-")
    rows = {r["variant"]: r for r in R.full_data_rows(ROOT / "results" / "runs", "cifar10-mirror")["rows"]}
    for variant in ("dprp 94%", "dprp 50%"):
        r = rows[variant]
        _, low, high = r["interval"]
        assert len(r["seeds"]) == 3
        assert f"{r['deployed_fraction']:.1%}" in headline, variant
        assert f"{sum(r['deltas']) / len(r['deltas']):+.2f}".lstrip("+") in headline, variant
        assert f"[{low:+.2f}, {high:+.2f}]".replace("[+", "[") in headline.replace("[+", "["), variant
