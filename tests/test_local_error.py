"""The local-error signal (osttp-local) against its autograd oracle: each hidden layer's local loss
m_t E(beta u_t B_l^T, y*_t) / beta, u_t = kappa u_{t-1} + y_t, differentiated through y_t on the rule's
modified graph (tests/oracles.py), for every trace kind, both loss kinds and both readouts; with the
limits and negative controls that show the oracle can tell it from its neighbours."""
from __future__ import annotations

import pytest
import torch

import osttp
from osttp.rules import TRACE_KINDS
from osttp.rules.local_error import LocalErrorProjection
from osttp.streams.learner_state import restore, snapshot
from conftest import assert_really_spikes, make_case
from oracles import assert_grads_close, online_oracle, relative_error


def learner(case, trace: str = "diagonal", beta: float = 1.0, kappa: float = 0.9) -> osttp.OnlineLearner:
    return osttp.OnlineLearner(case.net, trace, LocalErrorProjection(beta, kappa))


@pytest.mark.parametrize("trace", TRACE_KINDS.names())
@pytest.mark.parametrize("targets", ["classes", "multihot"])
def test_every_trace_kind_with_the_local_error_equals_its_oracle(trace: str, targets: str) -> None:
    case = make_case("lif", [4, 6, 5, 3], True, seed=61, T=15, targets=targets, readout="integrator")
    assert_really_spikes(case)
    got = learner(case, trace, beta=1.7, kappa=0.8).sequence_gradients(case.xs, case.ys, case.mask)
    want = online_oracle(case.net, case.xs, case.ys, case.mask, trace, "local-error", local=(1.7, 0.8))
    assert_grads_close(got, want)


@pytest.mark.parametrize("cell", ["snu", "alif", "rnn"])
def test_the_local_error_equals_its_oracle_on_other_cells(cell: str) -> None:
    case = make_case(cell, [4, 6, 3], True, seed=62, T=13, readout="linear")
    got = learner(case, beta=0.6, kappa=0.0).sequence_gradients(case.xs, case.ys, case.mask)
    assert_grads_close(got, online_oracle(case.net, case.xs, case.ys, case.mask, "diagonal", "local-error",
                                          local=(0.6, 0.0)))


def test_the_oracle_tells_the_filter_and_the_scale_apart() -> None:
    """Negative controls: the oracle with another kappa, another beta, or the centred projection in its
    place does not match the rule."""
    case = make_case("lif", [4, 6, 3], True, seed=63, T=14, readout="integrator")
    got = learner(case, beta=1.0, kappa=0.9).sequence_gradients(case.xs, case.ys, case.mask)
    for other in ((1.0, 0.0), (1.0, 0.5), (3.0, 0.9)):
        want = online_oracle(case.net, case.xs, case.ys, case.mask, "diagonal", "local-error", local=other)
        assert relative_error(got["layers.0.W"], want["layers.0.W"]) > 1e-3, other
    centred = online_oracle(case.net, case.xs, case.ys, case.mask, "diagonal", "centred-target-projection")
    assert relative_error(got["layers.0.W"], centred["layers.0.W"]) > 1e-3
    assert_grads_close({"readout.weight": got["readout.weight"]}, {"readout.weight": centred["readout.weight"]})


def test_a_vanishing_scale_is_the_centred_projection_with_the_opposite_sign() -> None:
    """beta -> 0: sigma(beta u B^T) -> 1/C, so L -> -m_t (y*_t - 1/C) B_l, whatever the filter."""
    case = make_case("lif", [4, 6, 5, 3], True, seed=64, T=12, readout="integrator")
    got = learner(case, beta=1e-9).sequence_gradients(case.xs, case.ys, case.mask)
    centred = osttp.make_learner("osttp-centred", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    for name in ("layers.0.W", "layers.0.H", "layers.1.W", "layers.1.b"):
        assert relative_error(got[name], -centred[name]) < 1e-6, name


def test_the_signal_stops_once_the_layers_own_readout_is_right() -> None:
    """The stop term: with a local prediction that already puts (nearly) all mass on the target, L is ~0,
    where the target projection keeps its full size."""
    torch.manual_seed(0)
    B = torch.randn(3, 5, dtype=torch.float64)
    target = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).to(torch.float64)
    Z = 20.0 * (2 * target - 1)  # local logits: +20 on the target class, -20 elsewhere
    u = Z @ torch.linalg.solve(B @ B.T, B)  # u B^T = Z
    loss = osttp.rules.make_loss("ce")
    from osttp.rules.local_error import local_error

    L = local_error(u, target, torch.ones(2, dtype=torch.float64), B, 1.0, loss)
    assert float(L.abs().max()) < 1e-12
    assert float(((target - 1 / 3) @ B).abs().max()) > 0.1


def test_the_filter_state_survives_a_mid_stream_snapshot() -> None:
    """The signal's own state lives in the learner's stream: a snapshot mid-sequence and a restore into a
    fresh learner give the same gradients as an uninterrupted run."""
    case = make_case("lif", [4, 6, 3], True, seed=65, T=12, readout="integrator")
    T, half = case.xs.shape[0], case.xs.shape[0] // 2

    def run(split: bool) -> dict[str, torch.Tensor]:
        a = osttp.make_learner("osttp-local", case.net)
        a.reset(case.xs.shape[1])
        for t in range(half):
            a.step(case.xs[t], case.ys[t], case.mask[t])
        if split:
            saved = snapshot(a)
            b = osttp.make_learner("osttp-local", case.net)
            b.reset(case.xs.shape[1])
            restore(b, saved)
            a = b
        for t in range(half, T):
            a.step(case.xs[t], case.ys[t], case.mask[t])
        return {k: v.clone() for k, v in a.acc.items()}

    whole, split = run(False), run(True)
    for name in whole:
        assert torch.equal(whole[name], split[name]), name
    assert float(whole["layers.0.W"].norm()) > 0


