"""LIF neuron with subtractive reset (docs/math.md §3.3).

    v_t = alpha * v_{t-1} + I_t + b - theta * z_{t-1}      I_t = W x_t + H z_{t-1}
    z_t = Theta(v_t - theta)                                surrogate: fast sigmoid (slope 10)

b is a trainable input bias current, initialised to 0 -- an amendment to docs/math.md §3.3, which has no
bias; it gives every cell the same parameter set (W, H, b). The reset path through z_{t-1} uses
the surrogate like every other path.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from osttp.cells.base import Local, pack_single_state
from osttp.cells.surrogate import Surrogate
from osttp.errors import OsttpError


def lif_membrane(I: Tensor, v_prev: Tensor, z_prev: Tensor, b: Tensor, alpha: float, theta: float
                 ) -> Tensor:
    """v_t = alpha v_{t-1} + I_t + b - theta z_{t-1}: leak, input, bias, subtractive reset."""
    return alpha * v_prev + I + b - theta * z_prev


@dataclass(frozen=True)
class LIF:
    """Leaky integrate-and-fire. alpha = exp(-dt/tau) in [0, 1]; theta: threshold (> 0)."""

    alpha: float = 0.9
    theta: float = 1.0
    surrogate: Surrogate = field(default_factory=lambda: Surrogate("fast-sigmoid", 10.0))
    name: str = "lif"
    n_states: int = 1
    bias_init: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise OsttpError(f"LIF alpha must be in [0, 1], got {self.alpha!r}")
        if not self.theta > 0:
            raise OsttpError(f"LIF threshold theta must be > 0, got {self.theta!r}")

    def dynamics(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, b: Tensor) -> Tensor:
        return lif_membrane(I, s_prev[..., 0], y_prev, b, self.alpha, self.theta).unsqueeze(-1)

    def output(self, s: Tensor, b: Tensor) -> Tensor:
        return self.surrogate.spike(s[..., 0] - self.theta)

    def local(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, s: Tensor, b: Tensor) -> Local:
        hp = self.surrogate.derivative(s[..., 0] - self.theta)
        return pack_single_state(fI=1.0, Fs=self.alpha, Fy=-self.theta, fb=1.0, os=hp, ob=0.0)
