"""The core oracles: ostl-exact == BPTT; osttp(-exact), ostl(-exact) == their autograd oracles (docs/math.md §4.5)."""
from __future__ import annotations

import pytest
import torch

import osttp
from conftest import assert_really_spikes, make_case
from oracles import assert_grads_close, bptt_oracle, online_oracle, relative_error

CORE_CELLS = ("snu", "ssnu", "lif")


@pytest.mark.parametrize("cell", CORE_CELLS)
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("targets", ["index", "multihot"])
def test_ostl_exact_equals_bptt_one_layer(cell: str, recurrent: bool, targets: str) -> None:
    case = make_case(cell, [4, 7, 3], recurrent, seed=1, T=25, targets=targets)
    if cell != "ssnu":
        assert_really_spikes(case)
    want = bptt_oracle(case.net, case.xs, case.ys, case.mask)
    got = osttp.make_learner("ostl-exact", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    assert_grads_close(got, want)
    # and the BPTT learner is plain autograd as well
    assert_grads_close(osttp.make_learner("bptt", case.net).sequence_gradients(case.xs, case.ys, case.mask), want)


@pytest.mark.parametrize("cell", CORE_CELLS)
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("rule", ["osttp-exact", "osttp", "ostl", "ostl-exact"])
def test_online_rules_equal_their_oracles_three_hidden_layers(cell: str, recurrent: bool, rule: str) -> None:
    case = make_case(cell, [4, 5, 4, 6, 3], recurrent, seed=2, T=22)
    if cell != "ssnu":
        assert_really_spikes(case)
    trace, signal = osttp.rules.ONLINE_PRESETS[rule]
    want = online_oracle(case.net, case.xs, case.ys, case.mask, trace, signal)
    got = osttp.make_learner(rule, case.net).sequence_gradients(case.xs, case.ys, case.mask)
    assert_grads_close(got, want)


def test_oracle_variants_really_differ() -> None:
    """The modified graphs are not all the same graph: with H, diagonal != exact != bptt."""
    case = make_case("snu", [4, 6, 3], True, seed=3)
    exact = online_oracle(case.net, case.xs, case.ys, case.mask, "exact", "target-projection")
    diag = online_oracle(case.net, case.xs, case.ys, case.mask, "diagonal", "target-projection")
    none = online_oracle(case.net, case.xs, case.ys, case.mask, "none", "target-projection")
    for name in ("layers.0.W", "layers.0.H", "layers.0.b"):
        assert relative_error(diag[name], exact[name]) > 1e-3
        assert relative_error(none[name], diag[name]) > 1e-3
    # without H the diagonal trace is exact (the feed-forward-recurrence SNN class)
    case = make_case("snu", [4, 6, 3], False, seed=3)
    a = osttp.make_learner("osttp", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    b = osttp.make_learner("osttp-exact", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    assert_grads_close(a, b, 1e-12)


def test_ostl_exact_is_not_bptt_for_deep_networks() -> None:
    """OSTL's deep signal ignores the temporal paths through layers above: not BPTT for K-1 > 1."""
    case = make_case("snu", [4, 5, 6, 3], True, seed=4)
    want = bptt_oracle(case.net, case.xs, case.ys, case.mask)
    got = osttp.make_learner("ostl-exact", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    assert relative_error(got["layers.0.W"], want["layers.0.W"]) > 1e-3
    assert relative_error(got["layers.1.W"], want["layers.1.W"]) < 1e-10  # top layer: exact


def test_readout_gradient_is_the_same_for_every_online_rule() -> None:
    case = make_case("lif", [4, 5, 6, 3], False, seed=5)
    grads = [osttp.make_learner(r, case.net).sequence_gradients(case.xs, case.ys, case.mask)
             for r in ("ostl", "osttp", "osttp-exact")]
    for g in grads[1:]:
        for name in ("readout.weight", "readout.bias"):
            assert torch.equal(g[name], grads[0][name])
