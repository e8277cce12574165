"""The presets of SPEC §4.4: name -> (trace kind, learning signal) or BPTT. `make_learner`."""
from __future__ import annotations

from typing import Any

import torch

from osttp.errors import OsttpError
from osttp.network import Network
from osttp.rules.bptt import BPTTLearner
from osttp.rules.learner import Learner
from osttp.rules.online import OnlineLearner
from osttp.rules.schedules import Schedule

# name -> (trace kind, learning signal); the rest of a rule is shared.
ONLINE_PRESETS: dict[str, tuple[str, str]] = {
    "ostl": ("diagonal", "backprop-in-space"),
    "ostl-exact": ("exact", "backprop-in-space"),
    "osttp": ("diagonal", "target-projection"),
    "osttp-exact": ("exact", "target-projection"),
    "drtp": ("none", "target-projection"),
    "dfa": ("none", "random-error"),
    "eprop-rand": ("diagonal", "random-error"),
    "eprop-sym": ("diagonal", "symmetric-error"),
}
TBPTT_DEFAULT_WINDOW = 10


def available_learners() -> list[str]:
    return ["bptt", "tbptt", *ONLINE_PRESETS]


def make_learner(name: str, net: Network, optimizer: torch.optim.Optimizer | None = None,
                 schedule: "str | int | Schedule" = "sequence-end", loss: str = "auto",
                 k: int | None = None, window: int | None = None, **options: Any) -> Learner:
    """Build a learner by preset name.

    schedule: "sequence-end" (default), "per-step", "every-k" with k, or "every-<k>".
    loss: "auto" (class indices -> "ce", float targets -> "bce"), "ce" or "bce".
    tbptt: BPTT truncated every `window` steps (default 10); its schedule is every-`window`."""
    if options:
        raise OsttpError(f"unknown learner option(s) {sorted(options)}; expected optimizer, schedule, loss, k, window")
    if name == "bptt":
        return BPTTLearner(net, optimizer, schedule, loss, k)
    if name == "tbptt":
        w = TBPTT_DEFAULT_WINDOW if window is None else window
        if not isinstance(w, int) or isinstance(w, bool) or w < 1:
            raise OsttpError(f"tbptt window must be an integer >= 1, got {w!r}")
        return BPTTLearner(net, optimizer, Schedule(w), loss, name=f"tbptt-{w}")
    if name in ONLINE_PRESETS:
        trace, signal = ONLINE_PRESETS[name]
        return OnlineLearner(net, trace, signal, optimizer, schedule, loss, k, name=name)
    raise OsttpError(f"unknown learner {name!r}; expected one of {available_learners()}")