@pytest.mark.parametrize("bad", [{"beta": 0.0}, {"beta": -1.0}, {"beta": float("nan")}, {"beta": True},
                                 {"kappa": 1.0}, {"kappa": -0.1}, {"kappa": "0.5"}])
def test_bad_parameters_are_one_clear_error(bad: dict) -> None:
    with pytest.raises(osttp.OsttpError, match="local-error (beta|kappa)"):
        LocalErrorProjection(**bad)


def test_the_preset_is_forward_only() -> None:
    entry = osttp.rules.PRESETS.get("osttp-local")
    assert entry.meta["signal"] == "local-error" and entry.meta["trace"] == "diagonal"
    assert osttp.rules.SIGNALS.get("local-error").meta["uses_output_error"] is False


def test_signal_options_reach_the_signal_and_bad_ones_are_refused() -> None:
    case = make_case("lif", [4, 6, 3], True, seed=66, T=10, readout="integrator")
    learner = osttp.make_learner("osttp-local", case.net, signal_options={"beta": 2.5, "kappa": 0.3})
    assert (learner.signal.beta, learner.signal.kappa) == (2.5, 0.3)
    assert_grads_close(learner.sequence_gradients(case.xs, case.ys, case.mask),
                       online_oracle(case.net, case.xs, case.ys, case.mask, "diagonal", "local-error", local=(2.5, 0.3)))
    with pytest.raises(osttp.OsttpError, match="has no option.*gamma.*expected one of beta, kappa"):
        osttp.make_learner("osttp-local", case.net, signal_options={"gamma": 1.0})
    with pytest.raises(osttp.OsttpError, match="target-projection.*has no option.*beta.*expected none"):
        osttp.make_learner("osttp", case.net, signal_options={"beta": 1.0})
    with pytest.raises(osttp.OsttpError, match="rule 'bptt' has no learning signal"):
        osttp.make_learner("bptt", case.net, signal_options={"beta": 1.0})


@pytest.mark.parametrize("targets", ["classes", "multihot"])
def test_a_class_prior_starts_the_local_classifier_there(targets: str) -> None:
    """With a prior p the local logits are offset by log p (softmax) / logit p (sigmoid): the oracle
    agrees, and a vanishing scale gives the centred projection on p, with the opposite sign."""
    case = make_case("lif", [4, 6, 3], True, seed=67, T=12, targets=targets, readout="integrator")
    prior = torch.tensor([0.5, 0.3, 0.2] if targets == "classes" else [0.7, 0.05, 0.0], dtype=case.net.dtype)
    rule = learner(case, beta=1.3, kappa=0.7)
    rule.signal.prior = prior
    got = rule.sequence_gradients(case.xs, case.ys, case.mask)
    assert_grads_close(got, online_oracle(case.net, case.xs, case.ys, case.mask, "diagonal", "local-error",
                                          local=(1.3, 0.7), prior=prior))
    no_prior = learner(case, beta=1.3, kappa=0.7).sequence_gradients(case.xs, case.ys, case.mask)
    assert relative_error(got["layers.0.W"], no_prior["layers.0.W"]) > 1e-3
    tiny = learner(case, beta=1e-9)
    tiny.signal.prior = prior
    centred = osttp.make_learner("osttp-centred", case.net)
    centred.signal.prior = prior.clamp(1e-4, 1 - 1e-4) if targets == "multihot" else prior
    a = tiny.sequence_gradients(case.xs, case.ys, case.mask)
    b = centred.sequence_gradients(case.xs, case.ys, case.mask)
    assert relative_error(a["layers.0.W"], -b["layers.0.W"]) < 1e-6


@pytest.mark.parametrize("kind", ["ce", "bce"])
def test_for_layer_equals_the_local_loss_written_out_independently(kind: str) -> None:
    """L = d/dy of m E(beta (kappa u_{t-1} + y) B^T + b_p, y*) / beta, by autograd on the formula written in
    tests/oracles.py (not on the signal's own declared objective)."""
    from oracles import _local_error_at_step
    from osttp.rules.signals import StepContext

    torch.manual_seed(3)
    net = osttp.Network.from_sizes([4, 6, 3], seed=5, dtype=torch.float64)
    sig = LocalErrorProjection(beta=0.7, kappa=0.6)
    prior = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    sig.prior = prior
    u_prev, y = torch.rand(5, 6, dtype=torch.float64), torch.rand(5, 6, dtype=torch.float64)
    target = (torch.nn.functional.one_hot(torch.arange(5) % 3, 3).to(torch.float64) if kind == "ce"
              else (torch.rand(5, 3) > 0.5).to(torch.float64))
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    state = sig.advance(u_prev.clone(), y)
    ctx = StepContext(target=target, mask=mask, loss=osttp.rules.make_loss(kind), states=[state])
    want = _local_error_at_step(y, u_prev, net.feedback[0], target, mask, kind, 0.7, 0.6, prior)
    assert torch.allclose(sig.for_layer(net, 0, ctx, None), want, rtol=1e-12, atol=1e-14)
