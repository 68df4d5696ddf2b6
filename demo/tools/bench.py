"""How fast, and how close to the machine's limit, in ONE run on ONE machine: `python -m demo.bench`.

    python -m demo.bench                               # everything, on this machine: assets/bench.json
    python -m demo.bench --device cuda --only-gpu --out bench_cuda.json   # in process only: no gradio needed
    python -m demo.bench --quick --out /tmp/b.json    # tiny settings, a few seconds a section (smoke tests)

Every comparison is the app's default (demo/ui/form.py, read when the bench runs: its steps, sampler, guidance
interval and each method's w), 6 methods x its samples; a class is 30 students at once, student k asking for
digit k mod 10 with seed 1000 + k. Sections (--sections picks some; the machine is always measured):
  machine    the device, CPU, threads, versions, commit, date, and the fp32 matmul peak measured now
  flops      FLOPs of a default comparison and of the classic one (32 DDIM steps, no interval, probe on), and
             the floor: FLOPs / peak (demo/tools/bench_flops.py)
  alone      one comparison alone: in process (Service + rendering, fresh cache) and over HTTP
  class      the class in process (threads on one Service) and served (REST calls of /compare against a fresh
             app): p50/p95/max, wall, errors, identical pixels, ratio to the floor, time split (network share)
  previews   the served class again, the app started with --no-previews
  ladder     one visitor in chromium: first result, ladder fill, w changes in the page (alone, with a class)
  startup    `python app.py`'s start-up in a fresh process
  networks, methods, peer, tried   details: each network's share of the peak, each method alone, diffusers'
             loop, variants tried
Sections that need gradio, gradio_client or playwright are skipped, saying so, where those are not installed
(and always with --only-gpu). --without-gradio behaves as if they were not (to check the GPU path on a CPU).

All of the bench's own torch work (loading, the peak, FLOP counting, the details) runs on the app's compute
thread, as the app's does (demo/serving/compute.py): a second OpenMP thread team on the main thread made every
in-process comparison about 1.4x slower (0.39 s against 0.28 s on the 2-core reference machine), a bench artefact
the served app never had.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import time
from pathlib import Path

import torch

from demo.engine.config import ROOT
from demo.engine.pipeline import Models
from demo.serving.compute import COMPUTE
from demo.tools import bench_goals, bench_service, benchmarks, classroom
from demo.tools import bench_print as show
from demo.tools.bench_flops import comparison_keys, flops_section
from demo.ui import form

ASSETS = ROOT / "assets"
SECTIONS = ("flops", "alone", "class", "previews", "ladder", "startup", "networks", "methods", "peer", "tried")
GPU_SECTIONS = ("flops", "alone", "class")
GRADIO_CLIENT_SEEDS = 3000                           # the gradio_client class's seeds (nothing cached before it)
SERVED = ("gradio", "gradio_client")                  # the served sections' needs (ladder: playwright too)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=ASSETS / "bench.json")
    parser.add_argument("--quick", action="store_true", help="tiny settings (2 samples, 2 steps, a class of 2, "
                        "2 repeats) unless given: a smoke test, not a measurement")
    parser.add_argument("--only-gpu", action="store_true", help=f"only {', '.join(GPU_SECTIONS)}, in process")
    parser.add_argument("--sections", help=f"comma-separated, of: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--repeats", type=int, help="runs per median (default 7; 2 with --quick)")
    parser.add_argument("--samples", type=int, help="samples per method (default: the app's)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the app's)")
    parser.add_argument("--class-size", "--classroom", type=int, dest="class_size",
                        help="students at once (default 30; 2 with --quick)")
    parser.add_argument("--changes", type=int, default=10, help="w changes timed in the page (default 10)")
    parser.add_argument("--without-gradio", action="store_true", help="behave as on a machine without gradio, "
                        "gradio_client, playwright and mlxtend (checks the GPU path here)")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.steps = args.samples or 2, args.steps or 2
    args.repeats = args.repeats or (2 if args.quick else 7)
    args.class_size = args.class_size or (2 if args.quick else 30)
    chosen = GPU_SECTIONS if args.only_gpu else SECTIONS
    if args.sections:
        wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in SECTIONS]
        if unknown:
            parser.error(f"unknown section(s) {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")
        chosen = [s for s in chosen if s in wanted]
    args.chosen = tuple(chosen)
    return args


def without_gradio() -> None:
    """From now on gradio, gradio_client, playwright and mlxtend cannot be imported in this process (as on the
    lent GPU machine)."""
    for name in (*SERVED, "playwright", "mlxtend"):
        sys.modules[name] = None


def missing(needs: tuple[str, ...], only_gpu: bool) -> str | None:
    """Why a section that needs these modules is skipped, or None."""
    if only_gpu:
        return "skipped: --only-gpu measures in process only"
    absent = [name for name in needs if not benchmarks.installed(name)]
    return f"skipped: {', '.join(absent)} not installed" if absent else None


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.without_gradio:
        without_gradio()
    began = time.perf_counter()
    device = torch.device(args.device)
    models = COMPUTE.call(Models.load, device=device)   # all torch work on the app's compute thread (below)
    changes = {k: v for k, v in (("num_samples", args.samples), ("num_steps", args.steps)) if v is not None}
    base, weights = form.comparison_of(**changes)        # the app's defaults, as they are when the bench runs
    students = classroom.class_of(args.class_size, args.samples, args.steps)
    report = {"machine": benchmarks.machine(device), "settings": show.settings(base, weights, args),
              "section_seconds": {}}
    spent = report["section_seconds"]

    @contextlib.contextmanager
    def section(name: str):
        start = time.perf_counter()
        yield
        spent[name] = round(time.perf_counter() - start, 1)

    with section("machine"):
        report["machine"]["matmul_peak_gflops"] = peak = COMPUTE.call(benchmarks.matmul_peak, device, args.repeats)
    show.machine(report)
    chosen, reference, second_class = args.chosen, None, None
    if "flops" in chosen:
        with section("flops"):
            report["flops"] = COMPUTE.call(flops_section, models, base, weights, peak)
        show.flops(report["flops"])
    with section("in_process"):
        if "alone" in chosen:
            report["alone"] = {"in_process": bench_service.alone_section(models, base, weights, args.repeats)}
        if "class" in chosen or "previews" in chosen:
            reference = classroom.alone(students, models)
        if "class" in chosen:       # the gradio_client class, after the REST one, on other seeds
            second = classroom.class_of(args.class_size, args.samples, args.steps, first_seed=GRADIO_CLIENT_SEEDS)
            second_class = (second, classroom.alone(second, models))
            report["class"] = {"in_process": class_in_process(models, students, reference)}
    with section("served"):
        served_sections(report, students, reference, args, second_class)
    if "class" in chosen:
        show.add_floor(report, args.class_size)
        show.klass(report["class"])
    if "previews" in chosen:
        show.previews(report["previews"])
    if "ladder" in chosen:
        with section("ladder"):
            needs = missing((*SERVED, "playwright"), args.only_gpu)
            query = "&".join(f"{k}={v}" for k, v in changes.items())   # the page honours links
            report["ladder"] = {"skipped": needs} if needs else \
                _import("demo.tools.bench_ladder").ladder_section(students, query, args.changes)
        show.ladder(report["ladder"])
    if "startup" in chosen:
        with section("startup"):
            needs = missing(SERVED, args.only_gpu)
            report["startup"] = {"skipped": needs} if needs else \
                _import("demo.tools.bench_startup").startup(1 if args.quick else 3, args.samples, args.steps)
        show.startup(report["startup"])
    with section("details"):
        COMPUTE.call(details, report, models, comparison_keys(base, weights), args)
    report["goals"] = bench_goals.goals(report)
    bench_goals.goal_table(report["goals"], report["settings"]["app_defaults"])
    spent["total"] = round(time.perf_counter() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nsections took (s): {', '.join(f'{k} {v:g}' for k, v in spent.items())}")
    print(f"written: {args.out}")
    if "error" in report.get("startup", {}):
        raise SystemExit("bench: the start-up section failed (its error is above and in the report)")
    return report


def _import(name: str):
    """A section's module, imported only when it runs (gradio, playwright: not on every machine)."""
    return importlib.import_module(name)


