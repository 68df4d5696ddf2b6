"""The tools run to the end (issue 20 §3.4: `python -m demo.bench` had rotted): each of the bench's sections in
tiny settings (the in-process path as on a GPU machine without gradio, the served class and previews, the w
ladder in chromium, start-up) and the screenshots. Speed is not asserted here (that is the bench's job); the
tools write only where they are told (tmp_path), never over assets/."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from PIL import Image

from demo.tools import bench, bench_served, launcher, screenshots

ASSETS = ROOT / "assets"
NO_GRADIO = "import sys\nfor name in ('gradio', 'gradio_client', 'playwright', 'mlxtend'):\n    sys.modules[name] = None\n"


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
    assert launcher.defaults(seed=5) == COMPARE.api_defaults(seed=5)


def test_the_bench_s_options():
    quick = bench.parse_args(["--quick"])
    assert (quick.samples, quick.steps, quick.class_size, quick.repeats) == (2, 2, 2, 2)
    assert quick.chosen == bench.SECTIONS and quick.out == ASSETS / "bench.json"
    full = bench.parse_args([])
    assert (full.samples, full.steps, full.class_size, full.repeats, full.changes) == (None, None, 30, 7, 10)
    assert bench.parse_args(["--only-gpu"]).chosen == bench.GPU_SECTIONS == ("flops", "alone", "class")
    assert bench.parse_args(["--only-gpu", "--sections", "class,ladder"]).chosen == ("class",)
    with pytest.raises(SystemExit):
        bench.parse_args(["--sections", "flops,nowhere"])


def test_the_bench_imports_no_gradio_playwright_or_mlxtend():
    """The lent GPU machine has none of them: importing the bench and its in-process sections must not need them."""
    code = NO_GRADIO + ("import demo.tools.bench, demo.tools.bench_service, demo.tools.bench_flops\n"
                        "from demo.tools import benchmarks\n"
                        "assert not benchmarks.installed('gradio') and benchmarks.installed('torch')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow
def test_the_gpu_path_runs_without_gradio(tmp_path, assets_untouched):
    """`--only-gpu` as on the lent GPU machine (here on the CPU, gradio, playwright and mlxtend unimportable):
    FLOPs, a comparison alone and a class as threads, all in process; everything else skipped, saying why."""
    out = tmp_path / "bench_cuda.json"
    code = NO_GRADIO + ("from demo.tools import bench\nbench.main(['--device', 'cpu', '--only-gpu', '--quick', "
                        f"'--repeats', '1', '--class-size', '3', '--out', {str(out)!r}])\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["settings"]["sections"] == ["flops", "alone", "class"] and not report["settings"]["app_defaults"]
    assert report["machine"]["matmul_peak_gflops"] > 0 and report["machine"]["torch"]
    f = report["flops"]
    assert 0 < f["default"]["probe_off_gflop"] <= f["default"]["probe_on_gflop"] <= f["default"]["served_gflop"]
    assert f["classic"]["steps"] == 32 and f["classic"]["interval"] == [0.0, None]
    assert report["alone"]["in_process"]["seconds"] > 0 and 0 < report["alone"]["in_process"]["network_fraction"] < 1
    assert report["alone"]["http"] == {"skipped": "skipped: --only-gpu measures in process only"}
    c = report["class"]["in_process"]
    assert c["clients"] == 3 and c["errors"] == [] and c["equality"]["identical"]
    assert c["split"]["requests_sampled"] == 3 and 0 < c["split"]["network_fraction"] <= 1
    assert c["wall_to_flop_floor"] > 0 and "served" in report["class"]
    assert "ladder" not in report and "startup" not in report
    assert {g["what"] for g in report["goals"]} >= {"GFLOP of a default comparison (as served)",
                                                    "class in_process: errors"}
    assert "written:" in run.stdout and "a class of 3 (threads on one Service" in run.stdout


@pytest.mark.slow
def test_the_bench_served_sections_run_with_two_students(tmp_path, assets_untouched, capsys):
    """A comparison alone over HTTP, the served class (split from the app's own process) and previews on/off."""
    out = tmp_path / "bench.json"
    report = bench.main(["--quick", "--repeats", "1", "--sections", "alone,class,previews", "--out", str(out)])
    assert json.loads(out.read_text())["class"]["served"]["clients"] == 2
    http = report["alone"]["http"]
    assert http["repeats"] == 1 and http["seconds"] > 0 and http["split"]["requests_sampled"] == 1
    served = report["class"]["served"]
    assert served["errors"] == [] and served["equality"]["identical"], served
    by_client = report["class"]["served_gradio_client"]                       # the acceptance's gradio_client class
    assert by_client["via"] == "gradio_client" and by_client["errors"] == [] and by_client["equality"]["identical"]
    s = served["split"]
    assert s["requests_sampled"] == 2 and 0 < s["network_fraction"] <= 1 and s["rendering_calls"] > 0
    assert s["per_request"]["sampling_seconds"] > 0 and s["per_request"]["rest_seconds"] >= 0
    previews = report["previews"]
    assert "on_to_off_p50" in previews or previews["off"]["skipped"].startswith("not supported: app.py refused")
    assert "a class of 2 (REST calls against a fresh app)" in capsys.readouterr().out


@pytest.mark.slow
def test_a_flag_the_app_refuses_is_recorded_as_not_supported():
    got = bench_served.served([], None, flags=["--no-such-flag"], run_class=False)
    assert got["skipped"].startswith("not supported: app.py refused --no-such-flag"), got


@pytest.mark.slow
@pytest.mark.skipif(screenshots.chromium() is None, reason="needs Debian's chromium")
def test_the_bench_ladder_section_times_w_changes_in_the_page(tmp_path, assets_untouched):
    """A small ladder (the page honours ?num_samples=2&num_steps=2): first result, fill, 10 w changes answered
    in the page without a request, alone and while a class of 2 runs."""
    report = bench.main(["--quick", "--sections", "ladder", "--out", str(tmp_path / "bench.json")])
    ladder = report["ladder"]
    assert ladder["query"] == "num_samples=2&num_steps=2"
    assert ladder["alone"]["first_result_seconds"] > 0 and ladder["alone"]["ladder_fill_seconds"] >= 0
    for name in ("alone", "with_class"):
        w = ladder[name]["w_changes"]
        assert w["changes"] == 10 and w["unanswered"] == 0 and w["median_ms"] is not None, w
        assert w["requests_during_changes"] == 0
    busy = ladder["with_class"]
    assert busy["class"]["clients"] == 2 and busy["class"]["errors"] == []
    assert busy["second_visitor"]["first_result_seconds"] > 0


@pytest.mark.slow
def test_the_bench_start_up_section_runs_the_app_s_start_up(assets_untouched):
    """It called /compare with 8 positional values and silently recorded the error; it bypassed attach."""
    from demo.tools.bench_startup import startup
    measured = startup(1, num_samples=2, num_steps=2, calls=1)
    assert "error" not in measured, measured.get("error")
    assert measured["app_http_comparison_seconds"] > 0 and measured["ready_after_imports_seconds"] > 0


@pytest.mark.slow
@pytest.mark.skipif(screenshots.chromium() is None, reason="needs Debian's chromium")
def test_the_screenshots_are_taken_at_each_size(tmp_path, assets_untouched):
    screenshots.main(["--out", str(tmp_path)])
    for name, size in screenshots.SIZES.items():
        with Image.open(tmp_path / f"screenshot_{name}.png") as image:
            assert image.size == size
    assert sorted(Path(tmp_path).iterdir()) == sorted(tmp_path / f"screenshot_{n}.png" for n in screenshots.SIZES)
