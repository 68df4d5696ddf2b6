"""The studies' figures: one line per method of a metric against w, with error bars over seeds."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def decorate(ax: plt.Axes, xlabel: str, ylabel: str, title: str, legend_columns: int = 1) -> None:
    """Axis labels, a title, a light grid and a legend: every figure of the studies and the app."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=legend_columns)


def method_lines(series: dict[str, tuple[Sequence[float], ...]], xlabel: str, ylabel: str,
                 title: str, colours: dict[str, str], logx: bool = False, logy: bool = False,
                 floor: tuple[str, float] | None = None) -> plt.Figure:
    """One line per method of a metric against w (or any x): (xs, ys) or (xs, ys, y_sd) with error bars of
    +- 1 sd; `floor` draws a labelled horizontal reference line (e.g. the real-data floor)."""
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=110, layout="constrained")
    for name, (xs, ys, *sd) in series.items():
        ax.errorbar(xs, ys, yerr=sd[0] if sd else None, fmt="o-", label=name, color=colours.get(name), lw=2,
                    ms=4, capsize=3)
    if floor is not None:
        ax.axhline(floor[1], color="#111827", ls=":", lw=1.5, label=floor[0])
    if logx:
        ax.set_xscale("symlog", linthresh=0.25)
        ticks = sorted({float(x) for xs, *_ in series.values() for x in xs})
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])          # the measured w, not powers of ten
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    decorate(ax, xlabel, ylabel, title)
    return fig
