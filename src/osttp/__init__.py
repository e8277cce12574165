"""osttp: online spatio-temporal learning with target projection, and its baselines.

    net = osttp.Network.from_sizes([n_in, 64, n_out], cell="snu")
    learner = osttp.make_learner("osttp", net, optimizer=torch.optim.Adam(net.parameters()))

The names below are loaded on first use (PEP 562), so `import osttp` does not import torch: the
command line installs its Ctrl-C handler before the second it takes (osttp/__main__.py).
"""
from __future__ import annotations

import importlib

from osttp.errors import DataError, OsttpError

TYPE_CHECKING = False  # not `typing`: the fewer modules before the CLI's Ctrl-C handler, the better

__version__ = "0.1.0"

_LAZY = {"available_cells": "osttp.cells", "make_cell": "osttp.cells", "Network": "osttp.network",
         **{name: "osttp.rules" for name in ("BPTTLearner", "Learner", "OnlineLearner", "RateRegulariser", "Schedule",
                                             "available_learners", "make_learner")}}

__all__ = ["BPTTLearner", "DataError", "Learner", "Network", "OnlineLearner", "OsttpError", "RateRegulariser",
           "Schedule", "available_cells", "available_learners", "make_cell", "make_learner"]

if TYPE_CHECKING:  # what the lazy names are, for type checkers
    from osttp.cells import available_cells, make_cell
    from osttp.network import Network
    from osttp.rules import (BPTTLearner, Learner, OnlineLearner, RateRegulariser, Schedule,
                             available_learners, make_learner)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    try:  # a submodule used as an attribute (osttp.tasks, osttp.cells, ...)
        return importlib.import_module(f"osttp.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"osttp.{name}":
            raise
    raise AttributeError(f"module 'osttp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
