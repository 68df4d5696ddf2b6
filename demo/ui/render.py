"""Pure tensor -> picture helpers (PIL and matplotlib). Nothing here samples, writes files or knows about Gradio.

Digits are 28x28: they are always upscaled with nearest-neighbour (crisp pixels) and saved as PNG/GIF.
"""
from __future__ import annotations

import base64
import functools
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from demo.science.plots import decorate  # noqa: E402

SCALE = 4                    # 28 px -> 112 px
MARKERS = ("o", "s", "^", "D", "v", "P", "X")   # one per line of a plot, so that colour is never the only cue
BACKGROUND = (255, 255, 255)
INK = (40, 40, 48)


def data_uri(pixels: np.ndarray) -> str:
    """One (H, W) uint8 image as a PNG data URI, at its own size (the browser upscales it, pixelated); each
    distinct digit is encoded once."""
    return _png_uri(pixels.tobytes(), pixels.shape)


@functools.lru_cache(maxsize=8192)
def _png_uri(raw: bytes, shape: tuple[int, int]) -> str:
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(shape)
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


def step_panels(panels: list[tuple[str, str, dict[str, np.ndarray], bool, tuple | None]], steps: np.ndarray,
                colours: dict[str, str]) -> plt.Figure:
    """Side-by-side panels of per-step quantities, one line per method and one legend below them all.
    Each panel: (title, y label, {name: values}, log scale, y limits)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), dpi=100, layout="constrained")
    for ax, (title, ylabel, series, log, ylim) in zip(np.atleast_1d(axes), panels):
        for k, (name, values) in enumerate(series.items()):      # a marker each: not told by colour alone
            ax.plot(steps[: len(values)], values, label=name, color=colours.get(name), lw=2.2,
                    marker=MARKERS[k % len(MARKERS)], markevery=max(1, len(values) // 8), ms=6)
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
    for k, (name, triples) in enumerate(points.items()):
        ws, xs, ys = zip(*triples)
        ax.plot(xs, ys, "-", marker=MARKERS[k % len(MARKERS)], label=name, color=colours.get(name), lw=2)
        for w, x, y in triples:
            ax.annotate(f"{w:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    decorate(ax, xlabel, ylabel, title)
    return fig
