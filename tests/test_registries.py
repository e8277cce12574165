"""Generic suites over the registries (like torch's optim_db): a registered cell, trace kind, preset or
readout is tested here the moment it exists, with no list to update.

    cell        -> ostl-exact == BPTT, and osttp == its oracle (both readouts)
    trace kind  -> nbytes == what init allocates; with target projection and with the random error,
                   == the oracle graph it declares
    preset      -> == its oracle with the integrator readout, on a recurrent spiking network
    task        -> batches of the declared shapes that its metric reads
Signals: tests/test_registry_signals.py; devices and update schemes: tests/test_registry_hardware.py.
The toy tests register a cell, a trace kind and a task from inside the test and run the suites on them.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

import osttp
import osttp.tasks
from osttp.cells import CELLS, Local
from osttp.network import READOUTS
from osttp.rules import PRESETS, TRACE_KINDS, register_online_preset
from osttp.rules.traces import NoTrace, TraceState, diagonal_jacobian, self_coupling
from osttp.tasks.base import TensorClassTask
from conftest import assert_really_spikes, is_spiking, make_case
from toys import LinearLeaky
from oracles import assert_grads_close, bptt_oracle, online_oracle


def cell_cases() -> list[str]:
    return CELLS.names()


def trace_cases() -> list[str]:
    return TRACE_KINDS.names()


def online_preset_cases() -> list[str]:
    return [e.name for e in PRESETS.entries() if e.meta.get("online")]


def run_cell_suite(cell: str) -> None:
    for readout in READOUTS.names():
        case = make_case(cell, [4, 6, 3], True, seed=41, T=16, targets="multihot", readout=readout)
        if is_spiking(cell):
            assert_really_spikes(case)
        if readout == "linear":  # with an integrator, BPTT also credits y_t through o_{t+1}, o_{t+2}, ...
            want = bptt_oracle(case.net, case.xs, case.ys, case.mask)
            got = osttp.make_learner("ostl-exact", case.net).sequence_gradients(case.xs, case.ys, case.mask)
            assert_grads_close(got, want)
        want = online_oracle(case.net, case.xs, case.ys, case.mask, "exact", "backprop-in-space")
        got = osttp.make_learner("ostl-exact", case.net).sequence_gradients(case.xs, case.ys, case.mask)
        assert_grads_close(got, want)
        want = online_oracle(case.net, case.xs, case.ys, case.mask, "diagonal", "target-projection")
        got = osttp.make_learner("osttp", case.net).sequence_gradients(case.xs, case.ys, case.mask)
        assert_grads_close(got, want)


def check_trace_nbytes(trace: str) -> None:
    """nbytes (the memory estimate's count) is what init allocates, for every layer shape."""
    kind = TRACE_KINDS.build(trace)
    for cell, recurrent in (("snu", False), ("alif", True)):
        net = osttp.Network.from_sizes([7, 5, 3], cell=cell, recurrent=recurrent, dtype=torch.float64)
        layer = net.layers[0]
        state = kind.init(layer, 4)
        allocated = sum(t.numel() * t.element_size() for t in state.tensors())
        assert kind.nbytes(4, 7, 5, layer.cell.n_states, recurrent, 8) == allocated, (trace, cell)


def run_trace_suite(trace: str) -> None:
    check_trace_nbytes(trace)
    for signal in ("target-projection", "random-error"):
        name = f"_suite-{trace}-{signal}"
        register_online_preset(name, trace, signal)
        try:
            for recurrent in (False, True):
                case = make_case("snu", [4, 5, 4, 3], recurrent, seed=42, T=14, readout="integrator")
                want = online_oracle(case.net, case.xs, case.ys, case.mask, trace, signal)
                got = osttp.make_learner(name, case.net).sequence_gradients(case.xs, case.ys, case.mask)
                assert_grads_close(got, want)
        finally:
            PRESETS.unregister(name)


def run_preset_suite(preset: str) -> None:
    entry = PRESETS.get(preset)
    case = make_case("lif", [4, 5, 4, 3], True, seed=43, T=14, readout="integrator", kappa=0.8)
    assert_really_spikes(case)
    want = online_oracle(case.net, case.xs, case.ys, case.mask, entry.meta["trace"], entry.meta["signal"])
    got = osttp.make_learner(preset, case.net).sequence_gradients(case.xs, case.ys, case.mask)
    assert_grads_close(got, want)


@pytest.mark.parametrize("cell", cell_cases())
def test_every_registered_cell(cell: str) -> None:
    run_cell_suite(cell)


@pytest.mark.parametrize("trace", trace_cases())
def test_every_registered_trace_kind(trace: str) -> None:
    run_trace_suite(trace)


@pytest.mark.parametrize("preset", online_preset_cases())
def test_every_online_preset_with_the_integrator_readout(preset: str) -> None:
    run_preset_suite(preset)


def test_bptt_presets_with_the_integrator_readout_equal_autograd() -> None:
    case = make_case("snu", [4, 6, 3], True, seed=44, T=15, readout="integrator", kappa=0.7)
    want = bptt_oracle(case.net, case.xs, case.ys, case.mask)
    for name in ("bptt", "tbptt"):
        got = osttp.make_learner(name, case.net, window=50).sequence_gradients(case.xs, case.ys, case.mask)
        assert_grads_close(got, want, 1e-12)


def test_the_integrator_readout_really_integrates() -> None:
    """Negative control: kappa changes the readout's gradient, and the linear readout is kappa = 0."""
    grads = {}
    for readout, kappa in (("linear", None), ("integrator", 0.9)):
        case = make_case("snu", [4, 6, 3], True, seed=45, T=12, readout=readout, kappa=kappa)
        grads[readout] = osttp.make_learner("osttp", case.net).sequence_gradients(case.xs, case.ys, case.mask)
        assert case.net.readout.kappa == (0.0 if kappa is None else kappa)
    assert not torch.allclose(grads["linear"]["readout.weight"], grads["integrator"]["readout.weight"])
    with pytest.raises(osttp.OsttpError, match="kappa"):
        osttp.Network.from_sizes([2, 3, 2], readout="linear", kappa=0.5)
    with pytest.raises(osttp.OsttpError, match="kappa"):
        osttp.Network.from_sizes([2, 3, 2], readout="integrator", kappa=1.0)
    with pytest.raises(osttp.OsttpError, match="unknown readout"):
        osttp.Network.from_sizes([2, 3, 2], readout="softmax")


@pytest.mark.parametrize("recurrent", [False, True])
def test_snu_soft_reset_equals_its_oracles_and_differs_from_the_multiplicative_reset(recurrent: bool) -> None:
    out = {}
    for reset in ("soft", "multiplicative"):
        case = make_case("snu", [4, 6, 3], recurrent, seed=46, T=18, cell_options={"reset": reset})
        assert_really_spikes(case)
        want = bptt_oracle(case.net, case.xs, case.ys, case.mask)  # one hidden layer: ostl-exact is BPTT
        got = osttp.make_learner("ostl-exact", case.net).sequence_gradients(case.xs, case.ys, case.mask)
        assert_grads_close(got, want)
        case = make_case("snu", [4, 6, 5, 3], recurrent, seed=46, T=18, cell_options={"reset": reset})
        assert_really_spikes(case)
        want = online_oracle(case.net, case.xs, case.ys, case.mask, "diagonal", "target-projection")
        out[reset] = osttp.make_learner("osttp", case.net).sequence_gradients(case.xs, case.ys, case.mask)
        assert_grads_close(out[reset], want)
    assert not torch.allclose(out["soft"]["layers.0.W"], out["multiplicative"]["layers.0.W"])
    with pytest.raises(osttp.OsttpError, match="reset"):
        osttp.make_cell("snu", reset="hard")


# --------------------------------------------------------------------------------------- toys


def test_a_toy_cell_registered_here_is_picked_up_by_the_generic_suites() -> None:
    CELLS.register("toy", LinearLeaky, help="test-only", spiking=False)
    try:
        assert "toy" in cell_cases() and "toy" in osttp.available_cells()
        run_cell_suite("toy")
        net = osttp.Network.from_sizes([3, 4, 2], cell="toy", recurrent=True)
        assert net.layers[0].cell == LinearLeaky()
    finally:
        CELLS.unregister("toy")
    assert "toy" not in osttp.available_cells()


@dataclass
class PackedState(TraceState):
    packed: Tensor  # [W | H] side by side along the presynaptic axis (B, n, k, n_in + n)
    bias: Tensor


class PackedDiagonalTrace:
    """The diagonal kind with its state packed differently: one tensor for [W | H] side by side along
    the presynaptic axis, plus the bias trace -- state that is not shaped like any parameter."""

    name = "packed-diagonal"

    def nbytes(self, batch: int, n_in: int, n: int, k: int, recurrent: bool, element_size: int) -> int:
        return batch * n * k * (n_in + (n if recurrent else 0) + 1) * element_size

    def init(self, layer, batch: int) -> PackedState:
        n_pre = layer.n_in + (layer.n if layer.H is not None else 0)
        kw = {"dtype": layer.W.dtype, "device": layer.W.device}
        return PackedState(torch.zeros(batch, layer.n, layer.cell.n_states, n_pre, **kw),
                           torch.zeros(batch, layer.n, layer.cell.n_states, **kw))

    def update(self, tr: PackedState, layer, loc: Local, os_prev: Tensor, ob_prev: Tensor, x: Tensor,
               y_prev: Tensor) -> None:
        D = diagonal_jacobian(layer, loc, os_prev)[..., 0, 0]  # one-state cells only (a toy)
        pre = torch.cat([x] + ([y_prev] if layer.H is not None else []), dim=-1)
        tr.packed = D[..., None, None] * tr.packed + loc.fI.unsqueeze(-1) * pre[:, None, None, :]
        tr.bias = D[..., None] * tr.bias + loc.fb + self_coupling(layer, loc) * ob_prev.unsqueeze(-1)

    def contract(self, tr: PackedState, loc: Local, L: Tensor, acc: dict[str, Tensor]) -> None:
        u = L.unsqueeze(-1) * loc.os
        g = torch.einsum("bia,biap->ip", u, tr.packed)
        n_in = acc["W"].shape[1]
        acc["W"] += g[:, :n_in]
        if "H" in acc:
            acc["H"] += g[:, n_in:]
        acc["b"] += (u * tr.bias).sum((0, 2)) + (L * loc.ob).sum(0)


def test_a_toy_trace_kind_with_its_own_state_layout_is_picked_up_by_the_generic_suites() -> None:
    TRACE_KINDS.register("packed-diagonal", PackedDiagonalTrace, help="test-only", oracle="diagonal")
    try:
        assert "packed-diagonal" in trace_cases()
        run_trace_suite("packed-diagonal")
    finally:
        TRACE_KINDS.unregister("packed-diagonal")


def test_the_oracles_refuse_a_trace_kind_without_a_known_graph() -> None:
    TRACE_KINDS.register("mystery", NoTrace, help="test-only")  # no `oracle` metadata
    try:
        case = make_case("snu", [3, 4, 2], False, seed=47, T=5)
        with pytest.raises(ValueError, match="oracle graph"):
            online_oracle(case.net, case.xs, case.ys, case.mask, "mystery", "target-projection")
    finally:
        TRACE_KINDS.unregister("mystery")
    with pytest.raises(osttp.OsttpError, match="unknown trace kind"):
        online_oracle(case.net, case.xs, case.ys, case.mask, "nope", "target-projection")


def test_none_keeps_no_per_synapse_state() -> None:
    """Growing the input width by d adds B*d numbers (the input vector) to drtp's state, but B*n*d
    (a per-synapse trace) to osttp's."""
    def state_without_accumulators(rule: str, n_in: int) -> int:
        case = make_case("snu", [n_in, 32, 3], True, seed=48, T=4)
        learner = osttp.make_learner(rule, case.net)
        learner.reset(3)
        learner.step(case.xs[0], case.ys[0])
        return learner.state_nbytes() - sum(a.numel() * a.element_size() for a in learner.acc.values())

    d, B, n, item = 48, 3, 32, 8
    assert state_without_accumulators("drtp", 16 + d) - state_without_accumulators("drtp", 16) == B * d * item
    assert state_without_accumulators("osttp", 16 + d) - state_without_accumulators("osttp", 16) >= B * n * d * item


def run_task_suite(task: str) -> None:
    """A batch has the declared shapes, and the task's metric reads the outputs of a network built for
    it. Tasks whose files are not on this machine are skipped (their loaders are tested on generated files)."""
    try:
        split = osttp.tasks.load(task, "valid")
    except osttp.DataError as e:
        pytest.skip(str(e))
    batch = next(iter(split.batches(4, shuffle=False, dtype=torch.float64)))
    T, B = batch.mask.shape
    assert batch.xs.shape == (T, B, split.n_in) and B == min(4, len(split))
    net = osttp.Network.from_sizes([split.n_in, 8, split.n_out], dtype=torch.float64, readout="integrator")
    metric = split.new_metric()
    with torch.no_grad():
        metric.update(net(batch.xs), batch)
    value = metric.compute()[split.metric_name]
    assert value == value  # not NaN: at least one supervised step was scored


@pytest.mark.parametrize("task", osttp.tasks.TASKS.names())
def test_every_registered_task_serves_batches_its_metric_reads(task: str) -> None:
    run_task_suite(task)


def _toy_task(split: str, root, params: dict) -> TensorClassTask:
    """Six sequences of 5 steps x 2 inputs; the class is which input is on, scored at the last step."""
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    xs = torch.nn.functional.one_hot(labels, 2).to(torch.float32)[:, None, :].expand(6, 5, 2).contiguous()
    mask = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])
    return TensorClassTask("toy-task", split, {}, xs, labels, mask, 2)


