"""osttp Network -> NIR graph, exact under NIR's forward-Euler step (docs/interop.md).

Which NIR nodes a layer becomes depends on its reset, because NIR's LIF and IF reset the membrane
*to a value* at the step they spike:

- SNU, g="identity", reset="multiplicative" (s_t = I_t + d s_{t-1} (1 - y_{t-1}), y_t = H(s_t + b))
  is exactly NIR's LIF with v_reset = 0, v_threshold = -b (IF when d = 1).
- LIF (subtractive reset theta z_{t-1}, never decayed) and SNU with reset="soft" subtract instead of
  resetting to a value: they become NIR's LI (I when the leak is 1) followed by a Threshold, with the
  reset written as the diagonal of the recurrent weight, H - c 1 (c = theta, resp. d).

Refused, with the reason: SNU with g="relu" (NIR's membranes have no lower bound), sSNU (sigmoid
output, not a spike), ALIF (NIR has no adaptive threshold), the tanh RNN (NIR has no tanh).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from osttp.cells import ALIF, LIF, SNU, LeakyRNN, SoftSNU
from osttp.errors import OsttpError
from osttp.interop.discretisation import tau_from_leak
from osttp.network import Network, RecurrentLayer


def load_nir() -> Any:
    try:
        import nir
    except ImportError:
        raise OsttpError("NIR export needs the 'nir' package: pip install 'osttp[interop]'") from None
    return nir


def _array(t: Tensor) -> np.ndarray:
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.detach().to("cpu", dtype).numpy().copy()


def refusal(cell: object) -> str | None:
    """Why a cell has no exact NIR form, or None when it has one."""
    if isinstance(cell, SoftSNU):
        return "cell 'ssnu' outputs a sigmoid, not a spike; NIR has no sigmoid neuron"
    if isinstance(cell, SNU) and cell.g != "identity":
        return (f"cell 'snu' with g={cell.g!r} clips the membrane at 0; NIR's neurons have no lower bound "
                "(use g='identity')")
    if isinstance(cell, ALIF):
        return "cell 'alif' has an adaptive threshold theta + beta a_t; NIR has no adaptive-threshold neuron"
    if isinstance(cell, LeakyRNN):
        return "cell 'rnn' is a leaky tanh unit; NIR has no tanh neuron"
    if not isinstance(cell, (SNU, LIF)):
        return f"cell {getattr(cell, 'name', cell)!r} has no NIR mapping"
    return None


class _Leak:
    """The NIR parameters of a leak alpha at step dt: tau, r and the weight factor they imply.

    r = tau/dt makes the Euler input gain dt r / tau = 1, so the file holds osttp's weights;
    unit_resistance (r = 1) moves that gain into the weights instead (norse's importer reads r as 1)."""

    def __init__(self, alpha: float, n: int, dt: float, unit_resistance: bool) -> None:
        self.leaky = alpha < 1.0
        self.tau = np.full(n, tau_from_leak(alpha, dt)) if self.leaky else None
        gain_one_r = self.tau / dt if self.leaky else np.full(n, 1.0 / dt)  # r with gain 1
        self.r = np.ones(n) if unit_resistance else gain_one_r
        self.weight_factor = gain_one_r if unit_resistance else np.ones(n)  # rows of incoming weights

    def integrator(self, nir: Any) -> Any:
        return nir.LI(tau=self.tau, r=self.r, v_leak=np.zeros_like(self.r)) if self.leaky else nir.I(r=self.r)

    def fire_and_reset(self, nir: Any, threshold: np.ndarray) -> Any:
        zero = np.zeros_like(self.r)
        if self.leaky:
            return nir.LIF(tau=self.tau, r=self.r, v_leak=zero, v_threshold=threshold, v_reset=zero)
        return nir.IF(r=self.r, v_threshold=threshold, v_reset=zero)


def _affine(nir: Any, weight: np.ndarray, bias: np.ndarray | None, factor: np.ndarray) -> Any:
    weight = weight * factor[:, None].astype(weight.dtype)
    if bias is None:
        return nir.Linear(weight=weight)
    return nir.Affine(weight=weight, bias=bias * factor.astype(bias.dtype))


def _layer_nodes(nir: Any, layer: RecurrentLayer, name: str, dt: float, unit_resistance: bool
                 ) -> tuple[dict[str, Any], list[tuple[str, str]], str, str]:
    """One hidden layer: its nodes, its internal edges, the node that takes its input and the node
    whose output is its spikes."""
    cell, n = layer.cell, layer.n
    W, b = _array(layer.W), _array(layer.b)
    H = _array(layer.H) if layer.H is not None else None
    multiplicative = isinstance(cell, SNU) and cell.reset == "multiplicative"
    leak = _Leak(float(cell.d if isinstance(cell, SNU) else cell.alpha), n, dt, unit_resistance)
    # A recurrent pair is named "layer{l}.lif", "layer{l}.w_rec", as snnTorch writes it: its importer
    # groups them into a sub-graph by the prefix before the dot (so nothing else may share it).
    w_in, rec_key = f"{name}_w_in", f"{name}.w_rec"
    spikes = f"{name}.lif" if multiplicative else f"{name}.threshold"
    into = spikes if multiplicative else f"{name}.li"
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = [(w_in, into)]
    if multiplicative:  # reset to 0 at the spike: NIR's own LIF / IF; b is minus the threshold
        nodes[w_in] = _affine(nir, W, None, leak.weight_factor)
        nodes[spikes] = leak.fire_and_reset(nir, -b)
        rec = H
    else:  # subtractive reset: integrator, threshold, and the reset on the recurrent diagonal
        threshold = np.full(n, float(cell.theta)) if isinstance(cell, LIF) else -b
        reset = float(cell.theta) if isinstance(cell, LIF) else float(cell.d)
        nodes[w_in] = _affine(nir, W, b if isinstance(cell, LIF) else None, leak.weight_factor)
        nodes[into] = leak.integrator(nir)
        nodes[spikes] = nir.Threshold(threshold=threshold.astype(W.dtype))
        edges.append((into, spikes))
        rec = (H if H is not None else np.zeros((n, n), W.dtype)) - reset * np.eye(n, dtype=W.dtype)
    if rec is not None:
        nodes[rec_key] = _affine(nir, rec, None, leak.weight_factor)
        edges += [(spikes, rec_key), (rec_key, into)]
    return nodes, edges, w_in, spikes


def to_nir(net: Network, dt: float = 1e-4, unit_resistance: bool = False) -> Any:
    """The network as a nir.NIRGraph whose Euler step at `dt` is osttp's step, bit for bit in float64.

    dt: the step the time constants are written for (1e-4: snnTorch's importer assumes it; pass the same
    dt to norse's from_nir). unit_resistance: write r = 1 and put the Euler input gain into the
    weights (what norse's importer expects); both forms mean the same dynamics under NIR."""
    nir = load_nir()
    if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and dt > 0):
        raise OsttpError(f"dt must be a positive number of seconds, got {dt!r}")
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([net.n_in]))}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for l, layer in enumerate(net.layers):
        why = refusal(layer.cell)
        if why is not None:
            raise OsttpError(f"cannot export to NIR: layer {l}: {why}")
        layer_nodes, layer_edges, first, last = _layer_nodes(nir, layer, f"layer{l}", dt, unit_resistance)
        nodes.update(layer_nodes)
        edges += [(prev, first)] + layer_edges
        prev = last
    V, c = _array(net.readout.weight), _array(net.readout.bias)
    if net.readout.kappa == 0.0:
        nodes["readout"] = nir.Affine(weight=V, bias=c)
        edges += [(prev, "readout"), ("readout", "output")]
    else:
        leak = _Leak(net.readout.kappa, net.n_out, dt, unit_resistance)
        nodes["readout"] = _affine(nir, V, c, leak.weight_factor)
        nodes["readout_li"] = leak.integrator(nir)
        edges += [(prev, "readout"), ("readout", "readout_li"), ("readout_li", "output")]
    nodes["output"] = nir.Output(output_type=np.array([net.n_out]))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"producer": "osttp", "dt": float(dt)})
