"""A stream: B lanes of a source played step by step, with a position that can be saved and sought.

    stream = DataStream(source, batch=1)
    step = stream.next()            # Step(x (B, n_in), y, mask (B,), ...) -- one time step of every lane
    pos = stream.position()         # plain values; DataStream(source, 1).seek(pos) continues identically

Each lane plays its own sequences one after another with no gap; the learner sees a continuous signal
and the flags say where sequences end (for an optional state reset, or BPTT's update) and where the
source's drift phase changes.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch

from osttp import checks
from osttp.errors import OsttpError
from osttp.streams.sources import Sequence, Source


class Step(NamedTuple):
    """One time step of every lane."""

    index: int  # steps of the stream before this one
    x: torch.Tensor  # (B, n_in)
    y: torch.Tensor  # (B,) int64 or (B, C) float
    mask: torch.Tensor  # (B,) 1.0 where supervised
    final: torch.Tensor  # (B,) bool: the last supervised step of the lane's sequence
    ends: int  # how many lanes end a sequence with this step
    drift: bool  # lane 0 starts the first sequence of a new drift phase with this step
    phase: int  # drift phase of lane 0's sequence


class _Lane:
    """One lane: which sequence (n) and which step of it (t) comes next."""

    __slots__ = ("n", "t", "seq", "final", "T")

    def __init__(self) -> None:
        self.n, self.t = 0, 0
        self.seq: Sequence | None = None
        self.final = torch.zeros(0, dtype=torch.bool)
        self.T = 0


def final_supervised(mask: torch.Tensor) -> torch.Tensor:
    """(T,) bool, True at the last step with mask > 0 (none when nothing is supervised)."""
    out = torch.zeros(mask.shape[0], dtype=torch.bool)
    sup = (mask > 0).nonzero()
    if sup.numel():
        out[int(sup.max())] = True
    return out


class DataStream:
    """B lanes of a source, advanced together one time step at a time."""

    def __init__(self, source: Source, batch: int = 1) -> None:
        if not isinstance(source, Source):
            raise OsttpError(f"DataStream needs an osttp.streams source, got {type(source).__name__}")
        self.source = source
        self.batch = checks.integer("stream batch (parallel lanes)", batch, ge=1)
        self.lanes = [_Lane() for _ in range(self.batch)]
        self.index = 0
        for b in range(self.batch):
            self._load(b)

    def _load(self, b: int) -> None:
        lane = self.lanes[b]
        seq = self.source.sequence(b, lane.n)
        if seq.xs.shape[0] == 0:
            raise OsttpError(f"source {self.source.name!r}: sequence {lane.n} of lane {b} is empty")
        lane.seq, lane.T = seq, int(seq.xs.shape[0])
        lane.final = final_supervised(seq.mask)

    # ------------------------------------------------------------------ position
    def position(self) -> dict[str, Any]:
        """Where the stream is, as plain values (checkpoints)."""
        return {"index": self.index, "lanes": [[lane.n, lane.t] for lane in self.lanes]}

    def seek(self, position: dict[str, Any]) -> "DataStream":
        """Continue from a position saved by `position()` (same source and batch)."""
        try:
            lanes = [(int(n), int(t)) for n, t in position["lanes"]]
            index = int(position["index"])
        except (KeyError, TypeError, ValueError):
            raise OsttpError(f"stream position {position!r} is not one DataStream.position() wrote") from None
        if len(lanes) != self.batch:
            raise OsttpError(f"stream position has {len(lanes)} lanes; this stream has {self.batch}")
        self.index = index
        for b, (n, t) in enumerate(lanes):
            self.lanes[b].n, self.lanes[b].t = n, 0
            self._load(b)
            if not 0 <= t < self.lanes[b].T:
                raise OsttpError(f"stream position: step {t} of lane {b} is outside its sequence of "
                                 f"{self.lanes[b].T} steps")
            self.lanes[b].t = t
        return self

    # ------------------------------------------------------------------ stepping
    def next(self) -> Step:
        lanes, src = self.lanes, self.source
        head = lanes[0]
        drift = head.t == 0 and head.n > 0 and src.phase(head.n) != src.phase(head.n - 1)
        assert head.seq is not None
        phase = head.seq.phase
        if self.batch == 1:
            t, seq = head.t, head.seq
            x, y, m, fin = seq.xs[t:t + 1], seq.ys[t:t + 1], seq.mask[t:t + 1], head.final[t:t + 1]
        else:
            seqs = [(lane.seq, lane.t) for lane in lanes]
            x = torch.stack([s.xs[t] for s, t in seqs])  # type: ignore[union-attr]
            y = torch.stack([s.ys[t] for s, t in seqs])  # type: ignore[union-attr]
            m = torch.stack([s.mask[t] for s, t in seqs])  # type: ignore[union-attr]
            fin = torch.stack([lane.final[lane.t] for lane in lanes])
        ends = 0
        for b, lane in enumerate(lanes):
            lane.t += 1
            if lane.t == lane.T:
                ends += 1
                lane.n, lane.t = lane.n + 1, 0
                self._load(b)
        step = Step(self.index, x, y, m, fin, ends, drift, phase)
        self.index += 1
        return step

    def __iter__(self) -> "DataStream":
        return self

    def __next__(self) -> Step:
        return self.next()
