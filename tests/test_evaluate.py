"""The evaluation command end to end in --quick mode (the full sweep is `python -m demo.evaluate`)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_evaluation_writes_table_and_plots(tmp_path):
    subprocess.run([sys.executable, "-m", "demo.evaluate", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                   check=True, timeout=300, capture_output=True)
    table = json.loads((tmp_path / "evaluation_quick.json").read_text())
    rows = table["rows"]
    assert {r["method"] for r in rows} == {"unguided", "classifier", "cfg", "gfcg", "autoguidance"}
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
        assert row["fid_classifier_features"] >= 0 and row["nfe_per_sample"] >= 4
    cfg = {r["w"]: r for r in rows if r["method"] == "cfg"}
    assert cfg[4.0]["nfe_per_sample"] == 2 * rows[0]["nfe_per_sample"]
    assert (tmp_path / "evaluation_quick.csv").read_text().startswith("method,w,")
    for name in ("accuracy", "fid", "precision_recall", "classifier_fooling"):
        assert (tmp_path / f"evaluation_{name}_quick.png").stat().st_size > 10_000
