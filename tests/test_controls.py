"""Negative controls (docs/math.md §4.5): no weight transport, no silently-zero signal, fixed feedback."""
from __future__ import annotations

import copy

import pytest
import torch

import osttp
from conftest import make_case
from oracles import relative_error

HIDDEN = ("layers.0.W", "layers.0.H", "layers.0.b")


def _perturbed(net: osttp.Network, which: str, seed: int = 9) -> osttp.Network:
    other = copy.deepcopy(net)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        p = dict(other.named_parameters())[which]
        p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return other


@pytest.mark.parametrize("which", ["readout.weight", "layers.1.W", "layers.1.H", "layers.2.W"])
def test_osttp_hidden_grads_ignore_downstream_weights_while_ostl_sees_them(which: str) -> None:
    case = make_case("snu", [4, 5, 4, 6, 3], True, seed=11)
    other = _perturbed(case.net, which)
    for rule in ("osttp", "osttp-exact"):
        a = osttp.make_learner(rule, case.net).sequence_gradients(case.xs, case.ys, case.mask)
        b = osttp.make_learner(rule, other).sequence_gradients(case.xs, case.ys, case.mask)
        for name in HIDDEN:
            assert torch.equal(a[name], b[name]), (rule, name)
    a = osttp.make_learner("ostl", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    b = osttp.make_learner("ostl", other).sequence_gradients(case.xs, case.ys, case.mask)
    assert relative_error(a["layers.0.W"], b["layers.0.W"]) > 1e-3


@pytest.mark.parametrize("rule", ["osttp", "osttp-exact"])
def test_different_targets_give_different_nonzero_hidden_grads(rule: str) -> None:
    case = make_case("lif", [4, 5, 6, 3], True, seed=12)
    other_ys = (case.ys + 1) % 3
    a = osttp.make_learner(rule, case.net).sequence_gradients(case.xs, case.ys, case.mask)
    b = osttp.make_learner(rule, case.net).sequence_gradients(case.xs, other_ys, case.mask)
    for l in range(2):
        for k in ("W", "H", "b"):
            name = f"layers.{l}.{k}"
            assert float(a[name].abs().max()) > 1e-6 and float(b[name].abs().max()) > 1e-6, name
            assert relative_error(a[name], b[name]) > 1e-3, name


def test_feedback_matrices_are_fixed_seeded_and_saved() -> None:
    net = osttp.Network.from_sizes([4, 8, 6, 3], cell="snu", seed=3, dtype=torch.float64)
    before = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("feedback.")}
    assert sorted(before) == ["feedback.0", "feedback.1"]
    assert before["feedback.0"].shape == (3, 8) and before["feedback.1"].shape == (3, 6)
    assert all(not b.requires_grad for b in before.values())
    assert "feedback.0" not in dict(net.named_parameters())
    bound = (6 / 8) ** 0.5
    assert float(before["feedback.0"].abs().max()) <= bound
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    learner = osttp.make_learner("osttp", net, optimizer=opt, schedule="per-step")
    case = make_case("snu", [4, 8, 6, 3], False, seed=3)
    learner.reset(3)
    for t in range(case.xs.shape[0]):
        learner.step(case.xs[t], case.ys[t])
    after = net.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k  # bit-identical
    # same seed, same B; another seed, other B
    again = osttp.Network.from_sizes([4, 8, 6, 3], cell="snu", seed=3, dtype=torch.float64)
    assert torch.equal(again.feedback[0], before["feedback.0"])
    other = osttp.Network.from_sizes([4, 8, 6, 3], cell="snu", seed=4, dtype=torch.float64)
    assert not torch.equal(other.feedback[0], before["feedback.0"])
