"""`Learner.steps` (a batch of sequences, its inputs checked once) and BPTT's graph accounting by its
first steps: the same outputs, gradients and reported memory as the step-by-step forms."""
from __future__ import annotations

import pytest
import torch

import osttp
import osttp.rules.bptt as bptt
from conftest import make_case
from oracles import assert_grads_close


@pytest.mark.parametrize("rule", ["bptt", "osttp", "eprop-rand", "osttp-fact"])
def test_steps_equals_step_by_step(rule: str) -> None:
    case = make_case("snu", [4, 6, 3], True, seed=71, T=9, B=3)
    a, b = (osttp.make_learner(rule, case.net, schedule="every-k", k=4) for _ in range(2))
    a.reset(3)
    outs_a = torch.stack([a.step(case.xs[t], case.ys[t], case.mask[t]) for t in range(case.xs.shape[0])])
    b.reset(3)
    outs_b = b.steps(case.xs, case.ys, case.mask)
    assert outs_b.shape == outs_a.shape and torch.equal(outs_a, outs_b)
    assert a.pending_steps == b.pending_steps == 1  # every-4 fired twice in 9 steps, in both
    assert_grads_close(a.gradients(), b.gradients(), 0.0)


def test_steps_refuses_bad_values_naming_them() -> None:
    case = make_case("snu", [4, 6, 3], False, seed=72, T=5, B=2)
    learner = osttp.make_learner("osttp", case.net)
    with pytest.raises(osttp.OsttpError, match="reset"):
        learner.steps(case.xs, case.ys)
    learner.reset(2)
    xs = case.xs.clone()
    xs[3, 1, 0] = float("nan")
    with pytest.raises(osttp.OsttpError, match="xs contains NaN"):
        learner.steps(xs, case.ys)
    with pytest.raises(osttp.OsttpError, match=r"xs has shape \(5, 2, 4\); expected \(\*, 3, 4\)"):
        learner3 = osttp.make_learner("osttp", case.net)
        learner3.reset(3)
        learner3.steps(case.xs, case.ys)


def test_bptt_graph_bytes_counted_on_two_steps_equal_counting_every_step(monkeypatch) -> None:
    case = make_case("snu", [4, 6, 3], True, seed=73, T=12, B=3)

    def reported() -> list[int]:
        learner = osttp.make_learner("bptt", case.net)
        learner.reset(3)
        sizes = []
        for t in range(case.xs.shape[0]):
            learner.step(case.xs[t], case.ys[t])
            sizes.append(learner.state_nbytes())
        return sizes

    sampled = reported()
    monkeypatch.setattr(bptt, "COUNTED_STEPS", 10**9)
    exact = reported()
    assert sampled == exact and exact[-1] > exact[0]


@pytest.mark.parametrize("targets,B", [("bce", 1), ("bce", 3), ("ce", 1), ("ce", 3)])
def test_bptt_loss_over_stacked_steps_equals_the_per_step_loss_to_the_bit(targets: str, B: int) -> None:
    """BPTT evaluates its task loss once over the stored steps' stacked outputs; in float32 its
    gradients and its loss_sum are those of the loss summed step by step (autograd), to the bit --
    with masks of 0, 1 and 0.5, and loss_sum read mid-sequence (which folds the stored steps early)."""
    T, sizes = 23, [12, 24, 17]  # C = 17: slices whose vectorized kernels end in scalar tails
    net = osttp.Network.from_sizes(sizes, cell="ssnu", recurrent=True, seed=5)
    g = torch.Generator().manual_seed(9)
    xs = torch.rand(T, B, sizes[0], generator=g)
    ys = ((torch.rand(T, B, sizes[-1], generator=g) < 0.2).float() if targets == "bce"
          else torch.randint(0, sizes[-1], (T, B), generator=g))
    mask = torch.tensor([0.0, 1.0, 0.5])[torch.randint(0, 3, (T, B), generator=g)]
    learner = osttp.make_learner("bptt", net)
    learner.reset(B)
    learner.steps(xs[:10], ys[:10], mask[:10])
    mid = learner.loss_sum.clone()
    learner.steps(xs[10:], ys[10:], mask[10:])
    got = learner.gradients()

    loss = osttp.rules.losses.make_loss(targets)
    onehot = ys if targets == "bce" else torch.nn.functional.one_hot(ys, sizes[-1]).float()
    states, total, reported = net.initial_state(B), None, torch.zeros(())
    for t in range(T):
        o, states = net.step(xs[t], states)
        E = (mask[t] * loss.value(o, onehot[t])).sum()
        total = E if total is None else total + E
        reported = reported + E.detach()
        if t == 9:
            assert torch.equal(mid, reported)
    names = [n for n, _ in net.named_parameters()]
    want = dict(zip(names, torch.autograd.grad(total, [p for _, p in net.named_parameters()])))
    assert torch.equal(learner.loss_sum, reported)
    for n in names:
        assert torch.equal(got[n], want[n]), n
    # negative control: the mask reaches the gradient (all-ones masks give another one)
    other = osttp.make_learner("bptt", net)
    other.reset(B)
    other.steps(xs, ys, torch.ones_like(mask))
    assert not torch.equal(other.gradients()["layers.0.W"], got["layers.0.W"])