def served_sections(report: dict, students: list[classroom.Student], reference: list | None,
                    args: argparse.Namespace, second_class: tuple | None = None) -> None:
    """The lone comparison over HTTP, the served class and the class with previews off, each app started fresh
    (the lone comparisons and the class share one)."""
    chosen = args.chosen
    if not {"alone", "class", "previews"} & set(chosen):
        return
    needs = missing(SERVED, args.only_gpu)
    served = None if needs else _import("demo.tools.bench_served")
    on = {"skipped": needs} if needs else served.served(students, reference, args.repeats if "alone" in chosen else 0,
                                                       second_class=second_class,
                                                       run_class="class" in chosen or "previews" in chosen)
    if "alone" in chosen:
        report["alone"]["http"] = on.get("alone", on)
        show.alone(report["alone"])
    if "class" in chosen:
        report["class"]["served"] = on.get("class", on)
        if "class_gradio_client" in on:
            report["class"]["served_gradio_client"] = on["class_gradio_client"]
    if "previews" in chosen:
        off = {"skipped": needs} if needs else served.served(students, reference, flags=[served.NO_PREVIEWS])
        report["previews"] = previews_compared(on.get("class", on), off.get("class", off))


def previews_compared(on: dict, off: dict) -> dict:
    """The class with previews on against off: latencies of both and their ratios (on / off: > 1 is slower)."""
    keys = ("p50_seconds", "p95_seconds", "max_seconds", "wall_seconds")
    if "p50_seconds" not in off or "p50_seconds" not in on:
        return {"on": {k: on.get(k) for k in keys} if "p50_seconds" in on else on, "off": off}
    return {"on": {k: on[k] for k in keys}, "off": {k: off[k] for k in keys},
            "off_errors": len(off["errors"]), "off_network_fraction": off["split"]["network_fraction"],
            **{f"on_to_off_{k.removesuffix('_seconds')}": on[k] / off[k] for k in keys}}


