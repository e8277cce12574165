"""osttp <-> NIR (docs/interop.md): every cell NIR can express goes to a NIR file and back to the same
network, spike for spike, in float64; the cells NIR cannot express are refused in one line naming the
cell and why; graphs osttp cannot read are refused naming the node."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from interop_helpers import firing_net, run_with_spikes, spike_input
from osttp import Network, OsttpError

nir = pytest.importorskip("nir", reason="NIR interop needs the 'nir' package (pip install 'osttp[interop]')")
from osttp.interop import from_nir, to_nir  # noqa: E402

MAPPABLE = [("lif", {}), ("lif", {"alpha": 1.0, "theta": 0.7}), ("snu", {"g": "identity"}),
            ("snu", {"g": "identity", "d": 1.0}), ("snu", {"g": "identity", "reset": "soft"})]


def _through_file(graph, tmp_path):
    path = tmp_path / "model.nir"
    nir.write(str(path), graph)
    return nir.read(str(path))


@pytest.mark.parametrize("cell,options", MAPPABLE, ids=lambda v: str(v))
@pytest.mark.parametrize("recurrent", [False, True], ids=["ff", "rec"])
@pytest.mark.parametrize("readout", ["linear", "integrator"])
def test_round_trip_through_a_nir_file_is_exact(cell, options, recurrent, readout, tmp_path):
    net = firing_net([5, 7, 6, 3], cell, options, recurrent, readout)
    xs = spike_input(40, 4, 5)
    back = from_nir(_through_file(to_nir(net), tmp_path), dtype=torch.float64)
    assert (back.config["cell"], back.config["recurrent"], back.config["readout"]) == (cell, recurrent, readout)
    out, spikes = run_with_spikes(net, xs)
    out2, spikes2 = run_with_spikes(back, xs)
    for s in spikes:
        assert 0.02 < float(s.mean()) < 0.9, "the layers must spike for the comparison to mean anything"
    for s, s2 in zip(spikes, spikes2):
        assert torch.equal(s, s2)
    torch.testing.assert_close(out2, out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("unit_resistance", [False, True])
def test_both_resistance_forms_are_the_same_dynamics(unit_resistance, tmp_path):
    """r = tau/dt (weights as osttp holds them) and r = 1 (the Euler gain moved into the weights)."""
    net = firing_net([4, 6, 2], "lif", {"alpha": 0.8}, True, "integrator")
    graph = to_nir(net, dt=1e-3, unit_resistance=unit_resistance)
    rs = sorted(np.unique(n.r).item() for n in graph.nodes.values() if hasattr(n, "r"))
    # r = tau/dt = 1/(1 - leak): the hidden layer's alpha 0.8, the readout's kappa 0.9
    assert rs == pytest.approx([1.0, 1.0] if unit_resistance else [1 / (1 - 0.8), 1 / (1 - 0.9)])
    back = from_nir(_through_file(graph, tmp_path), dt=1e-3, dtype=torch.float64)
    xs = spike_input(30, 3, 4)
    torch.testing.assert_close(back(xs), net(xs), rtol=0, atol=1e-12)


def test_a_different_dt_on_import_is_a_different_network(tmp_path):
    """Negative control: the comparison above sees a wrong leak (tau read at another dt)."""
    net = firing_net([5, 7, 3], "lif", {"alpha": 0.9}, True)
    back = from_nir(_through_file(to_nir(net, dt=1e-4), tmp_path), dt=2e-4, dtype=torch.float64)
    assert back.layers[0].cell.alpha != pytest.approx(0.9)
    xs = spike_input(40, 4, 5)
    assert (back(xs) - net(xs)).abs().max() > 1e-3


def test_the_leak_is_written_as_tau_at_dt():
    net = Network.from_sizes([3, 4, 2], cell="lif", cell_options={"alpha": 0.75}, readout="integrator", kappa=0.5)
    graph = to_nir(net, dt=1e-3)
    assert np.allclose(graph.nodes["layer0.li"].tau, 1e-3 / (1 - 0.75))
    assert np.allclose(graph.nodes["readout_li"].tau, 1e-3 / (1 - 0.5))
    assert graph.metadata["dt"] == 1e-3


@pytest.mark.parametrize("cell,options,why", [
    ("ssnu", {}, "cell 'ssnu' outputs a sigmoid"),
    ("snu", {"g": "relu"}, "cell 'snu' with g='relu' clips the membrane at 0"),
    ("alif", {}, "cell 'alif' has an adaptive threshold"),
    ("rnn", {}, "cell 'rnn' is a leaky tanh unit"),
])
def test_cells_nir_cannot_express_are_refused_in_one_line(cell, options, why):
    net = Network.from_sizes([3, 4, 2], cell=cell, cell_options=options)
    with pytest.raises(OsttpError) as e:
        to_nir(net)
    assert str(e.value).startswith(f"cannot export to NIR: layer 0: {why}")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("dt", [0, -1e-4, "1e-4", True])
def test_a_bad_dt_is_refused(dt):
    with pytest.raises(OsttpError, match="dt must be a positive number"):
        to_nir(Network.from_sizes([3, 4, 2], cell="lif"), dt=dt)


def _chain(neuron, w_in=None):
    w = np.ones((2, 3)) if w_in is None else w_in
    return nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([3])), "w": nir.Linear(weight=w),
                               "n": neuron, "out_w": nir.Affine(weight=np.ones((1, 2)), bias=np.zeros(1)),
                               "output": nir.Output(output_type=np.array([1]))},
                        edges=[("input", "w"), ("w", "n"), ("n", "out_w"), ("out_w", "output")])


@pytest.mark.parametrize("graph,message", [
    (lambda: _chain(nir.CubaLIF(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2),
                                v_threshold=np.ones(2))), "node 'n' is a CubaLIF; osttp reads LIF, IF"),
    (lambda: _chain(nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                            v_reset=np.full(2, 0.5))), "node 'n': v_reset != 0"),
    (lambda: _chain(nir.LIF(tau=np.array([1.0, 2.0]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                            v_reset=np.zeros(2))), "one time constant per layer"),
    (lambda: _chain(nir.LIF(tau=np.full(2, 1e-5), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                            v_reset=np.zeros(2))), "outside \\[0, 1\\); choose dt <= tau"),
    (lambda: _chain(nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2))), "is not followed by a Threshold"),
    (lambda: nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([3])),
                                 "output": nir.Output(output_type=np.array([3]))}, edges=[("input", "output")]),
     "NIR graph has no spiking layer"),
])
def test_graphs_osttp_cannot_read_are_refused_naming_the_node(graph, message):
    with pytest.raises(OsttpError, match=message):
        from_nir(graph())


def test_from_nir_needs_a_graph():
    with pytest.raises(OsttpError, match="from_nir needs a nir.NIRGraph, got dict"):
        from_nir({})
