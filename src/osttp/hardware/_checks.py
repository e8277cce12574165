"""Validation helpers: every bad value raises OsttpError naming the field, the value and what was expected."""
from __future__ import annotations

import math

from osttp.errors import OsttpError


def fail(owner: str, field: str, value: object, expected: str) -> OsttpError:
    """The error for `owner.field = value` (not raised here, so callers write `raise fail(...)`)."""
    return OsttpError(f"{owner}.{field} = {value!r}: expected {expected}")


def number(owner: str, field: str, value: object, *, gt: float | None = None, ge: float | None = None,
           le: float | None = None) -> float:
    """A finite real number within the given bounds; bool is refused (it is an int in Python)."""
    bounds = []
    if gt is not None:
        bounds.append(f"> {gt}")
    if ge is not None:
        bounds.append(f">= {ge}")
    if le is not None:
        bounds.append(f"<= {le}")
    expected = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail(owner, field, value, expected)
    if (gt is not None and not value > gt) or (ge is not None and not value >= ge) or \
            (le is not None and not value <= le):
        raise fail(owner, field, value, expected)
    return float(value)


def integer(owner: str, field: str, value: object, *, ge: int | None = None, le: int | None = None) -> int:
    """An int (not a bool, not a float) within the given bounds."""
    bounds = [f">= {ge}"] if ge is not None else []
    if le is not None:
        bounds.append(f"<= {le}")
    expected = "an integer" + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(owner, field, value, expected)
    if (ge is not None and value < ge) or (le is not None and value > le):
        raise fail(owner, field, value, expected)
    return value


def boolean(owner: str, field: str, value: object) -> bool:
    """Exactly True or False: a stray 0/1 or string usually means a misplaced argument."""
    if not isinstance(value, bool):
        raise fail(owner, field, value, "True or False")
    return value
