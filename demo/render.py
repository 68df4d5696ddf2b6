"""Pure tensor -> picture helpers (PIL and matplotlib). Nothing here samples, writes files or knows about Gradio.

Digits are 28x28: they are always upscaled with nearest-neighbour (crisp pixels) and saved as PNG/GIF.
"""
from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from torch import Tensor  # noqa: E402

SCALE = 4                    # 28 px -> 112 px
BACKGROUND = (255, 255, 255)
INK = (40, 40, 48)


def to_uint8(images: Tensor) -> np.ndarray:
    """(B, 1, H, W) or (B, H, W) in [-1, 1] -> (B, H, W) uint8, white digits on black as in MNIST."""
    images = images.detach().float().cpu().reshape(-1, *images.shape[-2:])
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def noisy_to_uint8(x: Tensor, sigma: float) -> np.ndarray:
    """A noisy state x = y + sigma n shown at unit scale: x / sqrt(1 + sigma^2)."""
    return to_uint8(x / math.sqrt(1 + sigma**2))


def data_uri(pixels: np.ndarray) -> str:
    """One (H, W) uint8 image as a PNG data URI, at its own size (the browser upscales it, pixelated)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def digit(pixels: np.ndarray, scale: int = SCALE) -> Image.Image:
    """One (H, W) uint8 digit, upscaled with nearest-neighbour."""
    image = Image.fromarray(pixels, mode="L")
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def grid(rows: Sequence[np.ndarray], row_labels: Sequence[str], col_labels: Sequence[str] = (),
         scale: int = 2, gap: int = 2, label_width: int = 150, title: str = "", font_size: int = 13) -> Image.Image:
    """Rows of (N, H, W) uint8 digits as one labelled RGB picture (the downloadable comparison grid)."""
    h, w = rows[0].shape[-2:]
    cell_h, cell_w = h * scale + gap, w * scale + gap
    cols = max(len(r) for r in rows)
    title_h = font_size + 11 if title else 0
    top = title_h + (font_size + 7 if col_labels else 0)
    canvas = Image.new("RGB", (label_width + cols * cell_w + gap, top + len(rows) * cell_h + gap), BACKGROUND)
    draw, text_font = ImageDraw.Draw(canvas), font(font_size)
    if title:
        draw.text((6, title_h // 2), title, fill=INK, font=font(font_size + 2), anchor="lm")
    for j, text in enumerate(col_labels):
        draw.text((label_width + j * cell_w + cell_w // 2, (title_h + top) // 2), text, fill=INK, font=text_font,
                  anchor="mm")
    for i, (row, text) in enumerate(zip(rows, row_labels)):
        y = top + i * cell_h + gap
        draw.text((6, y + cell_h // 2), text, fill=INK, font=text_font, anchor="lm")
        for j, pixels in enumerate(row):
            canvas.paste(digit(pixels, scale).convert("RGB"), (label_width + j * cell_w + gap, y))
    return canvas


def animation(frames: Sequence[Image.Image], duration_ms: int = 90, hold_last_ms: int = 1200) -> bytes:
    """An endlessly looping GIF of the frames, holding the final one."""
    buffer = io.BytesIO()
    durations = [duration_ms] * (len(frames) - 1) + [hold_last_ms]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=list(frames[1:]), duration=durations,
                   loop=0, optimize=False)
    return buffer.getvalue()


def _decorate(ax: plt.Axes, xlabel: str, ylabel: str, title: str, legend_columns: int = 1) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=legend_columns)


def step_panels(panels: list[tuple[str, str, dict[str, np.ndarray], bool, tuple | None]], steps: np.ndarray,
                colours: dict[str, str]) -> plt.Figure:
    """Side-by-side panels of per-step quantities, one line per method and one legend below them all.
    Each panel: (title, y label, {name: values}, log scale, y limits)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), dpi=100, layout="constrained")
    for ax, (title, ylabel, series, log, ylim) in zip(np.atleast_1d(axes), panels):
        for name, values in series.items():
            ax.plot(steps[: len(values)], values, label=name, color=colours.get(name), lw=2.2)
        if log:
            ax.set_yscale("symlog", linthresh=1e-2)
        if ylim:
            ax.set_ylim(*ylim)
        ax.set_xlabel("sampling step (noise decreases →)", fontsize=12)
        ax.set_ylabel(ylabel, fontsize=12)
        ax.set_title(title, fontsize=13)
        ax.tick_params(labelsize=11)
        ax.grid(alpha=0.3)
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=12, frameon=False)
    return fig


def tradeoff(points: dict[str, list[tuple[float, float, float]]], xlabel: str, ylabel: str,
             title: str, colours: dict[str, str]) -> plt.Figure:
    """Per-method curves of (x, y) points annotated with their guidance weight w: (w, x, y) triples."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100, layout="constrained")
    for name, triples in points.items():
        ws, xs, ys = zip(*triples)
        ax.plot(xs, ys, "o-", label=name, color=colours.get(name), lw=2)
        for w, x, y in triples:
            ax.annotate(f"{w:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    _decorate(ax, xlabel, ylabel, title)
    return fig


def toy_panels(panels: dict[str, dict], extent: float, title: str, colours: dict[str, str]) -> plt.Figure:
    """One panel per method: tilted-density filled contours, p(x|c) contour lines, trajectories, samples and,
    optionally, the guidance vector field. Each panel dict has xx, yy, cond, tilted, paths (N+1, K, 2) (drawn
    trajectories), finals (B, 2) (every final point) and field."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.7), dpi=100, layout="constrained",
                             sharex=True, sharey=True)
    for ax, (name, panel) in zip(np.atleast_1d(axes), panels.items()):
        ax.contourf(panel["xx"], panel["yy"], panel["tilted"], levels=12, cmap="Blues", alpha=0.85)
        ax.contour(panel["xx"], panel["yy"], panel["cond"], levels=6, colors="0.35", linewidths=0.7,
                   linestyles="dashed")
        paths = panel["paths"]
        for k in range(min(12, paths.shape[1])):
            ax.plot(paths[:, k, 0].clip(-extent, extent), paths[:, k, 1].clip(-extent, extent), lw=0.6,
                    color="0.25", alpha=0.6)
        ax.scatter(panel["finals"][:, 0], panel["finals"][:, 1], s=3, color=colours.get(name, "k"), alpha=0.6)
        if panel.get("field") is not None:
            fx, fy, u, v = panel["field"]
            ax.quiver(fx, fy, u, v, color="#b91c1c", angles="xy", scale_units="xy", scale=None, width=0.004)
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=10, color=colours.get(name, "k"))
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


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
    _decorate(ax, xlabel, ylabel, title)
    return fig
