"""The FLOP study's report: per-seed results -> size_study.json, solver_study.json, plots, a summary, the tar.

A point is the mean +- sample sd over seeds of FID (classifier features), accuracy and recall (demo.science.evaluate).
Two points agree if they are within seed noise (solver_study.within_noise: 2 sd). A method's default w is the
smallest w > 0 whose FID is within noise of its best (issue 21); autoguidance's guides are summed up as in the
guide study (best FID, FID at w = 3 over the best, the w where FID doubles: findings.degradation_point).
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import tarfile
import time
from pathlib import Path

from demo.engine.config import GUIDES
from demo.engine.guidance import METHODS
from demo.science.evaluate import FID
from demo.science.findings import degradation_point
from demo.science.solver_study import within_noise

TAR_LIMIT = 15 * 2**20 + 2**19          # 15.5 MiB of files: the tar stays under the 16 MiB a result file may have
METRICS = {"fid": FID, "accuracy": "accuracy", "recall": "recall", "precision": "precision"}


class Results:
    """The measured seeds, indexed by (net, guide, method, w, setting, seed)."""

    def __init__(self, runs: list[dict], per_class: int):
        self.index = {(r["net"], r["guide"], r["method"], float(r["w"]), r["setting"], r["seed"]): r
                      for r in runs if r["samples"] == per_class * 10}

    def point(self, net: str, guide: str, method: str, w: float, setting: str, seeds) -> dict | None:
        found = [r for s in seeds if (r := self.index.get((net, guide, method, float(w), setting, s)))]
        if not found:
            return None
        out = {"method": method, "w": w, "guide": guide, "seeds": len(found)}
        for name, key in METRICS.items():
            values = [r[key] for r in found]
            out[name] = statistics.fmean(values)
            out[f"{name}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        return out


def curve_summary(rows: list[dict]) -> dict:
    """Best FID and its w, the default w (smallest w > 0 within noise of the best), FID at w = 3 over the best and
    the w where FID doubles, from rows of one method (w = 0, unguided, included)."""
    best = min(rows, key=lambda r: r["fid"])
    guided = [r for r in rows if r["w"] > 0]
    default = min((r for r in guided if within_noise(r, best, ("fid",))), key=lambda r: r["w"], default=best)
    at3 = next((r for r in rows if r["w"] == 3.0), None)
    return {"best_w": best["w"], "best_fid": best["fid"], "best_fid_sd": best["fid_sd"],
            "accuracy_at_best": best["accuracy"], "recall_at_best": best["recall"], "default_w": default["w"],
            "fid_at_default": default["fid"], "fid_at_default_sd": default["fid_sd"],
            "fid_w3_over_best": at3["fid"] / best["fid"] if at3 else None,
            "fid_doubles_at_w": degradation_point([(r["w"], r["fid"]) for r in rows], best["w"], best["fid"])}


def operating_points(results: Results, plan, net: str, setting: str) -> dict[str, dict]:
    out = {}
    for method, w in plan.points:
        p = results.point(net, GUIDES[0].key, method, w, setting, plan.point_seeds)
        if p:
            out[f"{method}@{w:g}"] = p
    return out


def holds(points: dict, reference: dict, plan) -> bool | None:
    """Within seed noise of the reference at every operating point (None: some point is not measured)."""
    keys = [f"{m}@{w:g}" for m, w in plan.points]
    if not all(k in points and k in reference for k in keys):
        return None
    return all(within_noise(points[k], reference[k]) for k in keys)


def grid(results: Results, plan, net: str, setting: str) -> dict:
    """Every method over its w grid, and autoguidance with each guide, at one setting."""
    unguided = results.point(net, GUIDES[0].key, "unguided", 0.0, setting, plan.grid_seeds)
    rows, methods, guides = [], {}, {}
    for method in METHODS[1:]:
        curve = [p for w in plan.weights if w > 0 and (p := results.point(net, GUIDES[0].key, method, w, setting,
                                                                            plan.grid_seeds))]
        rows += curve
        if curve and unguided:
            methods[method] = curve_summary([unguided, *curve])
    for g in GUIDES:
        curve = [p for w in plan.guide_weights if (p := results.point(net, g.key, "autoguidance", w, setting,
                                                                           plan.grid_seeds))]
        rows += curve if g.key != GUIDES[0].key else []
        if curve and unguided:
            guides[g.key] = curve_summary([unguided, *curve])
    return {"unguided": unguided, "rows": rows, "methods": methods, "guides": guides}


def build(plan, runs: list[dict], per_sample: dict, costs: dict, trainings: dict, device: str) -> tuple[dict, dict]:
    results = Results(runs, plan.per_class)
    reference = operating_points(results, plan, "current", plan.reference)
    steps = sorted({*plan.steps, int(plan.reference.split(":")[1])})
    candidates, solver = {}, {}
    for c in plan.candidates:
        cost = costs[c.name]
        gflop = {str(n): {"plain": round(cost.gflop(n), 2), "recorded": round(cost.gflop(n, True), 2)} for n in steps}
        n = per_sample[c.name]["budget_steps"]
        settings = {}
        for s in [f"{solver}:{n}" for solver in plan.grid_solvers] + ([plan.reference] if c.name == "current" else []):
            points = operating_points(results, plan, c.name, s)
            settings[s] = {"gflop": round(cost.gflop(int(s.split(":")[1])), 2), "holds": holds(points, reference, plan),
                           "points": points, **grid(results, plan, c.name, s)}
        candidates[c.name] = {**per_sample[c.name], "comparison_gflop": gflop, "settings": settings,
                              "trainings": {k: v for k, v in trainings.items() if k.startswith(c.name + "-")}}
        solvers = plan.solvers if c.name == "current" else plan.grid_solvers
        solver[c.name] = {f"{s}:{k}": {"gflop": round(cost.gflop(k), 2), "gflop_recorded": round(cost.gflop(k, True), 2),
                                       "holds": holds(pts, reference, plan), "points": pts}
                          for s in solvers for k in plan.steps
                          if (pts := operating_points(results, plan, c.name, f"{s}:{k}"))}
    meta = {"device": device, "reproducible": device == "cpu",
            "note": "on a GPU the kernels are not deterministic: rerunning gives other digits within seed noise",
            "plan": {k: v for k, v in dataclasses.asdict(plan).items() if k != "candidates"}
            | {"candidates": [c.name for c in plan.candidates]},
            "reference": {"net": "current", "setting": plan.reference, "points": reference}}
    return {**meta, "candidates": candidates}, {**meta, "nets": solver}


def fmt(p: dict | None, mark: str = "") -> str:
    return "-" if not p else f"{p['fid']:.2f}±{p['fid_sd']:.2f}{mark}"


def summary(size: dict, solver: dict, plan) -> str:
    """The compact table the run prints last (FID mean±sd; * = outside seed noise of the reference)."""
    lines = [f"FLOP study on {size['device']} (bit-reproducible: {size['reproducible']}). FID = FID (classifier "
             "features), mean±sd over seeds; * = outside seed noise (2 sd) of the reference", "",
             "net         params MFLOP/sample CPUx budget GFLOP per comparison at steps (no probe/with probe)"]
    for name, c in size["candidates"].items():
        g = " ".join(f"{n}:{v['plain']:.0f}/{v['recorded']:.0f}" for n, v in c["comparison_gflop"].items())
        lines.append(f"{name:<11} {c['parameters']:>6} {c['denoiser_mflop']:>12.1f} {c['cpu_time_vs_current']:>4.2f} "
                     f"{c['budget_steps']:>6} {g}")
    ref = size["reference"]["points"]
    keys = [f"{m}@{w:g}" for m, w in plan.points]
    short = {"unguided": "ung", "cfg": "cfg", "autoguidance": "ag", "gfcg": "gfcg", "gfcg_ag": "gf+ag",
             "classifier": "cg"}
    lines += ["", f"Operating points, FID (reference: {plan.reference} on the shipped network):",
              f"{'net':<10}{'setting':<12}{'GFLOP':>5} {'holds':<5}" +
              "".join(f"{short[m] + ' w=' + format(w, 'g'):>11}" for m, w in plan.points),
              f"{'current':<10}{plan.reference:<12}{'':>5} {'ref':<5}" + "".join(f"{fmt(ref.get(k)):>11}" for k in keys)]
    for net, settings in solver["nets"].items():
        for s, v in settings.items():
            marks = ["*" if k in ref and k in v["points"] and not within_noise(v["points"][k], ref[k]) else ""
                     for k in keys]
            lines.append(f"{net:<10}{s:<12}{v['gflop']:>5.0f} {str(v['holds']):<5}" +
                         "".join(f"{fmt(v['points'].get(k), m):>11}" for k, m in zip(keys, marks)))
    lines += ["", "Per method: best FID (its w) / default w = smallest within noise of the best: FID there;",
              "autoguidance per guide: best FID (w), FID at w=3 over the best, w where FID doubles"]
    for name, c in size["candidates"].items():
        for s, v in c["settings"].items():
            cells = [f"{short[m]} {d['best_fid']:.2f}({d['best_w']:g})/{d['default_w']:g}:{d['fid_at_default']:.2f}"
                     for m, d in v["methods"].items()]
            lines.append(f"{name:<10}{s:<12}{v['gflop']:>4.0f} ung {fmt(v['unguided'])}  " + "  ".join(cells))
            guides = [f"{g} {d['best_fid']:.2f}({d['best_w']:g}) "
                      f"{'-' if d['fid_w3_over_best'] is None else format(d['fid_w3_over_best'], '.1f')}x "
                      f"{'-' if d['fid_doubles_at_w'] is None else format(d['fid_doubles_at_w'], '.1f')}"
                      for g, d in v["guides"].items()]
            if guides:
                lines.append(f"{'':<10}guides: " + " | ".join(guides))
    return "\n".join(lines) + "\n"


def write(results_dir: Path, plan, runs, per_sample, costs, trainings, device: str, plots: bool) -> str:
    size, solver = build(plan, runs, per_sample, costs, trainings, device)
    (results_dir / "size_study.json").write_text(json.dumps(size, indent=1) + "\n")
    (results_dir / "solver_study.json").write_text(json.dumps(solver, indent=1) + "\n")
    text = summary(size, solver, plan)
    (results_dir / "summary.txt").write_text(text)
    if plots:
        from demo.science.flop_plots import plot_all
        plot_all(size, solver, plan, results_dir)
    return text


class Study:
    """The main process's side: the per-seed results file, the report and the tar, kept up to date."""

    def __init__(self, plan, work: Path, out: Path, device: str, costs: dict, per_sample: dict,
                 began: float | None = None):
        self.plan, self.work, self.out, self.device = plan, work, out, device
        self.costs, self.per_sample = costs, per_sample
        self.results = work / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.runs_file = self.results / "runs.jsonl"
        self.runs = read_lines(self.runs_file)
        self.trainings = json.loads((self.results / "trainings.json").read_text()) \
            if (self.results / "trainings.json").exists() else {}
        meta = {"device": device, "per_sample": per_sample,
                "costs": {name: dataclasses.asdict(cost) for name, cost in costs.items()}}
        (self.results / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        self.log = (self.results / "log.txt").open("a")
        self.last_pack = time.monotonic()
        self.began = self.last_pack if began is None else began
        self.failures = 0

    def say(self, line: str, stdout: bool = True) -> None:
        line = f"[{time.monotonic() - self.began:4.0f} s] {line}"
        self.log.write(line + "\n")
        self.log.flush()
        if stdout:
            print(line, flush=True)

    def on_done(self, task, result, seconds: float) -> None:
        if hasattr(task.payload, "training"):
            self.trainings[task.payload.training.name] = {"seconds": round(seconds, 1), "files": result}
            (self.results / "trainings.json").write_text(json.dumps(self.trainings, indent=1) + "\n")
            stop = task.payload.training.stop
            self.say(f"trained {task.payload.training.name}: {stop} it in {seconds:.0f} s ({stop / seconds:.0f} it/s)")
        else:
            result["seconds"] = round(seconds, 3)
            self.runs.append(result)
            with self.runs_file.open("a") as file:
                file.write(json.dumps(result) + "\n")

    def on_note(self, key: str, message) -> None:
        """A worker's note or failure: the log keeps every traceback, stdout the first 20 failures' last lines."""
        text = str(message)
        failure = "Traceback" in text or "died" in text
        self.failures += failure
        shown = not failure or self.failures <= 20
        self.say(f"{key}: {text.strip().splitlines()[-1] if failure else text}", stdout=shown)
        if failure:
            self.say(text, stdout=False)

    def report(self, final: bool) -> str:
        return write(self.results, self.plan, self.runs, self.per_sample, self.costs, self.trainings,
                     self.device, plots=final)

    def pack(self) -> Path:
        path = pack(self.work, self.out / "flop_study.tar.gz")
        self.last_pack = time.monotonic()
        return path


def read_lines(path: Path) -> list[dict]:
    """The JSON lines of a results file; a last line cut by a kill is skipped."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def pack(work: Path, path: Path) -> Path:
    """WORK/results and the trained networks (main denoisers first, mild guides last) as one tar.gz under
    TAR_LIMIT; written beside and renamed, so a tar on disk is always whole."""
    files = sorted((work / "results").glob("*"))
    networks = sorted((work / "networks").glob("*/*"))
    order = ("-main/denoiser", "-quarter/", "-half/", "/MANIFEST", "-main/")
    networks.sort(key=lambda p: next((k for k, o in enumerate(order) if o in p.as_posix()), len(order)))
    total, chosen = 0, []
    for f in [*files, *networks]:
        if f.is_file() and total + f.stat().st_size <= TAR_LIMIT:
            chosen.append(f)
            total += f.stat().st_size
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for f in chosen:
            tar.add(f, arcname=f.relative_to(work).as_posix())
    partial.replace(path)
    return path
