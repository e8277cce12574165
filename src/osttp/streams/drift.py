"""Drift scenarios: a source whose task changes every K sequences (docs/streaming.md).

Sequence n of a lane belongs to phase p = n // K. Phase 0 is the base task unchanged; phase p > 0
applies a change drawn from (seed, p) alone, so every lane sees the same world at the same phase:

    permute   a new permutation of the input channels (smnist-rows: the 28 pixel columns), or of the
              time steps when the input is one channel wide (psmnist, smnist-pixels)
    remap     a new permutation of the class labels (classification tasks)
    switch    the base task in even phases, a second task in odd ones (same input and output widths)
"""
from __future__ import annotations

from typing import Any

import torch

from osttp import checks
from osttp.errors import OsttpError
from osttp.registry import Registry
from osttp.streams.sources import Sequence, Source
from osttp.tasks.base import derive_seed, torch_generator

PERMUTE_AXES = ("auto", "inputs", "steps")


class DriftSource(Source):
    """A source that changes every `every` sequences of a lane; subclasses say how."""

    scenario = "drift"

    def __init__(self, base: Source, every: int, seed: int) -> None:
        self.base = base
        self.every = checks.integer("drift every", every, ge=1)
        self.seed = checks.integer("stream seed", seed, ge=0)
        for attr in ("name", "n_in", "n_out", "target_kind", "loss", "metric_name", "higher_is_better",
                     "fixed_length"):
            setattr(self, attr, getattr(base, attr))

    def phase(self, n: int) -> int:
        return n // self.every

    def sequence(self, lane: int, n: int) -> Sequence:
        p = self.phase(n)
        seq = self.base.sequence(lane, n)
        return self.transform(seq, p)._replace(phase=p) if p > 0 else seq

    def transform(self, seq: Sequence, phase: int) -> Sequence:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "drift": self.scenario, "drift_every": self.every}


def phase_permutation(seed: int, what: str, phase: int, n: int) -> torch.Tensor:
    """The permutation of n things in a drift phase: drawn from (seed, what, phase) only."""
    return torch.randperm(n, generator=torch_generator(derive_seed(seed, "drift", what, phase)))


class PermutedInputs(DriftSource):
    """Every phase a new order of the input channels (axis "inputs") or of the time steps ("steps")."""

    scenario = "permute"

    def __init__(self, base: Source, every: int, seed: int, axis: str = "auto") -> None:
        super().__init__(base, every, seed)
        axis = checks.string("PermutedInputs axis", axis, PERMUTE_AXES)
        if axis == "auto":
            axis = "inputs" if base.n_in > 1 else "steps"
        if axis == "inputs" and base.n_in < 2:
            raise OsttpError(f"PermutedInputs axis = \"inputs\": task {base.name!r} has {base.n_in} input channel; "
                             "expected at least 2 (use steps)")
        if axis == "steps" and base.fixed_length is None:
            raise OsttpError(f"PermutedInputs axis = \"steps\": task {base.name!r} has sequences of different "
                             "lengths; expected a task with fixed-length sequences (or use inputs)")
        self.axis = axis
        self._cache: dict[int, torch.Tensor] = {}

    def _perm(self, phase: int, n: int) -> torch.Tensor:
        if phase not in self._cache:
            self._cache = {phase: phase_permutation(self.seed, f"permute-{self.axis}", phase, n)}
        return self._cache[phase]

    def transform(self, seq: Sequence, phase: int) -> Sequence:
        if self.axis == "inputs":
            return seq._replace(xs=seq.xs[:, self._perm(phase, seq.xs.shape[1])])
        return seq._replace(xs=seq.xs[self._perm(phase, seq.xs.shape[0])])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "permute_axis": self.axis}


