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
