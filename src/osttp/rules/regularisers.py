"""Local regularisers: terms of the objective that every rule can add to its hidden signal.

A firing-rate regulariser keeps each hidden unit near a target rate (homeostasis): with the batch
mean ybar_t,i of unit i at step t,

    R_t = lam * B * sum_i (ybar_t,i - r0)^2          at every step, supervised or not,

so dR_t/dy_t,i,b = 2 lam (ybar_t,i - r0) for every sample b. (The factor B makes it the same
per-sample strength whatever the batch size, as the task loss is summed over the batch.) The term
is local in space and time: an online rule adds it to the layer's learning signal L_t^l and it is
never sent to the layers below; BPTT adds R_t to its loss (docs/math.md §4.2).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from osttp.checks import number


@dataclass(frozen=True)
class RateRegulariser:
    lam: float
    target: float = 0.1

    def __post_init__(self) -> None:
        number("rate_reg", self.lam, gt=0.0)
        number("rate_target", self.target, ge=0.0, le=1.0)

    def penalty(self, y: Tensor) -> Tensor:
        """R_t for one layer's outputs y (B, n); autograd-friendly (BPTT)."""
        return self.lam * y.shape[0] * ((y.mean(0) - self.target) ** 2).sum()

    def signal(self, y: Tensor) -> Tensor:
        """dR_t/dy_t (B, n): the term an online rule adds to the layer's learning signal."""
        return (2.0 * self.lam * (y.mean(0) - self.target)).expand_as(y)
