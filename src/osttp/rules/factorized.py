"""The factorized trace kind: eps_ij ~ fI_i x-bar_j, O(B (n + n_in)) state (docs/math.md §4.1.1).

The diagonal kind keeps, per sample and synapse,

    eps_t,ij = sum_{k<=t} [prod_{r=k+1..t} D_r,i] fI_k,i x_k,j            (B, n, k, n_in)

The factorized kind replaces the unit's own product of decays by one per-layer scalar lambda^(t-k)
and the input factor at the time of the input, fI_k,i, by the one of now, fI_t,i:

    x-bar_t = lambda x-bar_{t-1} + x_t          (B, n_in)   one filtered copy of the layer input
    y-bar_t = lambda y-bar_{t-1} + y_{t-1}      (B, n)      the same for the recurrent input (H)
    eps_t,ij ~ fI_t,i x-bar_t,j                 grad W += (L * sum_a os_a fI_a)^T x-bar: one matmul

It is exact where D_t,i = lambda * Id and fI_k,i = fI_i for every step (a linear leaky unit; LIF
with the reset path detached and no self-recurrence H_ii). The bias b keeps the diagonal kind's
per-unit trace (O(B n k), no larger than x-bar), so its gradient is the diagonal kind's.
lambda is, per layer, d s_t/d s_{t-1} of the first state component at rest (s = y = 0, input 1):
the cell's leak (SNU d, LIF/ALIF alpha, leaky RNN lambda), unless given.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from osttp.cells import Cell, Local
from osttp.errors import OsttpError
from osttp.network import RecurrentLayer
from osttp.rules.traces import TRACE_KINDS, TraceState, diagonal_jacobian, self_coupling, times_blocks


def resting_decay(cell: Cell) -> float:
    """d s_t,0 / d s_{t-1},0 at rest (s_{t-1} = y_{t-1} = 0, I_t = 1, b = the cell's initial bias)."""
    k = cell.n_states
    kw = {"dtype": torch.float64}
    I, y_prev = torch.ones(1, 1, **kw), torch.zeros(1, 1, **kw)
    s_prev, b = torch.zeros(1, 1, k, **kw), torch.full((1,), float(cell.bias_init), **kw)
    s = cell.dynamics(I, s_prev, y_prev, b)
    return float(cell.local(I, s_prev, y_prev, s, b).Fs[0, 0, 0, 0])


@dataclass
class FactorizedState(TraceState):
    """x-bar (B, n_in), y-bar (B, n; None without recurrence) and the bias eligibility (B, n, k)."""

    x_bar: Tensor
    y_bar: Tensor | None
    b: Tensor


def filter_presynaptic(bar: Tensor, pre: Tensor, decay: float) -> None:
    """x-bar_t = lambda x-bar_{t-1} + x_t, in place."""
    bar.mul_(decay).add_(pre)


class FactorizedTrace:
    """Presynaptic traces x-bar (and y-bar for H) times the post-synaptic factor fI at contraction."""

    name = "factorized"

    def __init__(self, decay: float | None = None) -> None:
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float))
                                  or not 0.0 <= decay <= 1.0):
            raise OsttpError(f"factorized trace decay must be a number in [0, 1] or None, got {decay!r}")
        self.decay = decay
        self._cell_decay: dict[Cell, float] = {}

    def layer_decay(self, layer: RecurrentLayer) -> float:
        if self.decay is not None:
            return float(self.decay)
        cell = layer.cell
        if cell not in self._cell_decay:  # cells are frozen dataclasses: hashable, one probe each
            self._cell_decay[cell] = resting_decay(cell)
        return self._cell_decay[cell]

    def nbytes(self, batch: int, n_in: int, n: int, k: int, recurrent: bool, element_size: int) -> int:
        return batch * (n_in + (n if recurrent else 0) + n * k) * element_size

    def init(self, layer: RecurrentLayer, batch: int) -> FactorizedState:
        kw = {"dtype": layer.W.dtype, "device": layer.W.device}
        return FactorizedState(x_bar=torch.zeros(batch, layer.n_in, **kw),
                               y_bar=None if layer.H is None else torch.zeros(batch, layer.n, **kw),
                               b=torch.zeros(batch, layer.n, layer.cell.n_states, **kw))

    def update(self, tr: FactorizedState, layer: RecurrentLayer, loc: Local, os_prev: Tensor, ob_prev: Tensor,
               x: Tensor, y_prev: Tensor) -> None:
        decay = self.layer_decay(layer)
        filter_presynaptic(tr.x_bar, x, decay)
        if tr.y_bar is not None:
            filter_presynaptic(tr.y_bar, y_prev, decay)
        # The bias trace is the diagonal kind's: eps^b = D eps^b + fb + c ob_{t-1} (B, n, k).
        coupling = self_coupling(layer, loc)
        D = diagonal_jacobian(layer, loc, os_prev, coupling)
        tr.b = times_blocks(D, tr.b).add_(loc.fb + coupling * ob_prev.unsqueeze(-1))

    def contract(self, tr: FactorizedState, loc: Local, L: Tensor, acc: dict[str, Tensor]) -> None:
        u = L.unsqueeze(-1) * loc.os  # (B, n, k): L_i dy_i/ds_i,a
        v = (u * loc.fI).sum(-1)  # (B, n): L_i sum_a os_a fI_a, the post-synaptic factor
        acc["W"].addmm_(v.T, tr.x_bar)
        if tr.y_bar is not None:
            acc["H"].addmm_(v.T, tr.y_bar)
        acc["b"] += (u * tr.b).sum((0, 2)) + (L * loc.ob).sum(0)


TRACE_KINDS.register("factorized", FactorizedTrace, oracle="factorized",
                     help="presynaptic traces x fI: O(B(n + n_in)) state, one matmul per step; exact for "
                          "constant per-layer decay")
