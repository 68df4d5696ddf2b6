"""The one place that checks a user's numbers: every request (compare, sweep, 2-D lab) goes through `checked`.

Messages are for the user: one line, naming the field and the accepted range; long values are cut.
"""
from __future__ import annotations

import math
import numbers

SHOWN_CHARS = 80          # a value quoted in a message or a log line is cut to this length


class RequestError(ValueError):
    """A request outside the accepted ranges; the message is meant for the user."""


def shown(value) -> str:
    """repr(value), cut to SHOWN_CHARS characters (a 10 MB label must not reach the log whole)."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS - 1]}…"


def checked(name: str, value, low: float, high: float, integer: bool = False) -> int | float:
    """`value` as an int (integer=True) or float in [low, high]; anything else is a RequestError.

    Only real numbers pass: booleans, strings, None and lists are refused, and so is a seed or class that is
    not a whole number (1.5 is not rounded to 2)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RequestError(f"{name} must be a number, got {shown(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise RequestError(f"{name} must be finite, got {shown(value)}")
    if integer and number != int(number):
        raise RequestError(f"{name} must be a whole number, got {shown(value)}")
    if not low <= number <= high:
        raise RequestError(f"{name} must be between {low:g} and {high:g}, got {number:g}")
    return int(number) if integer else number


def choice(name: str, value, options) -> str:
    """`value` if it is one of `options` (strings), else a RequestError listing them."""
    if not isinstance(value, str) or value not in options:
        raise RequestError(f"unknown {name} {shown(value)}; choose one of {', '.join(map(str, options))}")
    return value
