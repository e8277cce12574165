"""The unit every task serves and every metric reads: one batch, time-major."""
from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    """One batch, time-major. mask is 1.0 where the step is supervised, 0.0 elsewhere (padding too)."""

    xs: torch.Tensor
    ys: torch.Tensor
    mask: torch.Tensor
