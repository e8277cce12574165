"""The rule family (docs/math.md §4.4): DRTP, DFA, e-prop, truncated BPTT, on every cell, against oracles."""
from __future__ import annotations

import copy

import pytest
import torch

import osttp
import osttp.tasks
from osttp.rules.signals import Signal
from conftest import assert_really_spikes, make_case
from oracles import assert_grads_close, bptt_oracle, online_oracle, relative_error

FAMILY = ("drtp", "dfa", "eprop-rand", "eprop-sym")


@pytest.mark.parametrize("cell", ["snu", "lif", "alif"])
@pytest.mark.parametrize("rule", FAMILY)
@pytest.mark.parametrize("recurrent", [False, True])
def test_family_presets_equal_their_oracles(cell: str, rule: str, recurrent: bool) -> None:
    case = make_case(cell, [4, 5, 4, 6, 3], recurrent, seed=31, T=20)
    assert_really_spikes(case)
    trace, signal = osttp.rules.ONLINE_PRESETS[rule]
    want = online_oracle(case.net, case.xs, case.ys, case.mask, trace, signal)
    got = osttp.make_learner(rule, case.net).sequence_gradients(case.xs, case.ys, case.mask)
    assert_grads_close(got, want)


@pytest.mark.parametrize("cell", ["alif", "rnn"])
@pytest.mark.parametrize("recurrent", [False, True])
def test_ostl_exact_equals_bptt_for_alif_and_leaky_rnn(cell: str, recurrent: bool) -> None:
    case = make_case(cell, [4, 7, 3], recurrent, seed=32, T=25, targets="multihot")
    if cell == "alif":
        assert_really_spikes(case)
    want = bptt_oracle(case.net, case.xs, case.ys, case.mask)
    got = osttp.make_learner("ostl-exact", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    assert_grads_close(got, want)


@pytest.mark.parametrize("cell", ["rnn", "ssnu"])
def test_every_online_rule_runs_on_every_cell(cell: str) -> None:
    case = make_case(cell, [4, 5, 6, 3], True, seed=33, T=12)
    for rule, (trace, signal) in osttp.rules.ONLINE_PRESETS.items():
        want = online_oracle(case.net, case.xs, case.ys, case.mask, trace, signal)
        got = osttp.make_learner(rule, case.net).sequence_gradients(case.xs, case.ys, case.mask)
        assert_grads_close(got, want)


def test_tbptt_window_at_least_T_equals_bptt_and_window_1_differs() -> None:
    case = make_case("lif", [4, 6, 5, 3], True, seed=34, T=20)
    full = bptt_oracle(case.net, case.xs, case.ys, case.mask)
    for window in (20, 50):
        got = osttp.make_learner("tbptt", case.net, window=window).sequence_gradients(case.xs, case.ys, case.mask)
        assert_grads_close(got, full, 1e-12)
    for window in (1, 3, 10):
        got = osttp.make_learner("tbptt", case.net, window=window).sequence_gradients(case.xs, case.ys, case.mask)
        assert_grads_close(got, bptt_oracle(case.net, case.xs, case.ys, case.mask, window=window), 1e-12)
        assert relative_error(got["layers.0.W"], full["layers.0.W"]) > 1e-3
    assert osttp.make_learner("tbptt", case.net).name == "tbptt-10"


def _perturb_downstream(net: osttp.Network, seed: int = 5) -> osttp.Network:
    other = copy.deepcopy(net)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if not name.startswith("layers.0."):
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return other


class _SignalSeesOtherWeights(Signal):
    """Wraps a learning signal so that it reads its weights from another network: the forward
    pass (and so the output error) is untouched, only what the signal transports differs."""

    def __init__(self, inner, other: osttp.Network) -> None:
        self.inner, self.other = inner, other
        self.name, self.uses_output_error = inner.name, inner.uses_output_error
        self.trains_hidden = inner.trains_hidden

    def for_layer(self, net, l, ctx, above):
        return self.inner.for_layer(self.other, l, ctx, above)


@pytest.mark.parametrize("rule, transports", [
    ("drtp", False), ("dfa", False), ("osttp", False), ("osttp-exact", False), ("eprop-rand", False),
    ("eprop-sym", True), ("ostl", True), ("ostl-exact", True),
])
def test_weight_transport_column_of_the_table(rule: str, transports: bool) -> None:
    """Layer-0 updates depend on the downstream weights only for rules that transport weights."""
    case = make_case("snu", [4, 5, 6, 3], True, seed=35, T=16)
    other = _perturb_downstream(case.net)
    a = osttp.make_learner(rule, case.net).sequence_gradients(case.xs, case.ys, case.mask)
    learner = osttp.make_learner(rule, case.net)
    learner.signal = _SignalSeesOtherWeights(learner.signal, other)
    b = learner.sequence_gradients(case.xs, case.ys, case.mask)
    for name in ("layers.0.W", "layers.0.H", "layers.0.b"):
        if transports:
            assert relative_error(a[name], b[name]) > 1e-3, name
        else:
            assert torch.equal(a[name], b[name]), name


def test_bptt_reads_downstream_weights() -> None:
    case = make_case("snu", [4, 5, 6, 3], True, seed=35, T=16)
    a = bptt_oracle(case.net, case.xs, case.ys, case.mask)
    learner_grads = osttp.make_learner("bptt", _perturb_downstream(case.net)).sequence_gradients(
        case.xs, case.ys, case.mask)
    assert relative_error(a["layers.0.W"], learner_grads["layers.0.W"]) > 1e-3


def _train_delayed_xor(rule: str, epochs: int = 40, seed: int = 1) -> float:
    """Short training on delayed XOR (delay 5): 2 x 64 LIF (alpha 0.85), Adam 2e-3, batch 64."""
    train = osttp.tasks.load("delayed-xor", "train", delay=5, n_train=2048)
    test = osttp.tasks.load("delayed-xor", "test", delay=5)
    net = osttp.Network.from_sizes([train.n_in, 64, 64, train.n_out], cell="lif", seed=seed,
                                   cell_options={"alpha": 0.85})
    learner = osttp.make_learner(rule, net, optimizer=torch.optim.Adam(net.parameters(), lr=2e-3))
    for epoch in range(epochs):
        for b in train.batches(64, shuffle=True, seed=epoch):
            learner.reset(b.xs.shape[1])
            for t in range(b.xs.shape[0]):
                learner.step(b.xs[t], b.ys[t], b.mask[t])
            learner.apply()
    metric = test.new_metric()
    with torch.no_grad():
        for b in test.batches(256):
            metric.update(net(b.xs), b)
    return metric.compute()["accuracy"]


@pytest.mark.slow
def test_temporal_credit_on_delayed_xor() -> None:
    """Without traces there is no temporal credit: drtp cannot learn to carry the first bit over
    the delay, while osttp (traces) and bptt (backward in time) learn the task.

    drtp is not exactly at 50%: its untrained leaky neurons keep a fading memory of the bits that
    the (correctly trained) readout can partly read -- a reservoir effect, not learning. Measured
    with these seeds (see the closing note of the rule-family issue): drtp 0.57, osttp 0.94."""
    acc = {rule: _train_delayed_xor(rule) for rule in ("drtp", "osttp", "bptt")}
    assert acc["osttp"] >= 0.9, acc
    assert acc["bptt"] >= 0.95, acc
    assert acc["drtp"] <= 0.65, acc
