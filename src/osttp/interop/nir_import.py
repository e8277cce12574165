"""NIR graph -> osttp Network (docs/interop.md): the inverse of `to_nir`, and graphs other libraries
write (snnTorch's export, whose recurrent layers arrive as sub-graphs).

The graph must be a chain: Input -> (Affine|Linear -> neuron [+ recurrent Affine|Linear])+ ->
Affine|Linear [-> LI] -> Output, where a neuron is NIR's LIF/IF (reset to 0: osttp's SNU with
g="identity") or LI/I -> Threshold with a recurrent weight (osttp's LIF: the diagonal's theta is the
subtractive reset). Anything else is refused with the node that does not fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from osttp.errors import OsttpError
from osttp.interop.discretisation import euler_input_gain, leak_from_tau
from osttp.interop.nir_export import load_nir
from osttp.network import Network


def _flatten(nir: Any, graph: Any, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Sub-graphs inlined (snnTorch writes a recurrent layer as one); their own Input and Output nodes
    become pass-through names (None), joined to the outer edges."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    for key, node in graph.nodes.items():
        name = prefix + key
        if isinstance(node, nir.NIRGraph):
            inner_nodes, inner_edges = _flatten(nir, node, name + ".")
            nodes.update(inner_nodes)
            edges += inner_edges
            entry[name] = name + "." + _only(node, nir.Input, name)
            exit_[name] = name + "." + _only(node, nir.Output, name)
        else:
            nodes[name] = None if prefix and isinstance(node, (nir.Input, nir.Output)) else node
    edges += [(exit_.get(prefix + a, prefix + a), entry.get(prefix + b, prefix + b)) for a, b in graph.edges]
    return nodes, edges


def _only(graph: Any, kind: type, name: str) -> str:
    keys = [k for k, v in graph.nodes.items() if isinstance(v, kind)]
    if len(keys) != 1:
        raise OsttpError(f"NIR sub-graph {name!r} has {len(keys)} {kind.__name__} nodes; osttp reads exactly one")
    return keys[0]


class _Chain:
    """Successors and predecessors of a flattened graph, with pass-through nodes skipped."""

    def __init__(self, nir: Any, graph: Any) -> None:
        self.nir = nir
        self.nodes, edges = _flatten(nir, graph)
        self.succ: dict[str, list[str]] = {}
        for a, b in set(edges):
            if a not in self.nodes or b not in self.nodes:
                raise OsttpError(f"NIR graph edge ({a!r}, {b!r}) names a node the graph does not have")
            self.succ.setdefault(a, []).append(b)

    def _real(self, key: str) -> list[str]:
        if self.nodes[key] is not None:
            return [key]
        return [r for nxt in self.succ.get(key, []) for r in self._real(nxt)]

    def after(self, key: str) -> list[str]:
        return sorted({r for nxt in self.succ.get(key, []) for r in self._real(nxt)})

    def only_after(self, key: str, exclude: set[str] | None = None) -> str:
        nxt = [k for k in self.after(key) if k not in (exclude or set())]
        if len(nxt) != 1:
            raise OsttpError(f"NIR graph is not a chain osttp can read: node {key!r} feeds {nxt or 'nothing'}")
        return nxt[0]

    def recurrent(self, spikes: str, into: str) -> set[str]:
        """The weight nodes that take a layer's spikes back into its neuron."""
        return {k for k in self.after(spikes) if into in self.after(k)}


@dataclass
class _Layer:
    kind: str          # "snu" (NIR LIF/IF: reset to 0), "lif" or "snu-soft" (LI/I -> Threshold, subtractive)
    alpha: float
    W: np.ndarray      # osttp's weights: the Euler gain applied
    b: np.ndarray
    H: np.ndarray | None
    theta: float = 1.0


def _vector(x: Any, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)).copy()


def _leak_and_gain(nir: Any, node: Any, key: str, n: int, dt: float) -> tuple[float, np.ndarray]:
    tau = None if isinstance(node, (nir.I, nir.IF)) else _vector(node.tau, n)
    alpha = 1.0 if tau is None else leak_from_tau(tau, dt, f"node {key!r}")
    if hasattr(node, "v_leak") and not np.allclose(node.v_leak, 0.0):
        raise OsttpError(f"node {key!r}: v_leak != 0 has no osttp counterpart (a constant drive; fold it into the bias)")
    return alpha, euler_input_gain(tau, _vector(node.r, n), dt)


