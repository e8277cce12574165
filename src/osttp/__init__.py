"""osttp: online spatio-temporal learning with target projection, and its baselines.

    net = osttp.Network.from_sizes([n_in, 64, n_out], cell="snu")
    learner = osttp.make_learner("osttp", net, optimizer=torch.optim.Adam(net.parameters()))
"""
from __future__ import annotations

from osttp.cells import available_cells, make_cell
from osttp.errors import DataError, OsttpError
from osttp.network import Network
from osttp.rules import (BPTTLearner, Learner, OnlineLearner, Schedule, available_learners,
                         make_learner)

__version__ = "0.1.0"

__all__ = ["BPTTLearner", "DataError", "Learner", "Network", "OnlineLearner", "OsttpError", "Schedule",
           "available_cells", "available_learners", "make_cell", "make_learner"]
