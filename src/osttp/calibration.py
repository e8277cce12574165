"""Data-driven initialisation: scale each hidden layer's input weights until it fires at a target rate.

Glorot-uniform weights are sized for unit-variance activations; spiking layers fed by sparse or
small inputs (MNIST rows in [0, 1], binned spike counts) then barely cross threshold, the
surrogate derivatives are near zero, and no rule can learn (docs/math.md §3, "initialisation").
`calibrate_firing` fixes that before training, deterministically from one batch of training
inputs: layer by layer (each sees the layers below already calibrated), the input weights W are
multiplied by the gain whose mean firing rate over the batch and all steps is closest to `rate`,
found by bisection on log(gain). Recurrent weights H are left as they are. Non-spiking layers are
left alone (their "rate" is not a spike probability).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from osttp.cells import CELLS
from osttp.errors import OsttpError
from osttp.network import Network


@torch.no_grad()
def firing_rates(net: Network, xs: Tensor) -> list[float]:
    """Mean output of every hidden layer over a batch xs (T, B, n_in) and all its steps."""
    states = net.initial_state(xs.shape[1])
    sums = [0.0] * len(net.layers)
    for x in xs:
        _, states = net.step(x, states)
        for l, st in enumerate(states[:-1]):
            sums[l] += float(st.y.mean())
    return [s / xs.shape[0] for s in sums]


@torch.no_grad()
def calibrate_firing(net: Network, xs: Tensor, rate: float = 0.1, steps: int = 24,
                     max_gain: float = 1e3) -> list[float]:
    """Scale W of every spiking hidden layer so it fires at about `rate`; returns the gains (1.0 for
    non-spiking layers). Deterministic: the same network and batch give the same gains."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < rate < 1.0:
        raise OsttpError(f"calibration rate must be a number in (0, 1), got {rate!r}")
    if xs.dim() != 3 or xs.shape[-1] != net.n_in or xs.shape[0] == 0 or xs.shape[1] == 0:
        raise OsttpError(f"calibration inputs must have shape (T>=1, B>=1, {net.n_in}), got {tuple(xs.shape)}")
    xs = xs.to(dtype=net.dtype, device=net.device)
    if not CELLS.get(net.config.get("cell", "")).meta.get("spiking"):
        return [1.0] * len(net.layers)
    gains = []
    for l, layer in enumerate(net.layers):
        W0 = layer.W.detach().clone()

        def rate_at(log_gain: float) -> float:
            layer.W.copy_(W0 * math.exp(log_gain))
            return firing_rates(net, xs)[l]

        lo, hi = -math.log(max_gain), math.log(max_gain)
        for _ in range(steps):  # the rate grows with the gain: bisect on log(gain)
            mid = 0.5 * (lo + hi)
            if rate_at(mid) < rate:
                lo = mid
            else:
                hi = mid
        gain = math.exp(0.5 * (lo + hi))
        layer.W.copy_(W0 * gain)
        gains.append(gain)
    return gains
