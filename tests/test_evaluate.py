"""The evaluation command end to end in --quick mode (the full sweep is `python -m demo.science.evaluate`)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from demo.engine.guidance import GFCG_OPTIONS, METHODS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_evaluation_writes_table_and_plots(tmp_path):
    subprocess.run([sys.executable, "-m", "demo.science.evaluate", "--quick", "--preset", "classic", "--out",
                    str(tmp_path)], cwd=ROOT, check=True, timeout=300, capture_output=True)
    table = json.loads((tmp_path / "evaluation_classic_quick.json").read_text())
    floor, *rows = table["rows"]
    assert floor["method"] == "real data" and floor["nfe_per_sample"] == 0 and floor["accuracy"] > 0.95
    assert {r["method"] for r in rows} == set(METHODS)
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
        assert row["fid_classifier_features"] >= 0 and row["nfe_per_sample"] >= 4
        assert row["seeds"] == 2 and len(row["per_seed"]["fid_classifier_features"]) == 2
        assert row["fid_classifier_features_sd"] > 0                # two seeds never give the same FID
    cfg = {r["w"]: r for r in rows if r["method"] == "cfg"}
    assert cfg[4.0]["nfe_per_sample"] == 2 * rows[0]["nfe_per_sample"]
    assert {r["guide"] for r in rows if r["guide"]} == {"collapses_early", "mild"}        # the other guides
    assert sum(r["variant"].startswith("interval") for r in rows) == 2                    # high / low noise only
    variants = {r["variant"] for r in rows if r["method"] == "gfcg" and r["variant"]}
    assert len(variants) == sum(len(values) - 1 for values in GFCG_OPTIONS.values())   # each option varied alone
    assert (tmp_path / "evaluation_classic_quick.csv").read_text().startswith("method,w,")
    for name in ("accuracy", "fid", "precision_recall", "classifier_fooling"):
        assert (tmp_path / f"evaluation_classic_quick_{name}.png").stat().st_size > 10_000
