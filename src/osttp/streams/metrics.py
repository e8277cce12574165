"""Prequential metrics: cumulative and sliding-window scores, and recovery after each drift point.

Every scored event (one lane at one supervised step) gives a value: 1/0 for a correct/wrong class,
or the step's NLL (sum over keys of sigmoid BCE) for multi-label targets. The meter keeps

    cumulative   mean over every event so far
    window       mean over the last `window` events (a ring buffer)
    drift        per drift point d: `pre`, the window value just before d; the drop, the largest
                 deterioration of the window value after d; the recovery time, steps from d until the
                 window value is back within `tolerance` of `pre` after having left it (0 if it never
                 left; None if it did not come back before the next drift point or the end)

The window lags: right after d it still holds pre-drift events, so the recovery time includes up to
`window` events of lag. All state is plain Python values (checkpoints restore it exactly).
"""
from __future__ import annotations

import math
from typing import Any

from osttp import checks


class PrequentialMeter:
    def __init__(self, metric_name: str, higher_is_better: bool, window: int = 1000, tolerance: float = 0.02,
                 record_every: int = 1000) -> None:
        self.metric_name = checks.string("metric", metric_name)
        self.higher_is_better = bool(higher_is_better)
        self.window = checks.integer("PrequentialMeter window", window, ge=1)
        self.tolerance = checks.number("PrequentialMeter tolerance", tolerance, ge=0.0)
        self.record_every = checks.integer("PrequentialMeter record_every", record_every, ge=1)
        self.events = 0
        self.total = 0.0  # sum of every event's value
        self.loss_total = 0.0  # sum of every event's loss
        self.ring: list[float] = [0.0] * self.window
        self.ring_sum = 0.0
        self.head = 0  # next slot of the ring
        self.steps = 0
        self.drifts: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.phase = 0

    # ------------------------------------------------------------------ values
    def cumulative(self) -> float:
        return self.total / self.events if self.events else math.nan

    def windowed(self) -> float:
        n = min(self.events, self.window)
        return self.ring_sum / n if n else math.nan

    def mean_loss(self) -> float:
        return self.loss_total / self.events if self.events else math.nan

    def worse_by(self, value: float, reference: float) -> float:
        """How much worse `value` is than `reference` (positive: worse), for either direction."""
        return reference - value if self.higher_is_better else value - reference

    # ------------------------------------------------------------------ updates
    def add(self, values: list[float], losses: list[float]) -> None:
        """The scored events of one step (each lane's value before the learner updated)."""
        for v in values:
            slot = self.head
            self.ring_sum += v - self.ring[slot]
            self.ring[slot] = v
            self.head = (slot + 1) % self.window
            self.total += v
            self.events += 1
            if self.head == 0:  # once per window: a fresh sum, so rounding never accumulates
                self.ring_sum = math.fsum(self.ring[: min(self.events, self.window)])
        for loss in losses:
            self.loss_total += loss

    def drift(self, step: int, phase: int) -> None:
        """A drift point: the step `step` is the first of phase `phase`."""
        self._close_open_episode()
        pre = self.windowed()
        self.drifts.append({"step": step, "phase": phase, "pre": None if math.isnan(pre) else pre,
                            "worst": None, "worst_step": None, "left": False, "recovery_steps": None,
                            "open": not math.isnan(pre)})
        self.phase = phase

    def end_step(self, step: int) -> None:
        """After every step: drift bookkeeping and, every `record_every` steps, a record."""
        self.steps = step + 1
        if self.drifts and self.drifts[-1]["open"] and self.events:
            self._track(self.drifts[-1], step)
        if self.steps % self.record_every == 0:
            self.records.append(self.record())

    def _track(self, ep: dict[str, Any], step: int) -> None:
        v = self.windowed()
        bad = self.worse_by(v, ep["pre"])
        if ep["worst"] is None or bad > self.worse_by(ep["worst"], ep["pre"]):
            ep["worst"], ep["worst_step"] = v, step
        if not ep["left"] and bad > self.tolerance:
            ep["left"] = True
        elif ep["left"] and bad <= self.tolerance:
            ep["recovery_steps"] = step - ep["step"] + 1
            ep["open"] = False

    def _close_open_episode(self) -> None:
        if self.drifts and self.drifts[-1]["open"]:
            ep = self.drifts[-1]
            ep["open"] = False
            if not ep["left"]:
                ep["recovery_steps"] = 0

    def record(self) -> dict[str, Any]:
        return {"step": self.steps, "events": self.events, "phase": self.phase,
                f"cumulative_{self.metric_name}": self.cumulative(), f"window_{self.metric_name}": self.windowed(),
                "cumulative_loss": self.mean_loss()}

    # ------------------------------------------------------------------ summary and state
    def summary(self) -> dict[str, Any]:
        """The prequential summary (results.json): final values and one entry per drift point."""
        drifts = []
        for i, ep in enumerate(self.drifts):
            rec = ep["recovery_steps"]
            if ep["open"]:  # still open at the end: recovered only if it never left the tolerance
                rec = None if ep["left"] else 0
            drop = None if ep["worst"] is None or ep["pre"] is None else self.worse_by(ep["worst"], ep["pre"])
            drifts.append({"step": ep["step"], "phase": ep["phase"], "pre": ep["pre"], "drop": drop,
                           "worst": ep["worst"], "recovery_steps": rec, "recovered": rec is not None})
        recovered = [d["recovery_steps"] for d in drifts if d["recovered"]]
        return {
            "metric_name": self.metric_name, "higher_is_better": self.higher_is_better,
            "steps": self.steps, "events": self.events, "window": self.window, "tolerance": self.tolerance,
            "cumulative": self.cumulative(), "final_window": self.windowed(), "cumulative_loss": self.mean_loss(),
            "pre_drift_mean": _mean([d["pre"] for d in drifts if d["pre"] is not None]),
            "drifts": drifts, "n_drifts": len(drifts), "n_recovered": len(recovered),
            "mean_recovery_steps": _mean(recovered),
            "mean_drop": _mean([d["drop"] for d in drifts if d["drop"] is not None]),
        }

    def state_dict(self) -> dict[str, Any]:
        return {k: (list(v) if k == "ring" else v) for k, v in vars(self).items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("window", "metric_name", "higher_is_better"):
            if state.get(key) != getattr(self, key):
                raise checks.fail(f"saved meter {key}", state.get(key), f"{getattr(self, key)!r} as configured")
        for k in vars(self):
            setattr(self, k, state[k])


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
