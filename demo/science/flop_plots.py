"""The FLOP study's figures: solver_study.png (FID vs steps per operating point), size_study.png (each method's
best FID vs the FLOPs of a default comparison) and size_study_guides.png (autoguidance over w, per guide)."""
from __future__ import annotations

from pathlib import Path

from demo.engine.config import GUIDES
from demo.engine.guidance import GUIDANCE
from demo.science.plots import matplotlib, plt

SOLVER_COLOURS = {"ddim": "#6b7280", "dpmpp_2m": "#2563eb", "dpmpp_3m": "#db2777"}
GUIDE_COLOURS = {"default": "#059669", "collapses_early": "#dc2626", "mild": "#d97706"}


def solver_figure(solver: dict, plan, reference: dict) -> plt.Figure:
    keys = [f"{m}@{w:g}" for m, w in plan.points]
    columns = min(4, len(keys))
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), dpi=110, layout="constrained",
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        if key in reference:
            r = reference[key]
            ax.axhspan(r["fid"] - 2 * r["fid_sd"], r["fid"] + 2 * r["fid_sd"], color="#9ca3af", alpha=0.3)
            ax.axhline(r["fid"], color="#111827", ls=":", lw=1.2, label=f"{plan.reference} ± 2 sd")
        for solver_name, colour in SOLVER_COLOURS.items():
            pts = [(int(s.split(":")[1]), v["points"][key]) for s, v in solver.get("current", {}).items()
                   if s.startswith(solver_name + ":") and key in v["points"]]
            if pts:
                pts.sort(key=lambda p: p[0])
                ax.errorbar([n for n, _ in pts], [p["fid"] for _, p in pts], yerr=[p["fid_sd"] for _, p in pts],
                            fmt="o-", color=colour, label=solver_name, ms=3, capsize=2)
        ax.set_title(key.replace("@", ", w = "), fontsize=9)
        ax.set_xlabel("steps", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("FID (classifier features)", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Shipped network: FID vs steps per solver (mean ± sd over seeds)", fontsize=10)
    return fig


def size_figure(size: dict) -> plt.Figure:
    """Each (network, solver settings) a column, sorted by the FLOPs of a default comparison; a dot per method."""
    columns = sorted(((v["gflop"], name, s, v) for name, c in size["candidates"].items()
                      for s, v in c["settings"].items()), key=lambda col: col[0])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(columns) + 2), 4.4), dpi=110, layout="constrained")
    methods = [m for m in GUIDANCE if m != "unguided"]
    for x, (gflop, name, s, v) in enumerate(columns):
        for k, method in enumerate(methods):
            d = v["methods"].get(method)
            if d:
                g = GUIDANCE[method]
                ax.errorbar(x + 0.12 * (k - 2), d["best_fid"], yerr=d["best_fid_sd"], fmt="o", color=g.colour, ms=4,
                            capsize=2, label=g.short_title if x == 0 else None)
    ax.set_xticks(range(len(columns)), [f"{name}\n{s}\n{gflop:.0f} GFLOP" for gflop, name, s, _ in columns],
                  fontsize=7)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_ylabel("best FID over w (classifier features)")
    ax.set_title("Size study: each method's best FID (± sd over seeds), cheapest comparison first (no probe)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=3)
    return fig


def guides_figure(size: dict) -> plt.Figure:
    names = list(size["candidates"])
    fig, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 2.8), dpi=110, layout="constrained",
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        settings = size["candidates"][name]["settings"]
        s = next(iter(settings), None)
        if s is None:
            continue
        v = settings[s]
        for g in GUIDES:            # the default guide's rows are the method grid's autoguidance rows
            rows = sorted((r for r in v["rows"] if r["method"] == "autoguidance" and r["guide"] == g.key),
                          key=lambda r: r["w"])
            rows = ([v["unguided"]] if v["unguided"] else []) + rows
            if len(rows) > 1:
                ax.errorbar([r["w"] for r in rows], [r["fid"] for r in rows], yerr=[r["fid_sd"] for r in rows],
                            fmt="o-", color=GUIDE_COLOURS.get(g.key), label=g.label, ms=3, capsize=2)
        ax.set_yscale("log")
        ax.set_title(f"{name} ({s})", fontsize=9)
        ax.set_xlabel("autoguidance w", fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("FID (classifier features)", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    return fig


def plot_all(size: dict, solver: dict, plan, folder: Path) -> list[Path]:
    figures = {"solver_study": solver_figure(solver["nets"], plan, size["reference"]["points"]),
               "size_study": size_figure(size), "size_study_guides": guides_figure(size)}
    paths = []
    for name, fig in figures.items():
        paths.append(folder / f"{name}.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths
