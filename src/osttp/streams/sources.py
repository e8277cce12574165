"""Sources of a stream: the n-th sequence of a lane, reproducible from a seed (docs/streaming.md).

A source serves sequences one at a time by number, so a stream can be resumed anywhere by
regenerating the sequence it was in: `sequence(lane, n)` depends only on (seed, lane, n). A lane is
one of the B parallel streams; each plays the split in its own order.

    src = TaskSource(osttp.tasks.load("smnist-rows", "train"), seed=0)
    seq = src.sequence(lane=0, n=12)      # Sequence(xs (T, n_in), ys (T,) or (T, C), mask (T,))
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch

from osttp import checks
from osttp.errors import OsttpError
from osttp.tasks import Task
from osttp.tasks.base import derive_seed, torch_generator

ORDERS = ("shuffle", "file")


class Sequence(NamedTuple):
    """One sequence of one lane, time-major without a batch dimension."""

    xs: torch.Tensor  # (T, n_in)
    ys: torch.Tensor  # (T,) int64 class labels or (T, C) float targets
    mask: torch.Tensor  # (T,) 1.0 where supervised
    phase: int  # drift phase the sequence belongs to (0 without drift)


class Source:
    """What a stream reads. Subclasses set the attributes and implement `sequence`."""

    name: str
    n_in: int
    n_out: int
    target_kind: str  # "class" or "multilabel"
    loss: str  # "ce" or "bce"
    metric_name: str  # "accuracy" or "nll"
    higher_is_better: bool
    fixed_length: int | None  # every sequence has this many steps; None: lengths vary

    def sequence(self, lane: int, n: int) -> Sequence:
        raise NotImplementedError

    def phase(self, n: int) -> int:
        """The drift phase of a lane's n-th sequence (0: no drift)."""
        return 0

    def describe(self) -> dict[str, Any]:
        """Plain values naming the source (results.json)."""
        raise NotImplementedError


def _fixed_length(task: Task) -> int | None:
    """T when every sequence of the task has T steps (all but JSB)."""
    lengths = getattr(task, "lengths", None)
    if lengths is not None:
        return None if len(set(lengths)) > 1 else int(lengths[0]) - 1
    return getattr(task, "T", None)


class TaskSource(Source):
    """A task's split played sequence after sequence: pass e of lane b visits every sequence once,
    in file order (`order="file"`) or in a permutation drawn from (seed, lane, pass)."""

    def __init__(self, task: Task, seed: int = 0, order: str = "shuffle", dtype: torch.dtype = torch.float32) -> None:
        if not isinstance(task, Task):
            raise OsttpError(f"TaskSource needs an osttp task, got {type(task).__name__}")
        self.task = task
        self.seed = checks.integer("stream seed", seed, ge=0)
        self.order = checks.string("stream order", order, ORDERS)
        self.dtype = dtype
        self.name = task.name
        self.n_in, self.n_out = task.n_in, task.n_out
        self.target_kind, self.loss = task.target_kind, task.loss
        self.metric_name = "accuracy" if task.target_kind == "class" else "nll"
        self.higher_is_better = task.target_kind == "class"
        self.fixed_length = _fixed_length(task)
        self._n = len(task)
        if self._n == 0:
            raise OsttpError(f"task {task.name!r} split {task.split!r} has no sequences to stream")
        self._perms: dict[int, tuple[int, list[int]]] = {}  # lane -> (pass, its order)

    def item(self, lane: int, n: int) -> int:
        """Index into the split of lane's n-th sequence."""
        pass_no, i = divmod(n, self._n)
        if self.order == "file":
            return i
        cached = self._perms.get(lane)
        if cached is None or cached[0] != pass_no:  # one permutation per (lane, pass), drawn once
            g = torch_generator(derive_seed(self.seed, "stream-order", lane, pass_no))
            cached = self._perms[lane] = (pass_no, torch.randperm(self._n, generator=g).tolist())
        return cached[1][i]

    def sequence(self, lane: int, n: int) -> Sequence:
        i = self.item(lane, n)
        # Per-sequence randomness of a task (rate encoding) follows (stream seed, pass, item).
        pass_seed = derive_seed(self.seed, "stream-pass", n // self._n)
        batch = next(iter(self.task.batches(1, shuffle=False, seed=pass_seed, dtype=self.dtype, start=i)))
        # A batch of one sequence has no padding: every step is the sequence's own.
        return Sequence(batch.xs[:, 0], batch.ys[:, 0], batch.mask[:, 0], 0)

    def describe(self) -> dict[str, Any]:
        return {"kind": "task", "task": self.task.name, "split": self.task.split, "params": dict(self.task.params),
                "order": self.order, "seed": self.seed, "sequences": self._n, "fixed_length": self.fixed_length}
