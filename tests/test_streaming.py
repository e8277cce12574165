"""Streaming use: step-by-step equals sequence_gradients; schedules; memory flat in T."""
from __future__ import annotations

import pytest
import torch

import osttp
from conftest import make_case
from oracles import assert_grads_close

RULES = ["osttp", "osttp-exact", "ostl", "ostl-exact", "bptt"]


@pytest.mark.parametrize("rule", RULES)
def test_streaming_sequence_end_accumulates_exactly_sequence_gradients(rule: str) -> None:
    case = make_case("snu", [4, 5, 6, 3], True, seed=21)
    want = osttp.make_learner(rule, case.net).sequence_gradients(case.xs, case.ys, case.mask)
    learner = osttp.make_learner(rule, case.net, schedule="sequence-end")
    learner.reset(case.xs.shape[1])
    outs = [learner.step(case.xs[t], case.ys[t], case.mask[t]) for t in range(case.xs.shape[0])]
    learner.apply()  # no optimizer: writes .grad
    got = {n: p.grad for n, p in case.net.named_parameters()}
    assert_grads_close(got, want, 0.0 if rule != "bptt" else 1e-12)
    with torch.no_grad():
        assert torch.allclose(torch.stack(outs), case.net(case.xs), rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", ["osttp", "ostl", "bptt"])
def test_per_step_schedule_changes_weights_at_every_step(rule: str) -> None:
    case = make_case("lif", [4, 6, 3], True, seed=22, masked=False)
    opt = torch.optim.SGD(case.net.parameters(), lr=0.01)
    learner = osttp.make_learner(rule, case.net, optimizer=opt, schedule="per-step")
    learner.reset(case.xs.shape[1])
    prev = case.net.layers[0].W.detach().clone()
    prev_out = case.net.readout.weight.detach().clone()
    for t in range(10):
        learner.step(case.xs[t], case.ys[t])
        W = case.net.layers[0].W.detach()
        assert not torch.equal(W, prev), f"hidden weights unchanged at step {t}"
        assert not torch.equal(case.net.readout.weight.detach(), prev_out), f"readout unchanged at step {t}"
        prev, prev_out = W.clone(), case.net.readout.weight.detach().clone()


def test_every_k_schedule_applies_every_k_steps_and_sequence_end_never_inside() -> None:
    case = make_case("snu", [4, 6, 3], False, seed=23, masked=False)
    opt = torch.optim.SGD(case.net.parameters(), lr=0.01)
    learner = osttp.make_learner("osttp", case.net, optimizer=opt, schedule="every-k", k=4)
    learner.reset(case.xs.shape[1])
    changes = []
    for t in range(12):
        before = case.net.readout.weight.detach().clone()
        learner.step(case.xs[t], case.ys[t])
        changes.append(not torch.equal(before, case.net.readout.weight.detach()))
    assert changes == [(t + 1) % 4 == 0 for t in range(12)]
    learner = osttp.make_learner("osttp", case.net, optimizer=opt)
    learner.reset(case.xs.shape[1])
    before = case.net.readout.weight.detach().clone()
    for t in range(12):
        learner.step(case.xs[t], case.ys[t])
    assert torch.equal(before, case.net.readout.weight.detach())
    learner.apply()
    assert not torch.equal(before, case.net.readout.weight.detach())


def test_sequence_gradients_leaves_parameters_and_stream_unchanged() -> None:
    case = make_case("snu", [4, 6, 3], True, seed=24)
    before = {k: v.clone() for k, v in case.net.state_dict().items()}
    learner = osttp.make_learner("osttp", case.net)
    learner.reset(3)
    learner.step(case.xs[0], case.ys[0])
    pending = learner.gradients()
    learner.sequence_gradients(case.xs, case.ys, case.mask)
    assert all(torch.equal(v, case.net.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, learner.gradients()[k]) for k, v in pending.items())
    assert learner.steps_since_reset == 1


@pytest.mark.parametrize("rule", ["osttp", "ostl", "osttp-exact", "drtp"])
def test_stored_state_is_flat_in_sequence_length(rule: str) -> None:
    net = osttp.Network.from_sizes([3, 8, 6, 2], cell="snu", recurrent=True, seed=0, dtype=torch.float64)
    sizes = {}
    for T in (10, 1000):
        learner = osttp.make_learner(rule, net)
        learner.reset(2)
        g = torch.Generator().manual_seed(T)
        for _ in range(T):
            learner.step(torch.rand(2, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (2,), generator=g))
        sizes[T] = learner.state_nbytes()
    assert sizes[10] == sizes[1000] > 0


def test_bptt_stored_state_grows_with_sequence_length() -> None:
    net = osttp.Network.from_sizes([3, 8, 2], cell="snu", seed=0, dtype=torch.float64)
    sizes = {}
    for T in (10, 100):
        learner = osttp.make_learner("bptt", net)
        learner.reset(2)
        for _ in range(T):
            learner.step(torch.rand(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.int64))
        sizes[T] = learner.state_nbytes()
    assert sizes[100] > 5 * sizes[10]
