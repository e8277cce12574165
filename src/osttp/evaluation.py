"""The task's metrics of a model: the one evaluation loop, for float networks and simulated hardware.

    evaluate_model(net, task, batch_size=256)                       # all batches of the split
    evaluate_model(HardwareForward(net, hw, t=3600.0), task, max_batches=4)

`model` is anything mapping xs (T, B, n_in) to outputs (T, B, C): the Network itself, or a wrapper
that reads simulated crossbars (osttp.hardware.HardwareForward).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from osttp import checks
from osttp.distributed import DataParallel
from osttp.tasks import Task


@torch.no_grad()
def evaluate_model(model: Callable[[Tensor], Tensor], task: Task, *, batch_size: int = 256,
                   max_batches: int | None = None, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32, decision: str = "mean",
                   parallel: DataParallel | None = None) -> dict[str, float]:
    """``task.new_metric(decision).compute()`` over the first max_batches batches (file order; None: all).
    decision "mean" (a sequence's class: the argmax of the outputs averaged over its supervised steps)
    is the default because it reads smnist-rows far better than the last step alone (results/defaults.json);
    with one supervised step the two are the same.
    With `parallel`, each process evaluates its shard of every batch and the sums are reduced: every
    process returns the metrics of the whole split."""
    checks.integer("evaluate.batch_size", batch_size, ge=1)
    if max_batches is not None:
        checks.integer("evaluate.max_batches", max_batches, ge=1)
    metric = task.new_metric(decision)
    for i, batch in enumerate(task.batches(batch_size, shuffle=False, dtype=dtype)):
        if max_batches is not None and i >= max_batches:
            break
        if parallel is not None:
            batch = parallel.shard(batch)
        if batch.xs.shape[1]:
            metric.update(model(batch.xs.to(device)), batch)
    if parallel is not None:
        parallel.reduce_metric(metric)
    return metric.compute()
