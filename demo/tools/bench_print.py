"""The bench's readable report, printed as each section finishes (the goals: demo/tools/bench_goals.py)."""
from __future__ import annotations

import argparse

from demo.engine.pipeline import Request


def settings(base: Request, weights: dict[str, float], args: argparse.Namespace) -> dict:
    hi = base.interval.sigma_hi
    return {"label": base.label, "seed": base.seed, "num_samples": base.num_samples,
            "num_steps": base.sampler.num_steps, "sampler": base.sampler.sampler,
            "interval": [base.interval.sigma_lo, hi if hi != float("inf") else None], "guide": base.guide,
            "weights": {"unguided": 0.0, **weights}, "app_defaults": args.samples is None and args.steps is None,
            "students": f"{args.class_size} at once, student k: digit k mod 10, seed 1000 + k",
            "class_size": args.class_size, "repeats": args.repeats, "sections": list(args.chosen),
            "quick": args.quick, "only_gpu": args.only_gpu}


def machine(report: dict) -> None:
    m, s = report["machine"], report["settings"]
    cpu = f"{m['cpu']} ({', '.join(m['cpu_vector_units']) or 'no AVX2'})"
    where = cpu if m["device_type"] == "cpu" else f"{m['device']} (CUDA {m['cuda']}); CPU {cpu}"
    print(f"machine: {where}, {m['logical_cpus']} logical CPUs; torch {m['torch']}; commit {m['commit']}; {m['date']}")
    print(f"  fp32 matmul peak measured now: {m['matmul_peak_gflops']:.0f} GFLOP/s")
    interval = "every noise level" if s["interval"] == [0.0, None] else f"sigma in ({s['interval'][0]:g}, " \
        f"{s['interval'][1]:g}]"
    print(f"settings: {s['num_samples']} samples x {s['num_steps']} {s['sampler']} steps, guidance for {interval}, "
          f"w {', '.join(f'{m} {w:g}' for m, w in s['weights'].items())}"
          + ("" if s["app_defaults"] else " (NOT the app's defaults)") + f"; medians of {s['repeats']}\n")


def flops(f: dict) -> None:
    for name in ("default", "classic"):
        d = f[name]
        print(f"FLOPs of a {name} comparison ({d['steps']} {d['sampler']} steps): {d['served_gflop']:.1f} GFLOP as "
              f"served (sampling {d['probe_off_gflop']:.1f}, with the probe at every step {d['probe_on_gflop']:.1f});"
              f" floor {d['floor_seconds']:.3f} s at the peak")
    print(f"  classic (probe on) / default as served: {f['classic_to_default']:.1f}x\n")


def split_line(s: dict, rest: str = "HTTP and Gradio") -> str:
    r = s["per_request"]
    line = (f"{s['network_fraction']:.0%} of the time in network calls ({s['network_seconds']:.2f} s of "
            f"{s['wall_seconds']:.2f} s; other sampling work {s['sampler_outside_network_seconds']:.2f} s, compute "
            f"idle {s['compute_idle_seconds']:.2f} s; rendering {s['rendering_seconds']:.2f} s, previews "
            f"{s['previews_seconds']:.2f} s on the handler threads)\n    per request: waiting "
            f"{r['waiting_seconds']:.2f} s, sampling {r['sampling_seconds']:.2f} s, rendering "
            f"{r['rendering_seconds']:.3f} s")
    if "rest_seconds" in r:
        line += f", {rest} {r['rest_seconds']:.3f} s (of {r['latency_seconds']:.2f} s)"
    return line


def alone(a: dict) -> None:
    p = a["in_process"]
    print(f"one comparison alone, in process: {p['seconds']:.3f} s (sampling {p['sampling_seconds']:.3f} s, "
          f"rendering {p['rendering_seconds']:.3f} s; range {p['min_seconds']:.3f}-{p['max_seconds']:.3f} s); "
          f"{p['network_fraction']:.0%} in network calls")
    h = a["http"]
    if "seconds" in h:
        print(f"  through HTTP (REST calls, new seeds): {h['seconds']:.3f} s; {split_line(h['split'])}")
    else:
        print(f"  through HTTP: {h.get('skipped') or h.get('error')}")
    print()


def add_floor(report: dict, clients: int) -> None:
    """The class's FLOP floor (clients x a default comparison's FLOPs at the peak) and its ratio to the wall."""
    if "flops" not in report:
        return
    floor = clients * report["flops"]["default"]["floor_seconds"]
    for entry in report["class"].values():
        if "wall_seconds" in entry:
            entry["flop_floor_seconds"] = floor
            entry["wall_to_flop_floor"] = entry["wall_seconds"] / floor


