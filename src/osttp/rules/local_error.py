"""Local-error projection: each hidden layer's own fixed random classifier, and its error (docs/math.md §4.2).

The target projection L = m_t y*_t B_l pushes every unit the same way for every sample of a class,
whether the layer already separates that class or not: it has no error term, and spiking units
(which never saturate) have nothing else to stop it (docs/learning.md). Here the same fixed matrix
B_l (C x n_l) also reads the layer out: the layer's local prediction is sigma(beta u_t B_l^T), with u_t
a low-pass filter of its own output, and the signal is the gradient of that local prediction's loss,

    u_t = kappa u_{t-1} + y_t,          L_t^l = m_t (sigma(beta u_t B_l^T) - y*_t) B_l,

i.e. dE_loc/du_t for E_loc = m_t CE(beta u_t B_l^T, y*_t) / beta (sigmoid-BCE for multi-label targets),
taken through this step's y_t only (u_{t-1} is a constant). It shrinks once the layer's own read-out is
right: a per-unit stop term. As beta -> 0 it tends to -(y*_t - 1/C) B_l, the centred projection (up to the
sign, which a random B_l does not fix). With a class prior p (C,) -- the mean target per class of the
training split, set by the application like the centred projection's -- the local classifier starts
from the prior, sigma(beta u B_l^T + b_p) with b_p = log p (softmax) or logit p (sigmoid), so that
beta -> 0 gives -(y*_t - p) B_l: on multi-label tasks with rare keys (JSB) that is the centred
projection on the key frequencies rather than on 1/2. Like the target projection it needs only the target and the
layer's own output at step t: no output error, no weight transport, no waiting for the layers above.
"""
from __future__ import annotations

import math

from torch import Tensor

from osttp.errors import OsttpError
from osttp.network import Network
from osttp.rules.losses import Loss
from osttp.rules.signals import SIGNALS, Signal, StepContext, TrainingSplit


def low_pass(prev: Tensor, y: Tensor, kappa: float) -> Tensor:
    """u_t = kappa u_{t-1} + y_t, in place on u_{t-1} (zero at a reset): what the local classifier reads."""
    return prev.mul_(kappa).add_(y)


PRIOR_CLIP = 1e-4  # a class (key) never seen in the training split would give an infinite bias


def prior_bias(prior: Tensor, loss: Loss) -> Tensor:
    """b_p: the local logits' offset whose prediction is the prior, log p (softmax) or logit p (sigmoid)."""
    p = prior.clamp(PRIOR_CLIP, 1.0 - PRIOR_CLIP)
    return p.log() if loss.name == "ce" else p.log() - (-p).log1p()


def local_error(u: Tensor, target: Tensor, mask: Tensor, B: Tensor, beta: float, loss: Loss,
                bias: Tensor | None = None) -> Tensor:
    """L = m_t (sigma(beta u B^T + b) - y*) B: d/du of the local loss m_t E(beta u B^T + b, y*) / beta."""
    z = beta * (u @ B.T)
    if bias is not None:
        z = z + bias
    return (mask.unsqueeze(-1) * loss.output_error(z, target)) @ B


class LocalErrorProjection(Signal):
    """L_t^l = m_t (sigma(beta u_t B_l^T) - y*_t) B_l with u_t = kappa u_{t-1} + y_t (the module docstring).

    beta: the local logits' scale (> 0); kappa in [0, 1): the filter of the layer's output that the
    local classifier reads (0: this step's output alone); prior (C,), when set: the class prior the
    local classifier starts from (the application sets it from the training split)."""

    name = "local-error"
    uses_output_error = False
    trains_hidden = True
    default_beta = 1.0
    default_kappa = 0.9

    def __init__(self, beta: float = default_beta, kappa: float = default_kappa) -> None:
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not math.isfinite(beta) or beta <= 0:
            raise OsttpError(f"local-error beta must be a finite number > 0, got {beta!r}")
        if not isinstance(kappa, (int, float)) or isinstance(kappa, bool) or not 0.0 <= kappa < 1.0:
            raise OsttpError(f"local-error kappa must be a number in [0, 1), got {kappa!r}")
        self.beta, self.kappa = float(beta), float(kappa)
        self.prior: Tensor | None = None
        self._bias: tuple[Tensor, str, Tensor] | None = None  # (prior, loss name, b_p), see _prior_bias

    def _prior_bias(self, loss: Loss) -> Tensor | None:
        """b_p of the current prior, computed once per (prior, loss) rather than at every step and layer."""
        if self.prior is None:
            return None
        if self._bias is None or self._bias[0] is not self.prior or self._bias[1] != loss.name:
            self._bias = (self.prior, loss.name, prior_bias(self.prior, loss))
        return self._bias[2]

    def fit(self, net: Network, task: TrainingSplit) -> None:
        self.prior = task.target_prior().to(dtype=net.dtype, device=net.device)

    def init_state(self, net: Network, l: int, batch_size: int) -> Tensor | None:
        return net.feedback[l].new_zeros(batch_size, net.hidden_sizes[l])

    def advance(self, state: Tensor | None, y: Tensor) -> Tensor | None:
        assert state is not None, "init_state gives every layer a filter"
        return low_pass(state, y, self.kappa)

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        u = ctx.states[l]
        assert u is not None, "the learner advances the signal's state before asking for it"
        return local_error(u, ctx.target, ctx.mask, net.feedback[l], self.beta, ctx.loss, self._prior_bias(ctx.loss))

    def local_objective(self, net: Network, l: int, y: Tensor, ctx: StepContext) -> Tensor:
        """sum_b m_t E(beta u_t B_l^T + b_p, y*_t) / beta with u_t = kappa u_{t-1} + y (u_{t-1} constant):
        ctx.states[l] is u_t at y's value, so u_t - y.detach() + y has u_t's value and y's gradient."""
        u = ctx.states[l]
        assert u is not None, "the learner advances the signal's state before asking for it"
        z = self.beta * ((u - y.detach() + y) @ net.feedback[l].T)
        bias = self._prior_bias(ctx.loss)
        if bias is not None:
            z = z + bias
        return (ctx.mask * ctx.loss.value(z, ctx.target)).sum() / self.beta


SIGNALS.register(LocalErrorProjection.name, LocalErrorProjection,
                 help="each layer's own fixed random classifier through B_l, and its error (a stop term)",
                 uses_output_error=False)

__all__ = ["LocalErrorProjection", "local_error", "low_pass", "prior_bias"]
