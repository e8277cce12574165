"""Cells that exist only in the tests."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from osttp.cells import Local
from osttp.cells.base import pack_single_state


@dataclass(frozen=True)
class LinearLeaky:
    """s_t = lam s_{t-1} + I_t + b, y_t = tanh(s_t): D = lam and fI = 1 for every unit and step."""

    lam: float = 0.7
    name: str = "linear-leaky"
    n_states: int = 1
    bias_init: float = 0.0

    def dynamics(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, b: Tensor) -> Tensor:
        return (self.lam * s_prev[..., 0] + I + b).unsqueeze(-1)

    def output(self, s: Tensor, b: Tensor) -> Tensor:
        return torch.tanh(s[..., 0])

    def local(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, s: Tensor, b: Tensor) -> Local:
        t = torch.tanh(s[..., 0])
        return pack_single_state(fI=1.0, Fs=self.lam, Fy=0.0, fb=1.0, os=1.0 - t * t, ob=0.0)
