"""Spike nonlinearities with surrogate derivatives (docs/math.md §3).

The forward pass is a Heaviside step; the backward pass uses a smooth surrogate. The *same*
`derivative` function is used by autograd (BPTT, oracles) and by the hand-derived local
derivatives of the online rules, which is what makes trace-based OSTL equal BPTT exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from osttp.errors import OsttpError


@dataclass(frozen=True)
class Surrogate:
    """A Heaviside forward with a named surrogate derivative.

    kind: "tanh" -> h'(v) = 1 - tanh(v)^2 (the SNU convention of docs/math.md §3.1);
          "fast-sigmoid" -> h'(v) = 1 / (1 + slope*|v|)^2 (LIF default, docs/math.md §3.3).
    slope: steepness of the fast sigmoid (unused by "tanh").
    """

    kind: str = "tanh"
    slope: float = 10.0

    def __post_init__(self) -> None:
        if self.kind not in SURROGATES:
            raise OsttpError(f"unknown surrogate {self.kind!r}; expected one of {sorted(SURROGATES)}")
        if not self.slope > 0:
            raise OsttpError(f"surrogate slope must be > 0, got {self.slope!r}")

    def derivative(self, v: Tensor) -> Tensor:
        return SURROGATES[self.kind](v, self.slope)

    def spike(self, v: Tensor) -> Tensor:
        """Heaviside(v) forward, this surrogate backward."""
        if not (torch.is_grad_enabled() and v.requires_grad):  # no graph to record: skip autograd.Function's cost
            return heaviside(v)
        return _Spike.apply(v, self)


def tanh_derivative(v: Tensor, slope: float) -> Tensor:
    t = torch.tanh(v)
    return 1.0 - t * t


def fast_sigmoid_derivative(v: Tensor, slope: float) -> Tensor:
    return 1.0 / (1.0 + slope * v.abs()) ** 2


SURROGATES = {"tanh": tanh_derivative, "fast-sigmoid": fast_sigmoid_derivative}


def heaviside(v: Tensor) -> Tensor:
    return (v > 0).to(v.dtype)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: Tensor, surrogate: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.surrogate = surrogate
        return heaviside(v)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(v), None
