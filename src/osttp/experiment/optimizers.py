"""train.optimizer: the torch optimizers a float run may use, in the registry OPTIMIZERS.

An entry's factory takes the parameter groups and the resolved [train] table and returns a torch
optimizer. Its metadata says what the rest of the application needs to know without naming it:

    slots(train)     tensors of parameter size the optimizer keeps per parameter (memory estimate)
    momentum         whether train.momentum applies to it
    plain_sgd        whether it is plain SGD, the only update simulated synapses are trained by
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from osttp.registry import Registry

ParamGroups = list[dict[str, Any]]


def _adam(groups: ParamGroups, train: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=train["lr"], weight_decay=train["weight_decay"])


def _sgd(groups: ParamGroups, train: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=train["lr"], momentum=train["momentum"], weight_decay=train["weight_decay"])


OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")
OPTIMIZERS.register("adam", _adam, help="Adam (two moment slots per parameter)", slots=lambda train: 2,
                    momentum=False, plain_sgd=False)
OPTIMIZERS.register("sgd", _sgd, help="SGD, with train.momentum (one slot when it is non-zero)",
                    slots=lambda train: 1 if train["momentum"] else 0, momentum=True, plain_sgd=True)


def make_optimizer(groups: ParamGroups, train: Mapping[str, Any]) -> torch.optim.Optimizer:
    return OPTIMIZERS.build(train["optimizer"], groups=groups, train=train)


def optimizer_slots(train: Mapping[str, Any]) -> int:
    return int(OPTIMIZERS.get(train["optimizer"]).meta["slots"](train))


def plain_sgd_name() -> str:
    """The registered plain-SGD optimizer: what hardware runs are trained with."""
    return next(e.name for e in OPTIMIZERS.entries() if e.meta.get("plain_sgd"))