def klass(c: dict) -> None:
    for name, title in (("in_process", "threads on one Service, in process"),
                        ("served", "REST calls against a fresh app"),
                        ("served_gradio_client", "gradio_client, the same app after it, other seeds")):
        if name == "served_gradio_client" and name not in c:
            continue                                   # run only with the served class
        e = c.get(name, {})
        if "p50_seconds" not in e:
            print(f"a class ({title}): {e.get('skipped') or e.get('error') or 'not run'}")
            continue
        eq = e.get("equality", {})
        print(f"a class of {e['clients']} ({title}): p50 {e['p50_seconds']:.2f} s, p95 {e['p95_seconds']:.2f} s, "
              f"max {e['max_seconds']:.2f} s, wall {e['wall_seconds']:.2f} s; {len(e['errors'])} errors; pixels "
              f"identical to each made alone: {eq.get('identical')} ({eq.get('compared')}/{eq.get('of')}, max "
              f"difference {eq.get('max_grey_levels')})")
        if "wall_to_flop_floor" in e:
            print(f"  FLOP floor {e['flop_floor_seconds']:.2f} s: the class took {e['wall_to_flop_floor']:.1f}x it")
        if "split" in e:
            print(f"  {split_line(e['split'], 'HTTP and Gradio' if name.startswith('served') else 'the rest')}")
    print()


def previews(p: dict) -> None:
    if "on_to_off_p50" not in p:
        print(f"previews on vs off: off {p['off'].get('skipped') or p['off'].get('error') or p['off']}\n")
        return
    print(f"previews on vs off (the served class): p50 {p['on']['p50_seconds']:.2f} vs {p['off']['p50_seconds']:.2f} s,"
          f" max {p['on']['max_seconds']:.2f} vs {p['off']['max_seconds']:.2f} s: on / off = "
          f"{p['on_to_off_p50']:.2f} (p50), {p['on_to_off_max']:.2f} (max)\n")


def ladder(x: dict) -> None:
    if "alone" not in x:
        print(f"w ladder: {x.get('skipped') or x.get('error')}\n")
        return
    a, b = x["alone"], x["with_class"]
    print(f"w ladder, one visitor in chromium 1024x768{' (?' + x['query'] + ')' if x['query'] else ''}: first result "
          f"{a['first_result_seconds']:.2f} s, ladder filled {a['ladder_fill_seconds']:.1f} s later")
    running = "while a class runs" if b["class_running_after_changes"] else "a class had begun, and ended before the last"
    for name, w in (("alone", a["w_changes"]), (running, b["w_changes"])):
        median = "no answer" if w["median_ms"] is None else f"{w['median_ms']:.0f} ms"
        print(f"  w change in the page ({name}): median {median} of {w['changes']} (max "
              f"{w['max_ms'] or float('nan'):.0f} ms, {w['unanswered']} unanswered), "
              f"{w['requests_during_changes']} requests sent")
    s, c = b["second_visitor"], b["class"]
    print(f"  a second visitor arriving during the class: first result {s['first_result_seconds']:.2f} s, ladder "
          f"{s['ladder_fill_seconds']:.1f} s later; the class: p50 {c['p50_seconds']:.2f} s, max "
          f"{c['max_seconds']:.2f} s, {len(c['errors'])} errors\n")


def startup(s: dict) -> None:
    print("start-up of app.py in a fresh process:")
    print("  " + ("\n  ".join(f"{k:32s} {v:.2f}" for k, v in s.items()) if "error" not in s and "skipped" not in s
                  else s.get("error") or s.get("skipped")))
    print()


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (key, header, format)."""
    widths = [max(len(h), 10) for _, h, _ in columns]
    lines = ["  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths))]
    for row in rows:
        lines.append("  ".join(format(row[k], f).rjust(w) for (k, _, f), w in zip(columns, widths)))
    return "\n".join(lines)


def networks(rows: list[dict]) -> None:
    print("networks (forward, no grad):")
    print(table(rows, [("network", "network", ""), ("parameters", "params", "d"), ("mflop_per_sample", "MFLOP/sample",
                       ".1f"), ("batch", "batch", "d"), ("ms_per_sample", "ms/sample", ".3f"), ("gflops", "GFLOP/s",
                       ".0f"), ("fraction_of_peak", "of peak", ".0%")]) + "\n")


def methods(rows: list[dict]) -> None:
    print("each method alone (final samples only, at its own w):")
    print(table(rows, [("method", "method", ""), ("nfe_per_sample", "NFE/sample", "d"), ("seconds", "time (s)", ".3f"),
                       ("ratio_to_unguided", "x unguided", ".2f"), ("nfe_ratio", "NFE ratio", ".2f"),
                       ("predicted_ratio", "x predicted", ".2f"), ("sampler_overhead", "total/network", ".2f")]) + "\n")


def peer(rows) -> None:
    print("peer baseline: the same denoiser in diffusers' DDIMScheduler loop, same steps and batch:")
    print(rows if isinstance(rows, str) else table(rows, [("method", "method", ""), ("ours_seconds", "ours (s)", ".3f"),
                                                          ("diffusers_seconds", "diffusers (s)", ".3f"),
                                                          ("ratio", "ours/peer", ".2f")]))
    print()


def tried(rows: list[dict]) -> None:
    print("tried:")
    print(table(rows, [("change", "change", "<52"), ("baseline_seconds", "before (s)", ".3f"),
                       ("seconds", "after (s)", ".3f"), ("speedup", "speed-up", ".2f")]) + "\n")
