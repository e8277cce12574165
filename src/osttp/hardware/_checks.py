"""The hardware package's spelling of `osttp.checks`: bad values are named `Owner.field` (e.g.
"PCMDevice.g_max"); the checks and the message format are osttp.checks's."""
from __future__ import annotations

from osttp import checks
from osttp.errors import OsttpError


def fail(owner: str, field: str, value: object, expected: str) -> OsttpError:
    return checks.fail(f"{owner}.{field}", value, expected)


def number(owner: str, field: str, value: object, *, gt: float | None = None, ge: float | None = None,
           le: float | None = None) -> float:
    return checks.number(f"{owner}.{field}", value, gt=gt, ge=ge, le=le)


def integer(owner: str, field: str, value: object, *, ge: int | None = None, le: int | None = None) -> int:
    return checks.integer(f"{owner}.{field}", value, ge=ge, le=le)


def boolean(owner: str, field: str, value: object) -> bool:
    return checks.boolean(f"{owner}.{field}", value)
