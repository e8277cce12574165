"""The generic suite over SIGNALS: every registered learning signal is tested the moment it exists.

    declared properties   the object agrees with its registry entry; the oracle knows how to compute it
    objective             forward-only signals: for_layer == d J / d y^l_t of their declared objective J,
                          at every layer of a step with a partial mask
    oracle                with diagonal and no traces, feed-forward and recurrent, spiking layers and the
                          integrator readout: the learner == autograd on the modified graph
                          (docs/math.md §4.5), the signal fitted on a training split with a class prior
    negative controls     a signal whose for_layer (or whose declared objective) is off by a little is
                          rejected by the same comparison

The last tests register toy signals from inside the test and run the suite on them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor

import osttp
import osttp.tasks
from osttp.network import Network
from osttp.rules import PRESETS, SIGNALS, register_online_preset
from osttp.rules.signals import Signal, StepContext
from conftest import make_case
from oracles import FixedPrior, assert_grads_close, online_oracle, signal_form

PRIOR = FixedPrior(torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64))  # a training split's class prior
OFFSET = 0.25  # what the negative controls add: far above the oracles' tolerance


@contextmanager
def registered(registry, name: str, factory: Callable, **meta) -> Iterator[str]:
    registry.register(name, factory, help="test-only", **meta)
    try:
        yield name
    finally:
        registry.unregister(name)


def random_step(net: Network, seed: int) -> StepContext:
    g = torch.Generator().manual_seed(seed)
    B = 4
    target = torch.nn.functional.one_hot(torch.randint(0, net.n_out, (B,), generator=g), net.n_out).to(net.dtype)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=net.dtype)
    outputs = [torch.rand(B, n, generator=g, dtype=net.dtype) for n in net.hidden_sizes]
    return StepContext(target=target, mask=mask, outputs=outputs)


def check_objective_gradient(signal: str) -> None:
    """for_layer(l) == d J^l / d y^l at every layer, J the signal's declared objective."""
    net = osttp.Network.from_sizes([4, 5, 6, 3], seed=3, dtype=torch.float64)
    sig = SIGNALS.build(signal)
    sig.fit(net, PRIOR)
    for seed in (0, 1):
        ctx = random_step(net, seed)
        ctx.states = [sig.advance(sig.init_state(net, l, len(ctx.mask)), ctx.outputs[l].clone())
                      for l in range(len(net.layers))]
        for l in range(len(net.layers)):
            y = ctx.outputs[l].clone().requires_grad_(True)
            (want,) = torch.autograd.grad(sig.local_objective(net, l, y, ctx), y, allow_unused=True)
            want = torch.zeros_like(y) if want is None else want
            got = sig.for_layer(net, l, ctx, None)
            assert got.shape == y.shape, (signal, l)
            assert torch.allclose(got, want, rtol=1e-12, atol=1e-14), (signal, l, float((got - want).abs().max()))


def check_against_oracle(signal: str) -> None:
    """The learner with this signal == the oracle, for two trace kinds, with and without recurrence."""
    for trace in ("diagonal", "none"):
        with registered_preset(trace, signal) as rule:
            for recurrent, targets in ((False, "index"), (True, "multihot")):
                case = make_case("lif", [4, 5, 4, 3], recurrent, seed=52, T=12, targets=targets,
                                 readout="integrator")
                learner = osttp.make_learner(rule, case.net)
                learner.fit(PRIOR)
                got = learner.sequence_gradients(case.xs, case.ys, case.mask)
                assert_grads_close(got, online_oracle(case.net, case.xs, case.ys, case.mask, trace, signal,
                                                      fit=PRIOR))


@contextmanager
def registered_preset(trace: str, signal: str) -> Iterator[str]:
    name = f"_signal-suite-{trace}-{signal}"
    register_online_preset(name, trace, signal)
    try:
        yield name
    finally:
        PRESETS.unregister(name)


