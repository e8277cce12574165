"""ALIF: LIF with an adaptive threshold, two states per unit (docs/math.md §3.4).

    a_t = rho * a_{t-1} + z_{t-1}                         threshold adaptation
    v_t = alpha * v_{t-1} + I_t + b - theta * z_{t-1}     subtractive reset by the base threshold
    A_t = theta + beta * a_t
    z_t = Theta(v_t - A_t)                                surrogate: fast sigmoid (slope 10)

State per unit s = (v, a); the traces carry its 2x2 per-unit Jacobian
[[alpha, 0], [0, rho]] plus the reset/adaptation paths through z_{t-1}.
[choice] the reset subtracts the base threshold theta (not A_{t-1}), as in the LIF cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from osttp.cells.base import Local
from osttp.cells.lif import lif_membrane
from osttp.cells.surrogate import Surrogate
from osttp.errors import OsttpError


def alif_adaptation(a_prev: Tensor, z_prev: Tensor, rho: float) -> Tensor:
    """a_t = rho a_{t-1} + z_{t-1}: the adaptation variable counts recent spikes."""
    return rho * a_prev + z_prev


@dataclass(frozen=True)
class ALIF:
    """Adaptive LIF. alpha, rho in [0, 1]: membrane and adaptation decay; beta >= 0: adaptation strength."""

    alpha: float = 0.9
    rho: float = 0.95
    beta: float = 0.5
    theta: float = 1.0
    surrogate: Surrogate = field(default_factory=lambda: Surrogate("fast-sigmoid", 10.0))
    name: str = "alif"
    n_states: int = 2
    bias_init: float = 0.0

    def __post_init__(self) -> None:
        for key in ("alpha", "rho"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise OsttpError(f"ALIF {key} must be in [0, 1], got {getattr(self, key)!r}")
        if not self.beta >= 0:
            raise OsttpError(f"ALIF beta must be >= 0, got {self.beta!r}")
        if not self.theta > 0:
            raise OsttpError(f"ALIF threshold theta must be > 0, got {self.theta!r}")

    def _distance(self, s: Tensor) -> Tensor:
        """v_t - A_t, the argument of the step."""
        return s[..., 0] - (self.theta + self.beta * s[..., 1])

    def dynamics(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, b: Tensor) -> Tensor:
        v = lif_membrane(I, s_prev[..., 0], y_prev, b, self.alpha, self.theta)
        a = alif_adaptation(s_prev[..., 1], y_prev, self.rho)
        return torch.stack([v, a], dim=-1)

    def output(self, s: Tensor, b: Tensor) -> Tensor:
        return self.surrogate.spike(self._distance(s))

    def local(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, s: Tensor, b: Tensor) -> Local:
        hp = self.surrogate.derivative(self._distance(s))
        one, zero = torch.ones_like(hp), torch.zeros_like(hp)
        Fs = torch.stack([torch.stack([one * self.alpha, zero], -1),
                          torch.stack([zero, one * self.rho], -1)], -2)
        return Local(
            fI=torch.stack([one, zero], -1),
            Fs=Fs,
            Fy=torch.stack([one * -self.theta, one], -1),
            fb=torch.stack([one, zero], -1),
            os=torch.stack([hp, -self.beta * hp], -1),
            ob=zero,
        )