def test_a_toy_task_registered_here_is_picked_up_by_the_generic_suite() -> None:
    osttp.tasks.TASKS.register("toy-task", _toy_task, help="test-only", files=False)
    try:
        assert "toy-task" in osttp.tasks.available()
        run_task_suite("toy-task")
    finally:
        osttp.tasks.TASKS.unregister("toy-task")


@pytest.mark.parametrize("preset", ["osttp", "osttp-centred", "eprop-rand", "ostl", "drtp"])
def test_the_rate_regulariser_equals_its_oracle_on_every_step(preset: str) -> None:
    from osttp.rules.regularisers import RateRegulariser

    entry = PRESETS.get(preset)
    case = make_case("lif", [4, 5, 4, 3], True, seed=49, T=12, readout="integrator")
    learner = osttp.make_learner(preset, case.net)
    learner.rate_regulariser = RateRegulariser(0.7, 0.2)
    got = learner.sequence_gradients(case.xs, case.ys, case.mask)
    want = online_oracle(case.net, case.xs, case.ys, case.mask, entry.meta["trace"], entry.meta["signal"],
                         rate_reg=(0.7, 0.2))
    assert_grads_close(got, want)
    plain = osttp.make_learner(preset, case.net).sequence_gradients(case.xs, case.ys, case.mask)
    assert not torch.allclose(plain["layers.0.W"], got["layers.0.W"])  # the term acts


