"""The presets (docs/math.md §4.4): name -> learner factory, in the registry PRESETS. `make_learner`.

An online preset is a (trace kind, learning signal) pair, its metadata `trace` and `signal`; the rest
of a rule is shared. BPTT and truncated BPTT are autograd learners (metadata `online=False`); a
preset with `windowed=True` (tbptt) reads the `window` option.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from osttp.errors import OsttpError
from osttp.network import Network
from osttp.registry import Registry
from osttp.rules.bptt import BPTTLearner
from osttp.rules.learner import Learner
from osttp.rules.online import OnlineLearner
from osttp.rules.schedules import Schedule
from osttp.rules.signals import make_signal

TBPTT_DEFAULT_WINDOW = 10

PRESETS: Registry[Learner] = Registry("learner")


def _bptt(net: Network, optimizer: torch.optim.Optimizer | None, schedule: "str | int | Schedule",
          loss: str, k: int | None, window: int | None, name: str) -> Learner:
    return BPTTLearner(net, optimizer, schedule, loss, k)


def _tbptt(net: Network, optimizer: torch.optim.Optimizer | None, schedule: "str | int | Schedule",
           loss: str, k: int | None, window: int | None, name: str) -> Learner:
    w = TBPTT_DEFAULT_WINDOW if window is None else window
    if not isinstance(w, int) or isinstance(w, bool) or w < 1:
        raise OsttpError(f"tbptt window must be an integer >= 1, got {w!r}")
    return BPTTLearner(net, optimizer, Schedule(w), loss, name=f"tbptt-{w}")


def register_online_preset(name: str, trace: str, signal: str, help: str = "") -> None:
    """A new online rule: one line naming its trace kind and learning signal."""
    def build(net: Network, optimizer: torch.optim.Optimizer | None, schedule: "str | int | Schedule",
              loss: str, k: int | None, window: int | None, name: str) -> Learner:
        return OnlineLearner(net, trace, signal, optimizer, schedule, loss, k, name=name)

    PRESETS.register(name, build, help=help or f"{trace} traces x {signal}", online=True, trace=trace,
                     signal=signal)


PRESETS.register("bptt", _bptt, help="backpropagation through time (autograd)", online=False)
PRESETS.register("tbptt", _tbptt, help="truncated BPTT, window k (default 10)", online=False, windowed=True)
for _name, _trace, _signal in (("ostl", "diagonal", "backprop-in-space"),
                               ("ostl-exact", "exact", "backprop-in-space"),
                               ("osttp", "diagonal", "target-projection"),
                               ("osttp-exact", "exact", "target-projection"),
                               ("drtp", "none", "target-projection"),
                               ("dfa", "none", "random-error"),
                               ("eprop-rand", "diagonal", "random-error"),
                               ("eprop-sym", "diagonal", "symmetric-error"),
                               ("osttp-fact", "factorized", "target-projection"),
                               ("eprop-fact", "factorized", "random-error"),
                               ("osttp-centred", "diagonal", "centred-target-projection"),
                               ("osttp-local", "diagonal", "local-error"),
                               ("osttp-local-fact", "factorized", "local-error"),
                               ("readout-only", "none", "none")):
    register_online_preset(_name, _trace, _signal)


class _OnlinePresets(Mapping[str, tuple[str, str]]):
    """name -> (trace kind, signal) of every online preset registered now (a live view of PRESETS)."""

    def _items(self) -> dict[str, tuple[str, str]]:
        return {e.name: (e.meta["trace"], e.meta["signal"]) for e in PRESETS.entries() if e.meta.get("online")}

    def __getitem__(self, name: str) -> tuple[str, str]:
        return self._items()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


ONLINE_PRESETS: Mapping[str, tuple[str, str]] = _OnlinePresets()


def available_learners() -> list[str]:
    return PRESETS.names()


def make_learner(name: str, net: Network, optimizer: torch.optim.Optimizer | None = None,
                 schedule: "str | int | Schedule" = "sequence-end", loss: str = "auto",
                 k: int | None = None, window: int | None = None, signal_options: Mapping[str, Any] | None = None,
                 **options: Any) -> Learner:
    """Build a learner by preset name.

    schedule: "sequence-end" (default), "per-step", "every-k" with k, or "every-<k>".
    loss: "auto" (class indices -> "ce", float targets -> "bce"), "ce" or "bce".
    tbptt: BPTT truncated every `window` steps (default 10); its schedule is every-`window`.
    signal_options: parameters of an online preset's learning signal (e.g. {"beta": 2.0} for osttp-local)."""
    if options:
        raise OsttpError(f"unknown learner option(s) {sorted(options)}; expected optimizer, schedule, loss, k, window, "
                         "signal_options")
    entry = PRESETS.get(name)
    if not entry.meta.get("windowed"):
        window = None  # only windowed presets (tbptt) read a window (documented); the others ignore it
    learner = entry.factory(net, optimizer, schedule, loss, k, window, name)
    if signal_options:
        if not isinstance(learner, OnlineLearner):
            raise OsttpError(f"rule {name!r} has no learning signal; signal options ({', '.join(sorted(signal_options))}) "
                             "apply to the online rules")
        learner.signal = make_signal(entry.meta["signal"], **dict(signal_options))
    return learner
