"""Prequential (test-then-train) learning on a stream: every step is predicted, scored, then learnt.

    stream = DataStream(TaskSource(task, seed=0), batch=1)
    learner = osttp.make_learner("osttp", net, optimizer=opt, schedule="per-step")
    run = Prequential(learner, stream, window=1000)
    run.run(20_000)
    run.summary()      # cumulative and windowed metric, drift points, recovery times

Why the score is from before the update: `learner.step(x_t, y_t, m_t)` computes o_t with the current
parameters and only then, when its schedule is due, applies the accumulated gradient (online rules:
forward, traces, accumulate, then `apply` in `Learner._checked_step`; BPTT/tBPTT: the same, the
backward pass running at the end of the window). The loop scores that returned o_t; updates the loop
itself triggers (sequence-end schedule: `apply()` when a sequence ends) come after the scoring too.
tests/test_stream_prequential.py checks this for every rule with a learner that would score perfectly
after its update.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from osttp import checks
from osttp.errors import OsttpError
from osttp.rules.learner import Learner
from osttp.streams.learner_state import can_snapshot, restore, snapshot
from osttp.streams.metrics import PrequentialMeter
from osttp.streams.stream import DataStream, Step

SCORES = ("supervised", "last")


class StreamDiverged(Exception):
    """The prequential loss or the parameters became NaN/Inf."""


def score_step(o: torch.Tensor, step: Step, target_kind: str, score: str) -> tuple[list[float], list[float]]:
    """(values, losses) of the lanes scored at this step, from the output o (B, C) the learner
    produced before updating: correct (1.0/0.0) and cross-entropy for classes, NLL (sum over keys
    of sigmoid BCE) as both for multi-label targets."""
    sel = step.mask > 0
    if score == "last":
        sel = sel & step.final
    if not bool(sel.any()):
        return [], []
    o = o.detach()[sel].to(torch.float64)
    y = step.y[sel]
    if target_kind == "class":
        correct = (o.argmax(-1) == y).to(torch.float64)
        loss = F.cross_entropy(o, y, reduction="none")
        return correct.tolist(), loss.tolist()
    nll = F.binary_cross_entropy_with_logits(o, y.to(torch.float64), reduction="none").sum(-1).tolist()
    return nll, nll


class Prequential:
    """The test-then-train loop over a learner and a stream, resumable between any two steps at which
    the learner holds no autograd graph (`ready_to_save`)."""

    def __init__(self, learner: Learner, stream: DataStream, *, window: int = 1000, tolerance: float = 0.02,
                 score: str = "supervised", reset_at_boundary: bool = False, record_every: int = 1000) -> None:
        if not isinstance(learner, Learner):
            raise OsttpError(f"Prequential needs an osttp learner, got {type(learner).__name__}")
        if not isinstance(stream, DataStream):
            raise OsttpError(f"Prequential needs an osttp.streams.DataStream, got {type(stream).__name__}")
        src, net = stream.source, learner.net
        if (src.n_in, src.n_out) != (net.n_in, net.n_out):
            raise OsttpError(f"the stream has {src.n_in} inputs and {src.n_out} outputs; the network "
                             f"{net.n_in} and {net.n_out}")
        self.score = checks.string("Prequential score", score, SCORES)
        self.reset_at_boundary = checks.boolean("Prequential reset_at_boundary", reset_at_boundary)
        self.sequence_end = learner.schedule.every is None
        if stream.batch > 1 and src.fixed_length is None and (self.reset_at_boundary or self.sequence_end):
            what = "a state reset at sequence ends" if self.reset_at_boundary else "the sequence-end schedule"
            raise OsttpError(f"stream batch = {stream.batch} with {what} needs sequences of equal length so "
                             f"that the lanes end together; task {src.name!r} has sequences of different "
                             "lengths: use batch 1")
        self.learner, self.stream = learner, stream
        self.target_kind = src.target_kind
        self.meter = PrequentialMeter(src.metric_name, src.higher_is_better, window, tolerance, record_every)
        learner.reset(stream.batch)

    # ------------------------------------------------------------------ the loop
    def run(self, steps: int, on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Advance `steps` steps: predict, score, learn. `on_record` sees each new metric record."""
        steps = checks.integer("steps", steps, ge=0)
        learner, stream, meter = self.learner, self.stream, self.meter
        B = stream.batch
        for _ in range(steps):
            st = stream.next()
            if st.drift:
                meter.drift(st.index, st.phase)
            o = learner.step(st.x, st.y, st.mask)  # o_t from the parameters before this step's update
            values, losses = score_step(o, st, self.target_kind, self.score)
            meter.add(values, losses)
            if st.ends:
                if st.ends != B and (self.sequence_end or self.reset_at_boundary):
                    raise OsttpError(f"{st.ends} of {B} lanes ended a sequence at step {st.index}; "
                                     "lanes must end together")
                if self.sequence_end:
                    learner.apply()
                if self.reset_at_boundary:
                    learner.reset(B)
            n_records = len(meter.records)
            meter.end_step(st.index)
            if len(meter.records) > n_records:
                self._check_finite()
                if on_record is not None:
                    on_record(meter.records[-1])

    def run_until_saveable(self, limit: int, on_record: Callable[[dict[str, Any]], None] | None = None) -> int:
        """Step on (at most `limit` steps) until the learner holds no autograd graph; steps taken."""
        taken = 0
        while not can_snapshot(self.learner) and taken < limit:
            self.run(1, on_record)
            taken += 1
        return taken

    def _check_finite(self) -> None:
        loss = self.meter.mean_loss()
        if not math.isnan(loss) and not math.isfinite(loss):
            raise StreamDiverged(f"prequential loss became {loss} by step {self.meter.steps}")
        if not all(bool(torch.isfinite(p).all()) for p in self.learner.net.parameters()):
            raise StreamDiverged(f"a parameter became NaN/Inf by step {self.meter.steps}")

    @property
    def steps(self) -> int:
        return self.stream.index

    def summary(self) -> dict[str, Any]:
        return {**self.meter.summary(), "source": self.stream.source.describe(), "rule": self.learner.name,
                "schedule": self.learner.schedule.name, "batch": self.stream.batch, "score": self.score,
                "reset_at_boundary": self.reset_at_boundary}

    # ------------------------------------------------------------------ state
    @property
    def ready_to_save(self) -> bool:
        return can_snapshot(self.learner)

    def state_dict(self) -> dict[str, Any]:
        """Everything that continues the run bit for bit: parameters, optimizer, the learner's carried
        state, the stream position and the meter (tensors and plain values: weights_only-safe)."""
        opt = self.learner.optimizer
        return {"model": {k: v.clone() for k, v in self.learner.net.state_dict().items()},
                "optimizer": opt.state_dict() if opt is not None and hasattr(opt, "state_dict") else None,
                "learner": snapshot(self.learner), "stream": self.stream.position(),
                "meter": self.meter.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.net.load_state_dict(state["model"])
        opt = self.learner.optimizer
        if opt is not None and state.get("optimizer") is not None:
            opt.load_state_dict(state["optimizer"])
        restore(self.learner, state["learner"])
        self.stream.seek(state["stream"])
        self.meter.load_state_dict(state["meter"])


def prequential(learner: Learner, stream: DataStream, steps: int, **options: Any) -> dict[str, Any]:
    """Run `steps` test-then-train steps of `learner` on `stream`; returns the summary with the metric
    records (options: window, tolerance, score, reset_at_boundary, record_every)."""
    run = Prequential(learner, stream, **options)
    run.run(steps)
    return {**run.summary(), "records": list(run.meter.records)}