def class_in_process(models: Models, students: list[classroom.Student], reference: list) -> dict:
    """The class as threads on one Service. On CUDA, timing every network call (a synchronize each) would slow
    it: the latencies come from an untimed run, the split from a second, timed one."""
    if models.device.type != "cuda":
        return bench_service.class_section(models, students, reference, timed=True)
    out = bench_service.class_section(models, students, reference, timed=False)
    out["split"] = bench_service.class_section(models, students, None, timed=True)["split"]
    return out


def details(report: dict, models: Models, requests: list, args: argparse.Namespace) -> None:
    """The detail sections: each network's share of the peak, each method alone, diffusers' loop, variants;
    `requests`: the runs of a default comparison."""
    if "networks" in args.chosen:
        report["networks"] = benchmarks.network_rows(models, report["machine"]["matmul_peak_gflops"], args.repeats)
        show.networks(report["networks"])
    if "methods" in args.chosen:
        report["methods"] = benchmarks.method_rows(models, requests, args.repeats)
        show.methods(report["methods"])
    if "peer" in args.chosen:
        from demo.tools.peer import peer_rows
        report["peer"] = peer_rows(models, requests, args.repeats)
        show.peer(report["peer"])
    if "tried" in args.chosen:
        report["tried"] = benchmarks.tried_rows(models, requests, args.repeats)
        show.tried(report["tried"])


if __name__ == "__main__":
    main()
