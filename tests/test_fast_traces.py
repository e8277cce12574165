"""The fast trace paths (docs/math.md §4.1.1, docs/performance.md): the factorized kind against the
diagonal kind where it is exact and against its own oracle elsewhere (the generic suites in
test_registries.py), and the diagonal kind's blocked pass against the per-step reference form."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

import osttp
from osttp.cells import CELLS, LIF, Local, make_cell
from osttp.cells.base import pack_single_state
from osttp.cells.lif import lif_membrane
from osttp.rules import OnlineLearner, diagonal_block
from osttp.rules.factorized import FactorizedTrace, resting_decay
from osttp.rules.traces import DiagonalTrace
from conftest import assert_really_spikes, make_case
from toys import LinearLeaky
from oracles import assert_grads_close, online_oracle, relative_error, resting_decay_by_autograd


@dataclass(frozen=True)
class DetachedResetLIF(LIF):
    """LIF whose reset carries no gradient (the e-prop approximation): Fy = 0, so D = alpha."""

    name: str = "lif-detached-reset"

    def dynamics(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, b: Tensor) -> Tensor:
        return lif_membrane(I, s_prev[..., 0], y_prev.detach(), b, self.alpha, self.theta).unsqueeze(-1)

    def local(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, s: Tensor, b: Tensor) -> Local:
        hp = self.surrogate.derivative(s[..., 0] - self.theta)
        return pack_single_state(fI=1.0, Fs=self.alpha, Fy=0.0, fb=1.0, os=hp, ob=0.0)


@pytest.fixture
def constant_decay_cells():
    CELLS.register("linear-leaky", LinearLeaky, help="test-only", spiking=False)
    CELLS.register("lif-detached-reset", DetachedResetLIF, help="test-only", spiking=True)
    try:
        yield ("linear-leaky", "lif-detached-reset")
    finally:
        CELLS.unregister("linear-leaky")
        CELLS.unregister("lif-detached-reset")


def _zero_self_recurrence(net: osttp.Network) -> None:
    with torch.no_grad():
        for layer in net.layers:
            if layer.H is not None:
                layer.H.diagonal().zero_()


@pytest.mark.parametrize("recurrent", [False, True])
def test_factorized_equals_diagonal_where_the_decay_is_one_constant(constant_decay_cells, recurrent: bool) -> None:
    """D_t,i = lambda and fI constant (no reset path, H_ii = 0): the factorization drops nothing."""
    for cell in constant_decay_cells:
        case = make_case(cell, [4, 6, 5, 3], recurrent, seed=51, T=18, readout="integrator")
        _zero_self_recurrence(case.net)
        if cell == "lif-detached-reset":
            assert_really_spikes(case)
        for fact, diag in (("osttp-fact", "osttp"), ("eprop-fact", "eprop-rand")):
            got = osttp.make_learner(fact, case.net).sequence_gradients(case.xs, case.ys, case.mask)
            want = osttp.make_learner(diag, case.net).sequence_gradients(case.xs, case.ys, case.mask)
            assert_grads_close(got, want, 1e-12)
            assert float(got["layers.0.W"].norm()) > 0


@pytest.mark.parametrize("recurrent", [False, True])
def test_factorized_differs_from_diagonal_where_the_decay_varies_per_unit(recurrent: bool) -> None:
    """Negative control: the SNU's D (leak gated by its own spike, reset path) varies per unit and step.
    The bias keeps the diagonal kind's trace, so only W and H differ."""
    case = make_case("snu", [4, 6, 5, 3], recurrent, seed=52, T=18)
    assert_really_spikes(case)
    fact = osttp.make_learner("osttp-fact", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    diag = osttp.make_learner("osttp", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    names = ["layers.0.W", "layers.1.W"] + (["layers.0.H", "layers.1.H"] if recurrent else [])
    for name in names:
        assert relative_error(fact[name], diag[name]) > 1e-3, name
    for name in ("layers.0.b", "layers.1.b", "readout.weight", "readout.bias"):
        assert_grads_close({name: fact[name]}, {name: diag[name]}, 1e-12)
    # and it is still exactly what its own oracle graph says
    want = online_oracle(case.net, case.xs, case.ys, case.mask, "factorized", "target-projection")
    assert_grads_close(fact, want)


def test_resting_decay_is_the_cells_leak_and_agrees_with_autograd() -> None:
    for name, options, leak in (("snu", {"d": 0.6}, 0.6), ("ssnu", {}, 0.8), ("lif", {"alpha": 0.85}, 0.85),
                                ("alif", {"alpha": 0.7}, 0.7), ("rnn", {"lam": 0.3}, 0.3)):
        cell = make_cell(name, **options)
        assert resting_decay(cell) == pytest.approx(leak, abs=1e-15)
        assert resting_decay_by_autograd(cell) == pytest.approx(leak, abs=1e-15)
    with pytest.raises(osttp.OsttpError, match="decay must be a number in"):
        FactorizedTrace(decay=1.5)


def test_an_explicit_decay_is_used() -> None:
    case = make_case("snu", [4, 6, 3], False, seed=53, T=10)
    a = OnlineLearner(case.net, FactorizedTrace(decay=0.8)).sequence_gradients(case.xs, case.ys, case.mask)
    b = osttp.make_learner("osttp-fact", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    c = OnlineLearner(case.net, FactorizedTrace(decay=0.3)).sequence_gradients(case.xs, case.ys, case.mask)
    assert_grads_close(a, b, 0.0)  # the SNU's leak is 0.8
    assert relative_error(c["layers.0.W"], b["layers.0.W"]) > 1e-3


def test_factorized_state_is_a_small_fraction_of_the_diagonal_state() -> None:
    net = osttp.Network.from_sizes([256, 256, 10], cell="snu", recurrent=True, dtype=torch.float64)

    def trace_bytes(rule: str) -> int:
        learner = osttp.make_learner(rule, net)
        learner.reset(4)
        learner.step(torch.rand(4, 256, dtype=torch.float64), torch.zeros(4, dtype=torch.int64))
        return sum(t.numel() * t.element_size() for tr in learner.stream.traces for t in tr.tensors())

    assert trace_bytes("osttp-fact") * 10 <= trace_bytes("osttp")


# ---------------------------------------------------------------------------- blocked diagonal


@pytest.mark.parametrize("chunk_bytes, per_sample_min, block", [(1 << 20, 2048, 16), (256, 0, 3), (256, 1 << 30, 5)])
@pytest.mark.parametrize("rule", ["osttp", "ostl", "eprop-rand"])
@pytest.mark.parametrize("cell", ["snu", "lif"])
def test_blocked_diagonal_pass_equals_the_per_step_form(monkeypatch, chunk_bytes: int, per_sample_min: int,
                                                        block: int, rule: str, cell: str) -> None:
    """Every branch of the blocked pass (cache chunks of one or many samples, per-sample or einsum
    contraction, blocks that fill and blocks cut short by the sequence end), with contractions right
    after the update (target projection) and after the readout (error signals), and steps without a
    supervised sample inside a block and filling a whole block, equals the reference form."""
    monkeypatch.setattr(diagonal_block, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(diagonal_block, "PER_SAMPLE_MIN", per_sample_min)
    case = make_case(cell, [5, 7, 6, 3], True, seed=54, T=16, B=5)
    mask = case.mask.clone()
    mask[3:8] = 0.0  # whole steps without supervision, one block of 3 or 5 among them
    _, signal = osttp.rules.ONLINE_PRESETS[rule]
    preset = osttp.make_learner(rule, case.net).trace
    assert isinstance(preset, DiagonalTrace) and preset.block > 1  # the presets run the blocked pass
    blocked = OnlineLearner(case.net, DiagonalTrace(block=block), signal)
    got = blocked.sequence_gradients(case.xs, case.ys, mask)
    want = OnlineLearner(case.net, DiagonalTrace(block=1), signal).sequence_gradients(case.xs, case.ys, mask)
    assert_grads_close(got, want, 1e-13)
    assert_grads_close(got, online_oracle(case.net, case.xs, case.ys, mask, "diagonal", signal))


def test_new_sequences_reuse_the_trace_tensors_without_reading_them() -> None:
    """reset() reuses the diagonal kind's eps tensors: whatever they hold (here NaN) is not read, and the
    second sequence's gradient equals a fresh learner's."""
    case = make_case("snu", [4, 6, 3], True, seed=57, T=7, B=3)
    learner = osttp.make_learner("osttp", case.net)
    learner.reset(3)
    for t in range(5):
        learner.step(case.xs[t], case.ys[t])
    before = learner.stream.traces[0]
    learner.reset(3)
    assert learner.stream.traces[0] is before and before.eps_zero
    before.W.fill_(float("nan"))
    for a in learner.acc.values():
        a.zero_()
    for t in range(case.xs.shape[0]):
        learner.step(case.xs[t], case.ys[t], case.mask[t])
    want = osttp.make_learner("osttp", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    assert_grads_close(learner.gradients(), want, 1e-13)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "16"])
def test_a_bad_block_length_is_refused_naming_it(bad) -> None:
    with pytest.raises(osttp.OsttpError, match=f"block must be an integer >= 1, got {bad!r}"):
        DiagonalTrace(block=bad)
