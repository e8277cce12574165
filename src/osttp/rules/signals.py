"""Learning signals: the spatial part of the gradient, a vector L_t^l per hidden layer (docs/math.md §4.2).

A signal with `uses_output_error = False` (target projection) needs only the target of the
current step: every layer can update as soon as its own forward step is done, before the layers
above have run -- no spatial locking, no weight transport. Signals that use the output error
(DFA, e-prop, backprop-in-space) must wait for the readout; the learner makes that visible by
asking them only after the readout ran, top layer first (`above` is the signal of layer l+1).

What a signal declares, so the generic test suite (tests/test_registries.py) can check it against
autograd the moment it is registered:

- a signal with `uses_output_error = False` states the objective it descends: `local_objective(net,
  l, y, ctx)` is the scalar J^l_t whose gradient w.r.t. y^l_t must equal `for_layer` (docs/math.md
  §4.5 builds the oracle of every such rule from it). A signal with state (`init_state`/`advance`,
  kept in the learner's stream and advanced at every step) reads it from `ctx.states[l]`, already
  advanced by this step's output, in both `for_layer` and `local_objective`;
- a signal that uses the output error names, in its registry metadata `oracle`, the form of
  tests/oracles.py it must equal.

`fit(net, task)` runs once before training, on the training split (the centred target projection
learns its class prior there); `Signal` gives every hook a default.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import torch
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
    stateless signal), the outputs y^k_t (B, n_k) of the layers k <= l run so far, and -- only after
    the readout -- the masked output error m_t dE_t/do_t (B, C) and every layer's local derivatives."""

    target: Tensor
    mask: Tensor
    loss: Loss = Loss("ce")
    states: Sequence[Tensor | None] = field(default_factory=list)
    error: Tensor | None = None
    locals: Sequence[Local] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)


class TrainingSplit(Protocol):
    """What `fit` may read of the training split (osttp.tasks.Task offers it)."""

    def target_prior(self) -> Tensor: ...


class LearningSignal(Protocol):
    name: str
    uses_output_error: bool
    trains_hidden: bool  # False: the hidden layers get no signal at all (a control), so skip them

    def init_state(self, net: Network, l: int, batch_size: int) -> Tensor | None: ...

    def advance(self, state: Tensor | None, y: Tensor) -> Tensor | None: ...

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor: ...

    def fit(self, net: Network, task: TrainingSplit) -> None: ...


class Signal:
    """Defaults for a learning signal: it learns nothing from the training split, trains the hidden
    layers, and (when it needs only the target) must declare its objective."""

    name: str = ""
    uses_output_error: bool = False
    trains_hidden: bool = True

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        raise NotImplementedError

    def fit(self, net: Network, task: TrainingSplit) -> None:
        """Learn what the signal needs from the training split, once, before training."""

    def init_state(self, net: Network, l: int, batch_size: int) -> Tensor | None:
        """The signal's own per-layer state at a reset (None: it keeps nothing between steps). It lives
        in the learner's stream, so snapshots and `sequence_gradients` carry it."""
        return None

    def advance(self, state: Tensor | None, y: Tensor) -> Tensor | None:
        """The state after this step's output y^l_t, at every step (supervised or not)."""
        return None

    def local_objective(self, net: Network, l: int, y: Tensor, ctx: StepContext) -> Tensor:
        """The scalar J^l_t whose gradient w.r.t. y (= y^l_t) is `for_layer` (forward-only signals)."""
        raise NotImplementedError(f"signal {self.name!r} declares no local objective")


def _target_drive(net: Network, l: int, y: Tensor, mask: Tensor, target: Tensor) -> Tensor:
    """sum_b m_b <t_b B_l, y_b>: the objective whose y-gradient projects `target` through B_l."""
    return (mask.unsqueeze(-1) * (y * (target @ net.feedback[l]))).sum()


class TargetProjection(Signal):
    """DRTP / OSTTP: L_t^l = m_t y*_t B_l, used as the gradient w.r.t. y_t^l (optimizer subtracts it)."""

    name = "target-projection"
    uses_output_error = False

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        return (ctx.mask.unsqueeze(-1) * ctx.target) @ net.feedback[l]

    def local_objective(self, net: Network, l: int, y: Tensor, ctx: StepContext) -> Tensor:
        return _target_drive(net, l, y, ctx.mask, ctx.target)


