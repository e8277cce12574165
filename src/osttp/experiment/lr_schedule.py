"""train.lr_schedule: the learning rate over a run, in the registry LR_SCHEDULES.

A schedule is a pure function of the fraction of training done, p = (batches done) / (epochs x
batches per epoch), returning the factor the base learning rate is multiplied by for the next
batch. Being a function of the position alone, a resumed run recomputes it from its checkpointed
position: nothing extra is saved, and a resumed run equals an uninterrupted one.

    constant   1                        (the default: the loop never touches the optimizer's lr)
    cosine     (1 + cos(pi p)) / 2      from 1 at the first batch towards 0 at the last (SGDR's
                                        annealing, Loshchilov & Hutter 2017, without restarts)

Every parameter group keeps its own base rate (train.lr, or lr * hidden_lr_scale for the hidden
layers), so a schedule scales all groups alike.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from osttp.registry import Registry


def constant_factor(progress: float) -> float:
    return 1.0


def cosine_factor(progress: float) -> float:
    """Half a cosine period over the run: smooth, no extra hyperparameter, 0 only after the last batch."""
    return 0.5 * (1.0 + math.cos(math.pi * progress))


LR_SCHEDULES: Registry[float] = Registry("learning-rate schedule")
LR_SCHEDULES.register("constant", constant_factor, help="train.lr throughout")
LR_SCHEDULES.register("cosine", cosine_factor, help="lr * (1 + cos(pi p)) / 2, p the fraction of the run's batches done")


def lr_factor(name: str, done: int, total: int) -> float:
    """The factor for the batch after `done` of `total` training batches."""
    if total < 1 or not 0 <= done <= total:
        raise ValueError(f"batches done = {done} of total = {total}: expected 0 <= done <= total, total >= 1")
    return LR_SCHEDULES.build(name, progress=done / total)


def base_lrs(groups: Sequence[dict[str, Any]]) -> list[float]:
    """Each parameter group's base learning rate, read before any schedule or checkpoint changed it."""
    return [float(g["lr"]) for g in groups]


def set_lrs(groups: Sequence[dict[str, Any]], bases: Sequence[float], factor: float) -> None:
    """lr = base * factor in every group (torch optimizers and the hardware optimizer read it per step)."""
    if len(groups) != len(bases):
        raise ValueError(f"{len(groups)} parameter groups but {len(bases)} base learning rates")
    for g, base in zip(groups, bases):
        g["lr"] = base * factor
