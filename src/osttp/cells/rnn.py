"""Leaky tanh RNN (docs/math.md §3.4), a non-spiking cell on the same interface.

    s_t = lam * s_{t-1} + (1 - lam) * tanh(I_t + b),    y_t = s_t
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from osttp.cells.base import Local, pack_single_state
from osttp.errors import OsttpError


@dataclass(frozen=True)
class LeakyRNN:
    """lam in [0, 1): the fraction of the state kept from the last step."""

    lam: float = 0.5
    name: str = "rnn"
    n_states: int = 1
    bias_init: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam < 1.0:
            raise OsttpError(f"leaky RNN lam must be in [0, 1), got {self.lam!r}")

    def dynamics(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, b: Tensor) -> Tensor:
        return (self.lam * s_prev[..., 0] + (1.0 - self.lam) * torch.tanh(I + b)).unsqueeze(-1)

    def output(self, s: Tensor, b: Tensor) -> Tensor:
        return s[..., 0]

    def local(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, s: Tensor, b: Tensor) -> Local:
        t = torch.tanh(I + b)
        drive = (1.0 - self.lam) * (1.0 - t * t)
        return pack_single_state(fI=drive, Fs=self.lam, Fy=0.0, fb=drive, os=torch.ones_like(t), ob=0.0)
