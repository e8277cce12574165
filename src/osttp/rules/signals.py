"""Learning signals: the spatial part of the gradient, a vector L_t^l per hidden layer (docs/math.md §4.2).

A signal with `uses_output_error = False` (target projection) needs only the target of the
current step: every layer can update as soon as its own forward step is done, before the layers
above have run -- no spatial locking, no weight transport. Signals that use the output error
(DFA, e-prop, backprop-in-space) must wait for the readout; the learner makes that visible by
asking them only after the readout ran, top layer first (`above` is the signal of layer l+1).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from torch import Tensor

from osttp.cells import Local
from osttp.errors import OsttpError
from osttp.network import Network
from osttp.registry import Registry
from osttp.rules.losses import Loss


@dataclass
class StepContext:
    """What a step offers a signal: target y*_t (B, C), mask m_t (B,), the task's loss (its kind says
    softmax or sigmoid), each layer's own signal state after this step (`states[l]`, None for a
    stateless signal), and -- only after the readout -- the masked output error m_t dE_t/do_t (B, C)
    and every layer's local derivatives."""

    target: Tensor
    mask: Tensor
    loss: Loss = Loss("ce")
    states: Sequence[Tensor | None] = field(default_factory=list)
    error: Tensor | None = None
    locals: Sequence[Local] = field(default_factory=list)


class LearningSignal(Protocol):
    name: str
    uses_output_error: bool
    trains_hidden: bool  # False: the hidden layers get no signal at all (a control), so skip them

    def init_state(self, net: Network, l: int, batch_size: int) -> Tensor | None: ...

    def advance(self, state: Tensor | None, y: Tensor) -> Tensor | None: ...

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor: ...


class StatelessSignal:
    """A signal that keeps nothing between steps: its value at step t depends on step t alone."""

    def init_state(self, net: Network, l: int, batch_size: int) -> Tensor | None:
        return None

    def advance(self, state: Tensor | None, y: Tensor) -> Tensor | None:
        return None


class TargetProjection(StatelessSignal):
    """DRTP / OSTTP: L_t^l = m_t y*_t B_l, used as the gradient w.r.t. y_t^l (optimizer subtracts it)."""

    name = "target-projection"
    uses_output_error = False
    trains_hidden = True

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        return (ctx.mask.unsqueeze(-1) * ctx.target) @ net.feedback[l]


class CentredTargetProjection(TargetProjection):
    """L_t^l = m_t (y*_t - p) B_l: the target projection without its class-independent part.

    p is `prior` (C,), the mean target per class -- class frequencies, or per-key note frequencies for
    multi-label targets -- when one is set (the application sets it from the training split), else the
    mean of y*_t over the classes of each sample (1/C for one-hot targets). The plain projection moves
    every unit by the same column sum of B_l for every class as well; centring removes that common
    push (docs/learning.md measures its effect)."""

    name = "centred-target-projection"

    def __init__(self, prior: Tensor | None = None) -> None:
        self.prior = prior

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        centre = ctx.target.mean(-1, keepdim=True) if self.prior is None else self.prior
        return (ctx.mask.unsqueeze(-1) * (ctx.target - centre)) @ net.feedback[l]


class RandomErrorProjection(StatelessSignal):
    """DFA / random e-prop: L_t^l = m_t (y_hat_t - y*_t) B_l (m_t dE_t/do_t for softmax-CE and sigmoid-BCE)."""

    name = "random-error"
    uses_output_error = True
    trains_hidden = True

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        assert ctx.error is not None
        return ctx.error @ net.feedback[l]


class SymmetricErrorBroadcast(StatelessSignal):
    """Symmetric e-prop: L_t^{K-1} = m_t (y_hat_t - y*_t) V, with the true readout weights V.

    Deeper layers (an amendment: docs/math.md §4.2 defines it for one hidden layer) receive the error through
    the product of the true downstream weights, without neuron derivatives: L^l = L^{l+1} W^{l+1}."""

    name = "symmetric-error"
    uses_output_error = True
    trains_hidden = True

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        assert ctx.error is not None
        if above is None:
            return ctx.error @ net.readout.weight
        return above @ net.layers[l + 1].W


class BackpropInSpace(StatelessSignal):
    """OSTL: L_t^l = dE_t/dy_t^l through the layers above at step t only.

    L^{K-1} = m_t dE_t/do_t V;  L^l = (L^{l+1} * sum_a os^{l+1}_a fI^{l+1}_a) W^{l+1}."""

    name = "backprop-in-space"
    uses_output_error = True
    trains_hidden = True

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        assert ctx.error is not None
        if above is None:
            return ctx.error @ net.readout.weight
        up = ctx.locals[l + 1]
        return (above * (up.os * up.fI).sum(-1)) @ net.layers[l + 1].W


class NoSignal(StatelessSignal):
    """L^l = 0: the hidden layers keep their initial weights; only the readout learns. The control
    that any rule training the hidden layers must beat (a fixed random reservoir + trained readout)."""

    name = "none"
    uses_output_error = False
    trains_hidden = False

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        return ctx.mask.new_zeros(ctx.mask.shape[0], net.hidden_sizes[l])


# meta: uses_output_error -- the signal waits for the readout (spatially locked).
SIGNALS: Registry[LearningSignal] = Registry("learning signal")
for _cls, _help in ((TargetProjection, "DRTP/OSTTP: fixed random projection of the target"),
                    (CentredTargetProjection, "the target projection with the mean over classes removed"),
                    (RandomErrorProjection, "DFA / random e-prop: fixed random projection of the output error"),
                    (SymmetricErrorBroadcast, "symmetric e-prop: the output error through the true weights"),
                    (BackpropInSpace, "OSTL: backprop through the layers above at the same step"),
                    (NoSignal, "no signal: hidden layers frozen, readout only (a control)")):
    SIGNALS.register(_cls.name, _cls, help=_help, uses_output_error=_cls.uses_output_error)


def make_signal(name: str, **options: Any) -> LearningSignal:
    """Build a signal by name; options are its parameters (e.g. beta=1.0, kappa=0.9 for local-error)."""
    factory = SIGNALS.get(name).factory
    accepted = [p for p in inspect.signature(factory).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise OsttpError(f"learning signal {name!r} has no option(s) {', '.join(unknown)}; expected "
                         f"{'one of ' + ', '.join(accepted) if accepted else 'none'}")
    return factory(**options)


__all__ = ["SIGNALS", "BackpropInSpace", "CentredTargetProjection", "LearningSignal", "NoSignal", "RandomErrorProjection",
           "StatelessSignal", "StepContext", "SymmetricErrorBroadcast", "TargetProjection", "make_signal"]
