"""Value checks shared by the library and the application: one wording for every bad value.

Each checker takes `where`, the name the user knows the value by ("train.lr", "PCMDevice.g_max",
"task 'delayed-xor' parameter delay", or "" when the caller prefixes the name itself), and returns the
value normalised or raises OsttpError reading

    <where> = <value>: expected <what>

so every message names the value and what would have been accepted.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

from osttp.errors import OsttpError


def show(value: Any) -> str:
    """The value as the user wrote it: a float as Python and TOML spell it (0.5, nan, inf), other
    values in their JSON form where they have one (strings quoted, true/false), else repr."""
    if isinstance(value, float):
        return repr(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def fail(where: str, value: Any, expected: str) -> OsttpError:
    """The error for `where = value` (returned, so callers write `raise fail(...)`)."""
    return OsttpError(f"{where + ' = ' if where else ''}{show(value)}: expected {expected}")


def _g(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"  # integers exactly: 9223372036854775807, not 9.22e+18


def _bounds(gt: float | None, ge: float | None, le: float | None) -> str:
    parts = [f"{op} {_g(b)}" for op, b in ((">", gt), (">=", ge), ("<=", le)) if b is not None]
    return (" " + " and ".join(parts)) if parts else ""


def integer(where: str, value: Any, *, ge: int | None = None, le: int | None = None) -> int:
    """An integer (numpy's too; not a bool: True as a count is almost certainly a mistake) within bounds."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise fail(where, value, "an integer" + _bounds(None, ge, le))
    v = int(value)
    if (ge is not None and v < ge) or (le is not None and v > le):
        raise fail(where, v, "an integer" + _bounds(None, ge, le))
    return v


def number(where: str, value: Any, *, gt: float | None = None, ge: float | None = None,
           le: float | None = None) -> float:
    """A finite real number (int accepted, returned as float; bool refused) within bounds."""
    expected = "a finite number" + _bounds(gt, ge, le)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise fail(where, value, expected)
    v = float(value)
    if not math.isfinite(v) or (gt is not None and not v > gt) or (ge is not None and not v >= ge) or \
            (le is not None and not v <= le):
        raise fail(where, value, expected)
    return v


def boolean(where: str, value: Any) -> bool:
    """Exactly True or False: a stray 0/1 or string usually means a misplaced argument."""
    if not isinstance(value, bool):
        raise fail(where, value, "true or false")
    return value


def string(where: str, value: Any, choices: Sequence[str] | None = None) -> str:
    """A string, one of `choices` when given."""
    if not isinstance(value, str):
        raise fail(where, value, "a string" if choices is None else "one of " + ", ".join(choices))
    if choices is not None and value not in choices:
        raise fail(where, value, "one of " + ", ".join(choices))
    return value