def _weights(nir: Any, node: Any, key: str, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(node, (nir.Affine, nir.Linear)):
        raise OsttpError(f"node {key!r} is a {type(node).__name__}; osttp expected Affine or Linear here")
    W = np.asarray(node.weight, dtype=np.float64) * gain[:, None]
    bias = getattr(node, "bias", None)
    b = np.zeros(W.shape[0]) if bias is None else _vector(bias, W.shape[0]) * gain
    return W, b


def _recurrent(chain: _Chain, spikes: str, into: str, gain: np.ndarray) -> np.ndarray | None:
    recs = sorted(chain.recurrent(spikes, into))
    if len(recs) > 1:
        raise OsttpError(f"node {spikes!r} has {len(recs)} recurrent weights; osttp takes one per layer")
    if not recs:
        return None
    H, hb = _weights(chain.nir, chain.nodes[recs[0]], recs[0], gain)
    if not np.allclose(hb, 0.0):
        raise OsttpError(f"recurrent node {recs[0]!r} has a bias; osttp's recurrent weight has none")
    return H


def _subtractive_layer(threshold: Any, key: str, alpha: float, W: np.ndarray, b: np.ndarray, R: np.ndarray
                       ) -> _Layer:
    """LI/I -> Threshold with recurrent weight R (which holds the reset on its diagonal).

    One threshold theta: osttp's LIF, H = R + theta 1. Per-unit thresholds and no input bias: the soft
    SNU (g="identity"), whose reset subtracts d: H = R + d 1, b = -threshold."""
    n = W.shape[0]
    thetas = _vector(threshold.threshold, n)
    if np.unique(thetas).size == 1 and thetas[0] > 0:
        return _Layer("lif", alpha, W, b, R + thetas[0] * np.eye(n), float(thetas[0]))
    if np.allclose(b, 0.0):
        return _Layer("snu-soft", alpha, W, -thetas, R + alpha * np.eye(n))
    raise OsttpError(f"node {key!r}: per-unit thresholds {np.unique(thetas)} and an input bias: neither osttp's "
                     "LIF (one threshold) nor its soft SNU (no input bias)")


def _read_layer(chain: _Chain, w_key: str, dt: float) -> tuple[_Layer, str]:
    nir = chain.nir
    key = chain.only_after(w_key)
    node = chain.nodes[key]
    n = np.asarray(chain.nodes[w_key].weight).shape[0]
    if isinstance(node, (nir.LIF, nir.IF)):
        if not np.allclose(node.v_reset, 0.0):
            raise OsttpError(f"node {key!r}: v_reset != 0; osttp's SNU resets to 0")
        alpha, gain = _leak_and_gain(nir, node, key, n, dt)
        W, b_in = _weights(nir, chain.nodes[w_key], w_key, gain)
        if not np.allclose(b_in, 0.0):
            raise OsttpError(f"node {w_key!r} has a bias before the reset-to-0 neuron {key!r}; osttp's SNU has "
                             "no input bias (build the layer with bias=False)")
        H = _recurrent(chain, key, key, gain)
        layer, spikes = _Layer("snu", alpha, W, -_vector(node.v_threshold, n), H), key
    elif isinstance(node, (nir.LI, nir.I)):
        spikes = chain.only_after(key)
        if not isinstance(chain.nodes[spikes], nir.Threshold):
            raise OsttpError(f"node {key!r} ({type(node).__name__}) is not followed by a Threshold")
        alpha, gain = _leak_and_gain(nir, node, key, n, dt)
        W, b = _weights(nir, chain.nodes[w_key], w_key, gain)
        R = _recurrent(chain, spikes, key, gain)
        if R is None:
            raise OsttpError(f"node {key!r} -> {spikes!r} has no recurrent weight: no reset, osttp has no such LIF")
        layer = _subtractive_layer(chain.nodes[spikes], spikes, alpha, W, b, R)
    else:
        raise OsttpError(f"node {key!r} is a {type(node).__name__}; osttp reads LIF, IF, or LI/I -> Threshold")
    return layer, chain.only_after(spikes, exclude=chain.recurrent(spikes, key))


def _read_readout(chain: _Chain, key: str, dt: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Affine|Linear -> Output (kappa 0) or Affine|Linear -> LI -> Output: V, c and kappa."""
    nir = chain.nir
    nxt = chain.only_after(key)
    if isinstance(chain.nodes[nxt], nir.Output):
        V, c = _weights(nir, chain.nodes[key], key, np.ones(np.asarray(chain.nodes[key].weight).shape[0]))
        return V, c, 0.0
    li = chain.nodes[nxt]
    if not isinstance(li, nir.LI) or not isinstance(chain.nodes[chain.only_after(nxt)], nir.Output):
        raise OsttpError(f"node {nxt!r} ({type(li).__name__}) ends the graph; osttp's readout is Affine|Linear "
                         "-> Output or Affine|Linear -> LI -> Output (no spiking output layer)")
    n = np.asarray(chain.nodes[key].weight).shape[0]
    kappa, gain = _leak_and_gain(nir, li, nxt, n, dt)
    V, c = _weights(nir, chain.nodes[key], key, gain)
    return V, c, kappa


def _is_readout(chain: _Chain, key: str) -> bool:
    """The weight node `key` feeds the Output, or an LI that feeds the Output."""
    nxt = chain.nodes[chain.only_after(key)]
    if isinstance(nxt, chain.nir.Output):
        return True
    return isinstance(nxt, chain.nir.LI) and isinstance(chain.nodes[chain.only_after(chain.only_after(key))],
                                                        chain.nir.Output)


def _cell(layers: list[_Layer]) -> tuple[str, dict[str, Any]]:
    kinds = {(layer.kind, layer.alpha, layer.theta) for layer in layers}
    if len(kinds) != 1:
        raise OsttpError(f"osttp's Network has one cell for all layers; the graph's layers differ: {sorted(kinds)}")
    kind, alpha, theta = kinds.pop()
    if kind in ("snu", "snu-soft"):
        reset = "multiplicative" if kind == "snu" else "soft"
        return "snu", {"d": alpha, "g": "identity", "reset": reset}
    return "lif", {"alpha": alpha, "theta": theta}


def from_nir(graph: Any, dt: float = 1e-4, dtype: torch.dtype = torch.float32, seed: int = 0) -> Network:
    """A Network whose step is the graph's forward-Euler step at `dt` (docs/interop.md).

    The feedback matrices of the online rules are not part of NIR: they are drawn from `seed`."""
    nir = load_nir()
    if not isinstance(graph, nir.NIRGraph):
        raise OsttpError(f"from_nir needs a nir.NIRGraph, got {type(graph).__name__}")
    chain = _Chain(nir, graph)
    inputs = [k for k, v in chain.nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise OsttpError(f"NIR graph has {len(inputs)} Input nodes; osttp reads one")
    key = chain.only_after(inputs[0])
    if isinstance(chain.nodes[key], nir.Output):
        raise OsttpError("NIR graph has no spiking layer (its Input feeds its Output); osttp's Network needs one")
    layers: list[_Layer] = []
    while not _is_readout(chain, key):
        layer, key = _read_layer(chain, key, dt)
        layers.append(layer)
    if not layers:
        raise OsttpError(f"NIR graph has no spiking layer (node {key!r} feeds its readout); osttp's Network needs one")
    V, c, kappa = _read_readout(chain, key, dt)
    cell, options = _cell(layers)
    recurrent = any(layer.H is not None and np.any(layer.H != 0.0) for layer in layers)
    sizes = [layers[0].W.shape[1]] + [layer.W.shape[0] for layer in layers] + [V.shape[0]]
    net = Network.from_sizes(sizes, cell=cell, recurrent=recurrent, seed=seed, dtype=dtype, cell_options=options,
                             readout="integrator" if kappa > 0 else "linear", kappa=kappa if kappa > 0 else None)
    with torch.no_grad():
        for mine, layer in zip(net.layers, layers):
            mine.W.copy_(torch.from_numpy(layer.W))
            mine.b.copy_(torch.from_numpy(layer.b))
            if mine.H is not None:
                mine.H.copy_(torch.from_numpy(layer.H if layer.H is not None else np.zeros((mine.n, mine.n))))
        net.readout.weight.copy_(torch.from_numpy(V))
        net.readout.bias.copy_(torch.from_numpy(c))
    return net