class Perturbed(Signal):
    """A registered signal with OFFSET added to its for_layer, or (objective=True) to the gradient of its
    declared objective; it trains the hidden layers even where the original does not."""

    def __init__(self, inner, objective: bool) -> None:
        self.inner, self.objective = inner, objective
        self.name, self.uses_output_error, self.trains_hidden = inner.name, inner.uses_output_error, True

    def fit(self, net: Network, task) -> None:
        self.inner.fit(net, task)

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        L = self.inner.for_layer(net, l, ctx, above)
        return L if self.objective else L + OFFSET * ctx.mask.unsqueeze(-1)

    def local_objective(self, net: Network, l: int, y: Tensor, ctx: StepContext) -> Tensor:
        J = self.inner.local_objective(net, l, y, ctx)
        return J + OFFSET * (ctx.mask.unsqueeze(-1) * y).sum() if self.objective else J


def check_negative_controls(signal: str) -> None:
    entry = SIGNALS.get(signal)
    for objective in ((False, True) if signal_form(signal) == "objective" else (False,)):
        toy = f"_perturbed-{signal}-{objective}"
        with registered(SIGNALS, toy, lambda o=objective: Perturbed(entry.build(), o), **entry.meta):
            with pytest.raises(AssertionError):
                check_against_oracle(toy)


def run_signal_suite(signal: str) -> None:
    entry = SIGNALS.get(signal)
    sig = entry.build()
    assert sig.uses_output_error == entry.meta["uses_output_error"], signal
    assert isinstance(sig.trains_hidden, bool) and callable(sig.fit), signal
    if signal_form(signal) == "objective":
        check_objective_gradient(signal)
    check_against_oracle(signal)
    check_negative_controls(signal)


@pytest.mark.parametrize("signal", SIGNALS.names())
def test_every_registered_signal(signal: str) -> None:
    run_signal_suite(signal)


# --------------------------------------------------------------------------------------- toys


class LocalSquaredError(Signal):
    """J^l_t = 1/2 sum_b m_b ||y_b B_l^T - y*_b||^2, so L^l_t = m_t (y^l_t B_l^T - y*_t) B_l: a forward-only
    signal that reads the layer's own output, nonlinear in nothing but its objective's square."""

    name = "toy-local-squared-error"

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        B = net.feedback[l]
        return (ctx.mask.unsqueeze(-1) * (ctx.outputs[l] @ B.T - ctx.target)) @ B

    def local_objective(self, net: Network, l: int, y: Tensor, ctx: StepContext) -> Tensor:
        residual = y @ net.feedback[l].T - ctx.target
        return 0.5 * (ctx.mask * (residual * residual).sum(-1)).sum()


class ScaledError(Signal):
    """L = 2 m_t (y_hat_t - y*_t) B_l: an output-error signal that declares the random-error form -- wrongly,
    by a factor of two -- so the suite must reject it."""

    name = "toy-scaled-error"
    uses_output_error = True

    def for_layer(self, net: Network, l: int, ctx: StepContext, above: Tensor | None) -> Tensor:
        assert ctx.error is not None
        return 2.0 * ctx.error @ net.feedback[l]


def test_a_toy_signal_registered_here_is_picked_up_by_the_generic_suite() -> None:
    with registered(SIGNALS, LocalSquaredError.name, LocalSquaredError, uses_output_error=False):
        assert LocalSquaredError.name in SIGNALS.names()
        run_signal_suite(LocalSquaredError.name)


def test_the_suite_rejects_a_signal_that_is_not_what_it_declares() -> None:
    with registered(SIGNALS, ScaledError.name, ScaledError, uses_output_error=True, oracle="random-error"):
        with pytest.raises(AssertionError):
            check_against_oracle(ScaledError.name)
    with registered(SIGNALS, "toy-no-form", ScaledError, uses_output_error=True):  # no `oracle` metadata
        with pytest.raises(ValueError, match="oracle form"):
            run_signal_suite("toy-no-form")


def test_fit_gives_the_centred_projection_the_training_splits_prior() -> None:
    task = osttp.tasks.load("store-recall", "train", n_train=64, bits=2)
    net = osttp.Network.from_sizes([task.n_in, 5, task.n_out], dtype=torch.float64)
    learner = osttp.make_learner("osttp-centred", net)
    assert learner.signal.prior is None
    learner.fit(task)
    assert torch.equal(learner.signal.prior, task.target_prior().to(torch.float64))
    osttp.make_learner("osttp", net).fit(task)  # a signal with nothing to learn accepts the split too
