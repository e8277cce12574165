"""A run's evaluations: a split's metrics with the run's [eval] settings, and the drift curve's summary.

The loop over batches is the library's (osttp.evaluation.evaluate_model; drift rows from
osttp.hardware.evaluate_drift through the backend); this module only applies the config.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import Tensor

from osttp.evaluation import evaluate_model
from osttp.experiment.build import Setup


def eval_split(setup: Setup, split: str, model: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
    """The task's metrics on the first eval.max_<split>_batches batches of a split, of `model`
    (default: the backend's deployed model now)."""
    e = setup.cfg["eval"]
    return evaluate_model(setup.backend.eval_model() if model is None else model, setup.tasks[split],
                          batch_size=e["batch_size"], max_batches=e[f"max_{split}_batches"], device=setup.device,
                          dtype=setup.dtype, decision=e["decision"], parallel=setup.parallel)


def drift_rows(setup: Setup) -> list[dict[str, Any]]:
    """Test metrics from 1 s to 1 month after programming, without and with global drift compensation,
    over eval.max_test_batches; [] for a float run or with hardware.drift_eval off."""
    e = setup.cfg["eval"]
    return setup.backend.drift_rows(setup.tasks["test"], e["batch_size"], e["max_test_batches"], e["decision"])


def drift_summary(rows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The metric at the first and last time (1 s and 1 month by default), without/with compensation."""
    ts = sorted({r["t_s"] for r in rows})
    pick = {"first": ts[0], "last": ts[-1]}
    out: dict[str, Any] = {"metric": metric}
    for key, t in pick.items():
        for r in rows:
            if r["t_s"] == t:
                out.setdefault(key, {"t_s": t})["compensation" if r["compensation"] else "no_compensation"] = r[metric]
    return out
