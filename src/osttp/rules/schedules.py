"""Update schedules (docs/math.md §4.3): when accumulated gradients are written and applied.

per-step: every step (truly online); every-k: every k steps; sequence-end: only on `apply()`.
For BPTT the schedule also truncates the graph, so bptt + every-k is truncated BPTT (tbptt-k)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from osttp.errors import OsttpError


@dataclass(frozen=True)
class Schedule:
    every: int | None  # None: sequence end (the caller's apply())

    def due(self, steps_since_reset: int) -> bool:
        return self.every is not None and steps_since_reset % self.every == 0

    @property
    def name(self) -> str:
        if self.every is None:
            return "sequence-end"
        return "per-step" if self.every == 1 else f"every-{self.every}"


def make_schedule(spec: "str | int | Schedule", k: int | None = None) -> Schedule:
    """'per-step', 'sequence-end', 'every-k' (with k=...), 'every-10', or an int k >= 1."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool):
        every: int | None = spec
    elif spec == "per-step":
        every = 1
    elif spec == "sequence-end":
        every = None
    elif spec == "every-k":
        every = k
    elif isinstance(spec, str) and re.fullmatch(r"every-(\d+)", spec):
        every = int(spec.split("-")[1])
    else:
        raise OsttpError(f"unknown schedule {spec!r}; expected 'per-step', 'sequence-end', 'every-k' "
                         "(with k) or 'every-<k>'")
    if every is not None and (not isinstance(every, int) or every < 1):
        raise OsttpError(f"schedule interval k must be an integer >= 1, got {every!r}")
    return Schedule(every)