class CentredTargetProjection(TargetProjection):
    """L_t^l = m_t (y*_t - p) B_l: the target projection without its class-independent part.

    p is `prior` (C,), the mean target per class -- class frequencies, or per-key note frequencies for
    multi-label targets -- when one is set (`fit` sets it from the training split), else the mean of
    y*_t over the classes of each sample (1/C for one-hot targets). The plain projection moves
    every unit by the same column sum of B_l for every class as well; centring removes that common
    push (docs/learning.md measures its effect)."""

    name = "centred-target-projection"

    def __init__(self, prior: Tensor | None = None) -> None:
        self.prior = prior

    def fit(self, net: Network, task: TrainingSplit) -> None:
        self.prior = task.target_prior().to(dtype=net.dtype, device=net.device)

    def centred(self, target: Tensor) -> Tensor:
        return target - (target.mean(-1, keepdim=True) if self.prior is None else self.prior)

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        return (ctx.mask.unsqueeze(-1) * self.centred(ctx.target)) @ net.feedback[l]

    def local_objective(self, net: Network, l: int, y: Tensor, ctx: StepContext) -> Tensor:
        return _target_drive(net, l, y, ctx.mask, self.centred(ctx.target))


class RandomErrorProjection(Signal):
    """DFA / random e-prop: L_t^l = m_t (y_hat_t - y*_t) B_l (m_t dE_t/do_t for softmax-CE and sigmoid-BCE)."""

    name = "random-error"
    uses_output_error = True
    trains_hidden = True

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        assert ctx.error is not None
        return ctx.error @ net.feedback[l]


class SymmetricErrorBroadcast(Signal):
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


class BackpropInSpace(Signal):
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


class NoSignal(Signal):
    """L^l = 0: the hidden layers keep their initial weights; only the readout learns. The control
    that any rule training the hidden layers must beat (a fixed random reservoir + trained readout)."""

    name = "none"
    uses_output_error = False
    trains_hidden = False

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        return ctx.mask.new_zeros(ctx.mask.shape[0], net.hidden_sizes[l])

    def local_objective(self, net: Network, l: int, y: Tensor, ctx: StepContext) -> Tensor:
        return torch.zeros((), dtype=y.dtype, device=y.device) * y.sum()


# meta: uses_output_error -- the signal waits for the readout (spatially locked);
#       oracle -- for output-error signals, the form of tests/oracles.py the signal must equal.
SIGNALS: Registry[LearningSignal] = Registry("learning signal")
SIGNALS.register("target-projection", TargetProjection, help="DRTP/OSTTP: fixed random projection of the target",
                 uses_output_error=False)
SIGNALS.register("centred-target-projection", CentredTargetProjection,
                 help="the target projection with the mean over classes removed", uses_output_error=False)
SIGNALS.register("random-error", RandomErrorProjection,
                 help="DFA / random e-prop: fixed random projection of the output error", uses_output_error=True,
                 oracle="random-error")
SIGNALS.register("symmetric-error", SymmetricErrorBroadcast,
                 help="symmetric e-prop: the output error through the true weights", uses_output_error=True,
                 oracle="symmetric-error")
SIGNALS.register("backprop-in-space", BackpropInSpace, help="OSTL: backprop through the layers above at the same step",
                 uses_output_error=True, oracle="backprop-in-space")
SIGNALS.register("none", NoSignal, help="no signal: hidden layers frozen, readout only (a control)",
                 uses_output_error=False)


def make_signal(name: str, **options: Any) -> LearningSignal:
    """Build a signal by name; options are its parameters (e.g. beta=1.0, kappa=0.9 for local-error)."""
    factory = SIGNALS.get(name).factory
    accepted = [p for p in inspect.signature(factory).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise OsttpError(f"learning signal {name!r} has no option(s) {', '.join(unknown)}; expected "
                         f"{'one of ' + ', '.join(accepted) if accepted else 'none'}")
    return factory(**options)


__all__ = ["SIGNALS", "BackpropInSpace", "CentredTargetProjection", "LearningSignal", "NoSignal",
           "RandomErrorProjection", "Signal", "StepContext", "SymmetricErrorBroadcast", "TargetProjection",
           "TrainingSplit", "make_signal"]
