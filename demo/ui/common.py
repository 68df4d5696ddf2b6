"""What every tab shares: the loaded service, the widgets made from the contract's fields, user errors as one
message, and following a live computation with a progress bar."""
from __future__ import annotations

import functools
import inspect
import tempfile
import time
from pathlib import Path

import gradio as gr

from demo.engine.progress import Live
from demo.engine.validation import RequestError
from demo.serving.service import Service
from demo.ui.form import Field

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
YIELD_EVERY = 0.5          # seconds between no-change yields of a long run (Stop acts at the next one)


class Runtime:
    """The loaded models' service and this run's private output folder (serving.server attaches them)."""
    service: Service | None = None
    out_dir: Path = Path(tempfile.gettempdir()) / "guidance_lab"    # the server attaches a private one
    weights_folder: Path | None = None     # where the weights were loaded from (the guides' study numbers)
    previews: bool = True                  # show a comparison forming while it samples (--no-previews: off)

    @classmethod
    def get(cls) -> Service:
        if cls.service is None:
            raise gr.Error("The models are not loaded yet.")
        return cls.service


def checked_input(widget, field: Field):
    """`widget`, its values checked by `field` before Gradio's own preprocessing (which would round a seed of
    1.5, or answer a bad choice with a message that names no field): a bad value is one gr.Error line."""
    def preprocess(value):
        try:
            return field.check(value)
        except RequestError as error:
            raise gr.Error(str(error), print_exception=False) from None
    widget.preprocess = preprocess
    return widget


def slider(field: Field, step: float, **options) -> gr.Slider:
    options = {"label": field.label, "value": field.default, **options}
    return checked_input(gr.Slider(field.low, field.high, step=step, **options), field)


def number(field: Field, **options) -> gr.Number:
    options = {"label": field.label, "value": field.default, "minimum": field.low, "maximum": field.high, **options}
    return checked_input(gr.Number(**options), field)


def radio(field: Field, labels: dict | None = None, **options) -> gr.Radio:
    choices = [((labels or {}).get(c, str(c)), c) for c in field.choices]
    return checked_input(gr.Radio(choices, **{"label": field.label, "value": field.default, **options}), field)


def user_errors(fn):
    """A handler whose RequestError reaches the user as one message (and the log as one line)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                return (yield from fn(*args, **kwargs))
            except RequestError as error:
                raise gr.Error(str(error), print_exception=False) from None
        return generator

    @functools.wraps(fn)
    def function(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RequestError as error:
            raise gr.Error(str(error), print_exception=False) from None
    return function


def follow(live: Live, progress, desc: str, num_outputs: int):
    """Drive a live computation: a progress bar per step, and a no-change yield (gr.skip) at most every
    YIELD_EVERY seconds so that Stop can end it between steps. Afterwards live.result holds the result."""
    last = time.perf_counter()
    for done, total in live:
        progress((done, total), desc=desc)
        if time.perf_counter() - last > YIELD_EVERY:
            last = time.perf_counter()
            yield (gr.skip(),) * num_outputs
