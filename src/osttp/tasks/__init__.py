"""Temporal tasks and datasets (docs/math.md §5).

    task = osttp.tasks.load("smnist-rows", "train", label="last")
    for batch in task.batches(64, shuffle=True, seed=epoch):   # Batch(xs, ys, mask), time-major
        ...
    metric = task.new_metric(); metric.update(logits, batch); metric.compute()

See docs/data.md for the datasets, splits, parameters and metric definitions.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from osttp.registry import Registry
from osttp.tasks.base import SPLITS, Batch, Task, check_split
from osttp.tasks.synthetic import SYNTHETIC, load_synthetic
from osttp.tasks.metrics import ClassificationMetric, Metric, MultilabelMetric, multilabel_nll, multilabel_sums



def _mnist(name: str) -> Callable[..., Task]:
    def build(split: str, root: str | os.PathLike[str] | None, params: dict[str, Any]) -> Task:
        from osttp.tasks.mnist import SequentialMNIST

        return SequentialMNIST(name, split, params, root)
    return build


def _jsb(split: str, root: str | os.PathLike[str] | None, params: dict[str, Any]) -> Task:
    from osttp.tasks.jsb import JSBChorales

    return JSBChorales(split, params, root)


def _shd(split: str, root: str | os.PathLike[str] | None, params: dict[str, Any]) -> Task:
    from osttp.tasks.shd import SHD, SpikeDigits

    return SpikeDigits(SHD, split, params, root)


def _spoken_digits(kind: str) -> Callable[..., Task]:
    def build(split: str, root: str | os.PathLike[str] | None, params: dict[str, Any]) -> Task:
        from osttp.tasks import spoken_digits
        from osttp.tasks.shd import SpikeDigits

        return SpikeDigits(getattr(spoken_digits, kind), split, params, root)
    return build


def _synthetic(name: str) -> Callable[..., Task]:
    def build(split: str, root: str | os.PathLike[str] | None, params: dict[str, Any]) -> Task:
        return load_synthetic(name, split, params)
    return build


# Fixed order: datasets first, then the synthetic tasks. A factory takes (split, root, params);
# modules load lazily, so listing tasks costs nothing. meta: files -- needs dataset files.
TASKS: Registry[Task] = Registry("task")
TASKS.register("smnist-rows", _mnist("smnist-rows"), files=True,
               help="sequential MNIST: 28 steps x 28 pixels, 10 classes, accuracy (MNIST files)")
TASKS.register("smnist-pixels", _mnist("smnist-pixels"), files=True,
               help="sequential MNIST: 784 steps x 1 pixel, 10 classes, accuracy (MNIST files)")
TASKS.register("psmnist", _mnist("psmnist"), files=True,
               help="permuted sequential MNIST: 784 steps x 1 pixel, 10 classes, accuracy (MNIST files)")
TASKS.register("jsb", _jsb, files=True,
               help="JSB Chorales next-step prediction: 88 keys in and out, nll per step (JSB file)")
TASKS.register("shd", _shd, files=True,
               help="Spiking Heidelberg Digits: 700 channels binned to T=100 steps, 20 classes, accuracy (SHD files)")
TASKS.register("spoken-digits", _spoken_digits("SPEAKERS"), files=True,
               help="FSDD spoken digits through SHD's cochlea, held-out speakers: 700 channels, T=100 bins "
                    "of 10 ms, 10 classes, accuracy (osttp data make spoken-digits)")
TASKS.register("spoken-digits-official", _spoken_digits("OFFICIAL"), files=True,
               help="FSDD spoken digits through SHD's cochlea, FSDD's official split by recording index: "
                    "700 channels, T=100 bins of 10 ms, 10 classes, accuracy (osttp data make spoken-digits)")
TASKS.register("spoken-digits-20", _spoken_digits("VOICES_20"), files=True,
               help="English and German digits spoken by espeak-ng through SHD's cochlea, held-out voices: "
                    "700 channels, T=100 bins of 10 ms, 20 classes, accuracy (osttp data make spoken-digits-20)")
for _entry in SYNTHETIC.entries():
    TASKS.register(_entry.name, _synthetic(_entry.name), files=False, help="")  # the CLI describes them from a split

__all__ = [
    "Batch",
    "ClassificationMetric",
    "Metric",
    "MultilabelMetric",
    "SPLITS",
    "TASKS",
    "Task",
    "available",
    "load",
    "multilabel_nll",
    "multilabel_sums",
]


def available() -> list[str]:
    """Task names, in a fixed order."""
    return TASKS.names()


def load(name: str, split: str, *, root: str | os.PathLike[str] | None = None, **params: Any) -> Task:
    """One split ("train", "valid" or "test") of a task, with its parameters resolved into task.params.

    root: a folder holding the dataset files, instead of the search path (see osttp.tasks.data);
    it is not a task parameter and is not recorded in task.params."""
    entry = TASKS.get(name)
    return entry.factory(check_split(split), root, params)
