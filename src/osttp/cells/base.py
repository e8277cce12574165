"""What every cell provides: one step and its local derivatives (docs/math.md §3, §4.1).

A layer's step splits into a linear synaptic current, the only part that mixes units,

    I_t = W y_t^{l-1} + H y_{t-1}                          (`synaptic_current`)

and element-wise unit dynamics with k states per unit and one output per unit:

    s_t = f(I_t, s_{t-1}, y_{t-1}; b)                      (`Cell.dynamics`)
    y_t = out(s_t; b)                                       (`Cell.output`)

`Cell.local` returns the partial derivatives of f and out at one step (`Local`). The trace kinds
(osttp.rules.traces) assemble from them the total state Jacobian F_t, including the paths through
y_{t-1}, and the immediate parameter derivatives -- for every cell alike.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Protocol

import torch
from torch import Tensor


class LayerState(NamedTuple):
    """State of a layer after a step: s (B, n, k) and its output y (B, n)."""

    s: Tensor
    y: Tensor


class Local(NamedTuple):
    """Partial derivatives of one step of one layer (all element-wise per unit).

    fI: ds_t/dI_t                 (B, n, k)
    Fs: ds_t/ds_{t-1} at fixed y_{t-1}   (B, n, k, k)
    Fy: ds_t/dy_{t-1} of the unit's own output (reset paths)   (B, n, k)
    fb: ds_t/db immediate, at fixed y_{t-1}   (B, n, k)
    os: dy_t/ds_t                 (B, n, k)
    ob: dy_t/db direct            (B, n)
    """

    fI: Tensor
    Fs: Tensor
    Fy: Tensor
    fb: Tensor
    os: Tensor
    ob: Tensor


class Cell(Protocol):
    """A cell: pure element-wise arithmetic over explicit tensors, no parameters of its own."""

    name: str
    n_states: int
    bias_init: float

    def dynamics(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, b: Tensor) -> Tensor: ...

    def output(self, s: Tensor, b: Tensor) -> Tensor: ...

    def local(self, I: Tensor, s_prev: Tensor, y_prev: Tensor, s: Tensor, b: Tensor) -> Local: ...


MatVec = Callable[[str, Tensor, Tensor], Tensor]
"""(weight name "W" or "H", weight, input) -> input @ weight.T: how a layer's products are done."""


def dense_matvec(name: str, weight: Tensor, x: Tensor) -> Tensor:
    return x @ weight.T


def synaptic_current(W: Tensor, x: Tensor, H: Tensor | None, y_prev: Tensor,
                     matvec: MatVec = dense_matvec) -> Tensor:
    """I_t = W x_t + H y_{t-1}: the only term of a step that mixes units.

    `matvec` lets a simulated device (osttp.hardware) do the products; default: exact."""
    current = matvec("W", W, x)
    if H is not None:
        current = current + matvec("H", H, y_prev)
    return current


def cell_step_with_current(cell: Cell, W: Tensor, H: Tensor | None, b: Tensor, x: Tensor,
                           state: LayerState, matvec: MatVec = dense_matvec) -> tuple[Tensor, LayerState]:
    """One step of a layer, returning the synaptic current I_t too (the online rules' local
    derivatives need it). The one forward step every learner, evaluation and oracle runs."""
    I = synaptic_current(W, x, H, state.y, matvec)
    s = cell.dynamics(I, state.s, state.y, b)
    return I, LayerState(s, cell.output(s, b))


def cell_step(cell: Cell, W: Tensor, H: Tensor | None, b: Tensor, x: Tensor,
              state: LayerState, matvec: MatVec = dense_matvec) -> LayerState:
    """One autograd-friendly step of a layer (BPTT, evaluation, oracles)."""
    return cell_step_with_current(cell, W, H, b, x, state, matvec)[1]


def zero_state(cell: Cell, batch: int, n: int, dtype: torch.dtype, device: torch.device | str | None
               ) -> LayerState:
    """The initial state: s_{-1} = 0 and y_{-1} = 0, constants with zero derivatives."""
    return LayerState(torch.zeros(batch, n, cell.n_states, dtype=dtype, device=device),
                      torch.zeros(batch, n, dtype=dtype, device=device))


def pack_single_state(fI: Tensor, Fs: Tensor, Fy: Tensor, fb: Tensor, os: Tensor, ob: Tensor) -> Local:
    """Local derivatives of a one-state cell, given as (B, n) tensors (or broadcastable)."""
    return Local(_like(fI, os).unsqueeze(-1), _like(Fs, os).unsqueeze(-1).unsqueeze(-1), _like(Fy, os).unsqueeze(-1),
                 _like(fb, os).unsqueeze(-1), os.unsqueeze(-1), _like(ob, os))


def _like(t: Tensor | float, os: Tensor) -> Tensor:
    """t broadcast to os's shape, dtype and device; a tensor that already is one is returned as is
    (most derivatives are: this runs for every layer at every step)."""
    if isinstance(t, Tensor) and t.shape == os.shape and t.dtype == os.dtype and t.device == os.device:
        return t
    return torch.as_tensor(t, dtype=os.dtype, device=os.device).expand(os.shape)
