"""SNU and sSNU -- spiking neural units, IBM convention (docs/math.md §3.1, §3.2).

    pre_t = I_t + d * s_{t-1} * (1 - y_{t-1})      I_t = W x_t + H y_{t-1}   (reset="multiplicative")
    pre_t = I_t + d * (s_{t-1} - y_{t-1})           (reset="soft": a spike subtracts the nominal threshold 1)
    s_t   = g(pre_t)                                g = ReLU or identity
    y_t   = h(s_t + b)                              SNU: Heaviside (surrogate 1 - tanh^2); sSNU: sigmoid
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from osttp.cells.base import Local, pack_single_state
from osttp.cells.surrogate import Surrogate
from osttp.errors import OsttpError

ACTIVATIONS = ("relu", "identity")
RESETS = ("multiplicative", "soft")


def snu_preactivation(I: Tensor, s_prev: Tensor, y_prev: Tensor, d: float) -> Tensor:
    """pre_t = I_t + d * s_{t-1} * (1 - y_{t-1}): leaky integration, a spike zeroes the state."""
    return I + d * s_prev * (1.0 - y_prev)


def snu_soft_preactivation(I: Tensor, s_prev: Tensor, y_prev: Tensor, d: float) -> Tensor:
    """pre_t = I_t + d * (s_{t-1} - y_{t-1}): a spike subtracts the nominal threshold 1 and keeps the
    rest of the state, so a strongly driven unit does not lose what exceeded the threshold."""
    return I + d * (s_prev - y_prev)


@dataclass(frozen=True)
class SNU:
    """Spiking neural unit. d: leak (fixed), g: "relu" | "identity", reset: "multiplicative" | "soft",
    surrogate of the step."""

    d: float = 0.8
    g: str = "relu"
    reset: str = "multiplicative"
    surrogate: Surrogate = field(default_factory=lambda: Surrogate("tanh"))
    name: str = "snu"
    n_states: int = 1
    bias_init: float = -1.0  # threshold 1.0

    def __post_init__(self) -> None:
        if self.g not in ACTIVATIONS:
            raise OsttpError(f"unknown activation g={self.g!r}; expected one of {ACTIVATIONS}")
        if not isinstance(self.d, (int, float)) or isinstance(self.d, bool) or not 0.0 <= self.d <= 1.0:
            raise OsttpError(f"leak d must be in [0, 1], got {self.d!r}")
        if self.reset not in RESETS:
            raise OsttpError(f"unknown reset {self.reset!r}; expected one of {RESETS}")

    def _pre(self, I: Tensor, s_prev: Tensor, y_prev: Tensor) -> Tensor:
        if self.reset == "soft":
            return snu_soft_preactivation(I, s_prev, y_prev, self.d)
        return snu_preactivation(I, s_prev, y_prev, self.d)

    def _g(self, pre: Tensor) -> Tensor:
        return torch.relu(pre) if self.g == "relu" else pre

    def _g_prime(self, pre: Tensor) -> Tensor:
        # torch's relu backward is 0 at exactly 0; match it so autograd and traces agree bit-wise.
        return (pre > 0).to(pre.dtype) if self.g == "relu" else torch.ones_like(pre)

    def _h(self, v: Tensor) -> Tensor:
        return self.surrogate.spike(v)

    def _h_prime(self, v: Tensor) -> Tensor:
        return self.surrogate.derivative(v)

    def dynamics(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, b: Tensor) -> Tensor:
        return self._g(self._pre(I, s_prev[..., 0], y_prev)).unsqueeze(-1)

    def output(self, s: Tensor, b: Tensor) -> Tensor:
        return self._h(s[..., 0] + b)

    def local(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, s: Tensor, b: Tensor) -> Local:
        sp = s_prev[..., 0]
        # g'(pre) without recomputing pre: ReLU's is 1 exactly where s = relu(pre) > 0, identity's is 1.
        gp = (s[..., 0] > 0).to(s.dtype) if self.g == "relu" else torch.ones_like(sp)
        hp = self._h_prime(s[..., 0] + b)
        soft = self.reset == "soft"
        return pack_single_state(
            fI=gp,
            Fs=gp * self.d if soft else gp * self.d * (1.0 - y_prev),
            Fy=-gp * self.d if soft else -gp * self.d * sp,
            fb=0.0,
            os=hp,
            ob=hp,
        )


@dataclass(frozen=True)
class SoftSNU(SNU):
    """Soft SNU: the output is a sigmoid with its exact derivative (docs/math.md §3.2)."""

    name: str = "ssnu"

    def _h(self, v: Tensor) -> Tensor:
        return torch.sigmoid(v)

    def _h_prime(self, v: Tensor) -> Tensor:
        sig = torch.sigmoid(v)
        return sig * (1.0 - sig)
