"""Temporal tasks and datasets (SPEC §5).

    task = osttp.tasks.load("smnist-rows", "train", label="last")
    for batch in task.batches(64, shuffle=True, seed=epoch):   # Batch(xs, ys, mask), time-major
        ...
    metric = task.new_metric(); metric.update(logits, batch); metric.compute()

See docs/data.md for the datasets, splits, parameters and metric definitions.
"""
from __future__ import annotations

import os
from typing import Any

from osttp.errors import OsttpError
from osttp.tasks.base import (
    SPLITS,
    Batch,
    ClassificationMetric,
    Metric,
    MultilabelMetric,
    Task,
    check_split,
    multilabel_nll,
    multilabel_sums,
)

# Fixed order: datasets first, then the synthetic tasks.
_NAMES: tuple[str, ...] = (
    "smnist-rows",
    "smnist-pixels",
    "psmnist",
    "jsb",
    "shd",
    "delayed-xor",
    "store-recall",
    "cue-accumulation",
)

__all__ = [
    "Batch",
    "ClassificationMetric",
    "Metric",
    "MultilabelMetric",
    "SPLITS",
    "Task",
    "available",
    "load",
    "multilabel_nll",
    "multilabel_sums",
]


def available() -> list[str]:
    """Task names, in a fixed order."""
    return list(_NAMES)


def load(name: str, split: str, *, root: str | os.PathLike[str] | None = None, **params: Any) -> Task:
    """One split ("train", "valid" or "test") of a task, with its parameters resolved into task.params.

    root: a folder holding the dataset files, instead of the search path (see osttp.tasks.data);
    it is not a task parameter and is not recorded in task.params."""
    if name not in _NAMES:
        raise OsttpError(f"unknown task {name!r}; expected one of {', '.join(_NAMES)}")
    split = check_split(split)
    if name in ("smnist-rows", "smnist-pixels", "psmnist"):
        from osttp.tasks.mnist import SequentialMNIST

        return SequentialMNIST(name, split, params, root)
    if name == "jsb":
        from osttp.tasks.jsb import JSBChorales

        return JSBChorales(split, params, root)
    if name == "shd":
        from osttp.tasks.shd import SpikingHeidelbergDigits

        return SpikingHeidelbergDigits(split, params, root)
    from osttp.tasks.synthetic import load_synthetic

    return load_synthetic(name, split, params)