def test_bptt_with_the_rate_regulariser_equals_autograd() -> None:
    from osttp.rules.regularisers import RateRegulariser

    case = make_case("snu", [4, 6, 3], True, seed=50, T=12)
    learner = osttp.make_learner("bptt", case.net)
    learner.rate_regulariser = RateRegulariser(0.5, 0.1)
    assert_grads_close(learner.sequence_gradients(case.xs, case.ys, case.mask),
                       bptt_oracle(case.net, case.xs, case.ys, case.mask, rate_reg=(0.5, 0.1)), 1e-12)
    with pytest.raises(osttp.OsttpError, match="rate_reg"):
        RateRegulariser(-1.0)


@pytest.mark.parametrize("targets", ["index", "multihot"])
def test_centred_projection_with_a_class_prior_equals_its_oracle(targets: str) -> None:
    case = make_case("snu", [4, 5, 4, 3], True, seed=51, T=12, targets=targets)
    prior = torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64)
    learner = osttp.make_learner("osttp-centred", case.net)
    learner.signal.prior = prior
    got = learner.sequence_gradients(case.xs, case.ys, case.mask)
    assert_grads_close(got, online_oracle(case.net, case.xs, case.ys, case.mask, "diagonal",
                                          "centred-target-projection", prior=prior))
    plain = osttp.make_learner("osttp-centred", case.net).sequence_gradients(case.xs, case.ys, case.mask)
    assert not torch.allclose(plain["layers.0.W"], got["layers.0.W"])