class RemappedLabels(DriftSource):
    """Every phase a new assignment of the class labels: class c becomes map_p[c]."""

    scenario = "remap"

    def __init__(self, base: Source, every: int, seed: int) -> None:
        super().__init__(base, every, seed)
        if base.target_kind != "class":
            raise OsttpError(f"drift scenario \"remap\": task {base.name!r} has {base.target_kind} targets; "
                             "expected a classification task")
        self._cache: dict[int, torch.Tensor] = {}

    def transform(self, seq: Sequence, phase: int) -> Sequence:
        if phase not in self._cache:
            self._cache = {phase: phase_permutation(self.seed, "remap", phase, self.n_out)}
        return seq._replace(ys=self._cache[phase][seq.ys])


class SwitchedTasks(DriftSource):
    """The base task in even phases and `other` in odd phases (the n-th sequence of whichever is on)."""

    scenario = "switch"

    def __init__(self, base: Source, other: Source, every: int, seed: int) -> None:
        super().__init__(base, every, seed)
        for what in ("n_in", "n_out", "target_kind"):
            a, b = getattr(base, what), getattr(other, what)
            if a != b:
                raise OsttpError(f"SwitchedTasks other = {checks.show(other.name)}: its {what} is {b}, that of "
                                 f"{base.name!r} is {a}; expected tasks with the same {what}")
        self.other = other
        if base.fixed_length != other.fixed_length:
            self.fixed_length = None

    def sequence(self, lane: int, n: int) -> Sequence:
        p = self.phase(n)
        return (self.base if p % 2 == 0 else self.other).sequence(lane, n)._replace(phase=p)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "switch_to": self.other.describe()}


def _no_drift(base: Source, every: int | None, seed: int, other: Source | None, permute_axis: str) -> Source:
    return base


def _permute(base: Source, every: int, seed: int, other: Source | None, permute_axis: str) -> Source:
    return PermutedInputs(base, every, seed, permute_axis)


def _remap(base: Source, every: int, seed: int, other: Source | None, permute_axis: str) -> Source:
    return RemappedLabels(base, every, seed)


def _switch(base: Source, every: int, seed: int, other: Source | None, permute_axis: str) -> Source:
    assert other is not None  # with_drift checks `needs_other`
    return SwitchedTasks(base, other, every, seed)


# A factory takes (base, every, seed, other, permute_axis). meta: drifts -- the scenario changes the
# source (and needs `every`); needs_other -- it plays a second source.
SCENARIOS: Registry[Source] = Registry("drift scenario")
SCENARIOS.register("none", _no_drift, help="no drift: the source as it is", drifts=False, needs_other=False)
SCENARIOS.register("permute", _permute, help="a new order of the input channels (or time steps) every phase",
                   drifts=True, needs_other=False)
SCENARIOS.register("remap", _remap, help="a new permutation of the class labels every phase", drifts=True,
                   needs_other=False)
SCENARIOS.register("switch", _switch, help="the base task in even phases, a second task in odd ones",
                   drifts=True, needs_other=True)


def with_drift(base: Source, scenario: str, every: int | None, seed: int, *, other: Source | None = None,
               permute_axis: str = "auto") -> Source:
    """`base` under a drift scenario (SCENARIOS); every: sequences per phase (per lane)."""
    scenario = checks.string("drift scenario", scenario, SCENARIOS.names())
    entry = SCENARIOS.get(scenario)
    if other is not None and not entry.meta["needs_other"]:
        takes = ", ".join(f'"{e.name}"' for e in SCENARIOS.entries() if e.meta["needs_other"])
        raise OsttpError(f"with_drift: `other` is given but scenario {checks.show(scenario)} plays no second "
                         f"source; expected scenario {takes}")
    if entry.meta["drifts"] and every is None:
        raise OsttpError(f"drift scenario {checks.show(scenario)} needs `every` (sequences per phase)")
    if entry.meta["needs_other"] and other is None:
        raise OsttpError(f"drift scenario {checks.show(scenario)} needs `other`, the source to switch to")
    return entry.build(base=base, every=every, seed=seed, other=other, permute_axis=permute_axis)
