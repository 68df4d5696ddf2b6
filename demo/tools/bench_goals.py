"""The goals of issues 21 and 22, each against what this run measured. CPU times are compared with the goal
scaled by the ratio of the reference machine's matmul peak to this one's (issue 21: "the same run, scaled by
the ratio of the two machines' matmul peaks"); GPU goals are absolute (issue 21 §5). A goal whose measurement
this run did not make is left out. Goals are only meaningful at the app's defaults (settings.app_defaults)."""
from __future__ import annotations

REFERENCE_PEAK_GFLOPS = 150.0      # issue 21's reference: a quiet 2-core AMD EPYC KVM guest (AVX2)


def _get(report: dict, *path):
    for key in path:
        if not isinstance(report, dict) or key not in report:
            return None
        report = report[key]
    return report


def goals(report: dict) -> list[dict]:
    out = []
    gpu = report["machine"]["device_type"] == "cuda"
    scale = 1.0 if gpu else REFERENCE_PEAK_GFLOPS / report["machine"]["matmul_peak_gflops"]

    def goal(what: str, measured, limit: float, at_most: bool = True, scaled: bool = False) -> None:
        if measured is None:
            return
        limit = limit * scale if scaled else limit
        out.append({"what": what, "measured": measured, "goal": f"{'<=' if at_most else '>='} {limit:.3g}",
                    "met": bool(measured <= limit if at_most else measured >= limit)})

    goal("GFLOP of a default comparison (as served)", _get(report, "flops", "default", "served_gflop"), 30.0)
    if gpu:
        goal("comparison alone, in process (s)", _get(report, "alone", "in_process", "seconds"), 0.1)
        goal("class in process: slowest student (s)", _get(report, "class", "in_process", "max_seconds"), 2.0)
    else:
        goal("comparison alone, in process (s)", _get(report, "alone", "in_process", "seconds"), 0.4, scaled=True)
        goal("comparison alone, HTTP (s)", _get(report, "alone", "http", "seconds"), 0.4, scaled=True)
        goal("served class p50 (s)", _get(report, "class", "served", "p50_seconds"), 8.0, scaled=True)
        goal("served class max (s)", _get(report, "class", "served", "max_seconds"), 15.0, scaled=True)
        goal("served class: share of time in network calls", _get(report, "class", "served", "split",
                                                                    "network_fraction"), 0.8, at_most=False)
        goal("w ladder filled after the first result (s)", _get(report, "ladder", "alone", "ladder_fill_seconds"),
             15.0, scaled=True)
    for where in ("in_process", "served", "served_gradio_client"):
        errors = _get(report, "class", where, "errors")
        goal(f"class {where}: errors", None if errors is None else len(errors), 0)
        identical = _get(report, "class", where, "equality", "identical")
        goal(f"class {where}: pixels identical to each made alone (1 = yes)",
             None if identical is None else int(identical), 1, at_most=False)
    for name in ("alone", "with_class"):
        goal(f"w change in the page, median ms ({name})", _get(report, "ladder", name, "w_changes", "median_ms"), 50)
        goal(f"requests sent during w changes ({name})",
             _get(report, "ladder", name, "w_changes", "requests_during_changes"), 0)
    goal("class with previews on / off, p50 (no slower; 5% for noise)", _get(report, "previews", "on_to_off_p50"),
         1.05)
    return out


def goal_table(rows: list[dict], app_defaults: bool) -> None:
    print("goals" + ("" if app_defaults else " (NOT at the app's defaults: only a smoke test)") + ":")
    for row in rows:
        measured = row["measured"]
        shown = f"{measured:.3g}" if isinstance(measured, float) else str(measured)
        print(f"  {'met    ' if row['met'] else 'NOT met'}  {row['what']:62s} {shown:>8s}  (goal {row['goal']})")
