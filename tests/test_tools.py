"""The tools run to the end (issue 20 §3.4: `python -m demo.bench` had rotted): the bench's quick path, its
start-up and classroom sections, and the screenshots, each in a few tiny steps. Speed is not asserted here
(that is the bench's job); the tools write only where they are told (tmp_path), never over assets/."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from conftest import ROOT
from PIL import Image

from demo.tools import bench, launcher, screenshots

ASSETS = ROOT / "assets"


@pytest.fixture()
def assets_untouched():
    """Fails the test if it changed anything under assets/."""
    before = {path: path.stat().st_mtime_ns for path in ASSETS.rglob("*") if path.is_file()}
    yield
    after = {path: path.stat().st_mtime_ns for path in ASSETS.rglob("*") if path.is_file()}
    assert after == before


def test_compare_kwargs_come_from_the_endpoint_declaration():
    """The tools' /compare arguments are the declared API fields (demo/ui/form.py), the UI-only ones left out."""
    from demo.engine.guidance import METHODS
    from demo.ui.form import COMPARE
    kwargs = launcher.compare_kwargs(label=4, seed=9, weight=1.5, num_samples=2, num_steps=3)
    assert list(kwargs) == [name for name in COMPARE.names if name not in COMPARE.hidden]
    assert {f"w_{m}" for m in METHODS[1:]} <= kwargs.keys() and "follow" not in kwargs
    assert kwargs["label"] == 4 and kwargs["seed"] == 9 and kwargs["num_samples"] == 2 and kwargs["num_steps"] == 3
    assert all(kwargs[f"w_{m}"] == 1.5 for m in METHODS[1:]) and kwargs["mode"] == "same"


@pytest.mark.slow
def test_the_bench_quick_path_runs_to_the_end(tmp_path, assets_untouched, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--quick", "--repeats", "1", "--samples", "2", "--steps", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    assert {"networks", "methods", "comparison", "peer", "tried"} <= report.keys()
    assert "startup" not in report and "classroom" not in report                  # --quick skips both
    assert report["comparison"]["together_seconds"] > 0 and len(report["methods"]) == 6
    assert f"written: {out}" in capsys.readouterr().out


@pytest.mark.slow
def test_the_bench_start_up_section_runs_the_app_s_start_up(assets_untouched):
    """It called /compare with 8 positional values and silently recorded the error; it bypassed attach."""
    measured = bench.startup(1, num_samples=2, num_steps=2, calls=1)
    assert "error" not in measured, measured.get("error")
    assert measured["app_http_comparison_seconds"] > 0 and measured["ready_after_imports_seconds"] > 0


@pytest.mark.slow
@pytest.mark.skipif(screenshots.chromium() is None, reason="needs Debian's chromium")
def test_the_bench_classroom_section_runs_with_two_students(assets_untouched, capsys):
    args = argparse.Namespace(classroom=2, samples=2, steps=2)
    c = bench.classroom_section(args, peak=100.0, ladder_values=())
    assert c["clients"] == 2 and c["errors"] == [] and c["equality"]["compared"] == 2
    assert c["view"]["first_result_seconds"] > 0
    assert "classroom: 2 students" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(screenshots.chromium() is None, reason="needs Debian's chromium")
def test_the_screenshots_are_taken_at_each_size(tmp_path, assets_untouched):
    screenshots.main(["--out", str(tmp_path)])
    for name, size in screenshots.SIZES.items():
        with Image.open(tmp_path / f"screenshot_{name}.png") as image:
            assert image.size == size
    assert sorted(Path(tmp_path).iterdir()) == sorted(tmp_path / f"screenshot_{n}.png" for n in screenshots.SIZES)
