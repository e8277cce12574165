"""The forward model shared by every learning rule (SPEC §2, §3, §4.2).

K-1 recurrent layers of one cell kind and a stateless linear readout, plus the fixed random
feedback matrices B_l of the target-projection and random-error signals. Parameter names:
`layers.{l}.W` (n_l x n_{l-1}), `layers.{l}.H` (when recurrent), `layers.{l}.b`,
`readout.weight`, `readout.bias`; buffers `feedback.{l}` (C x n_l).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from osttp.cells import Cell, LayerState, MatVec, cell_step, dense_matvec, make_cell, zero_state
from osttp.errors import OsttpError

_FEEDBACK_STREAM = 0x5EED_FB  # feedback matrices come from their own generator stream


def glorot_uniform_(w: Tensor, generator: torch.Generator) -> Tensor:
    fan_out, fan_in = w.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return w.uniform_(-bound, bound, generator=generator)


class RecurrentLayer(nn.Module):
    """One layer of cells: parameters W, H (optional), b; the cell holds the fixed hyperparameters."""

    def __init__(self, cell: Cell, n_in: int, n: int, recurrent: bool, generator: torch.Generator,
                 dtype: torch.dtype, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.cell = cell
        self.n_in, self.n = n_in, n
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.W = nn.Parameter(glorot_uniform_(torch.empty(n, n_in, **kw), generator))
        self.H = nn.Parameter(glorot_uniform_(torch.empty(n, n, **kw), generator)) if recurrent else None
        self.b = nn.Parameter(torch.full((n,), float(cell.bias_init), **kw))

    @property
    def recurrent(self) -> bool:
        return self.H is not None

    def initial_state(self, batch: int) -> LayerState:
        return zero_state(self.cell, batch, self.n, self.W.dtype, self.W.device)

    def forward(self, x: Tensor, state: LayerState, matvec: MatVec = dense_matvec) -> LayerState:
        return cell_step(self.cell, self.W, self.H, self.b, x, state, matvec)

    def extra_repr(self) -> str:
        return f"{self.cell}, n_in={self.n_in}, n={self.n}, recurrent={self.recurrent}"


class FeedbackMatrices(nn.Module):
    """Fixed random B_l (C x n_l), one per hidden layer: buffers, saved with the model, never trained."""

    def __init__(self, n_out: int, hidden: Sequence[int], seed: int, scale: float | None,
                 dtype: torch.dtype, device: torch.device | str | None = None) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(_FEEDBACK_STREAM + int(seed))
        for l, n in enumerate(hidden):
            bound = math.sqrt(6.0 / n) if scale is None else float(scale)
            B = torch.empty(n_out, n, dtype=torch.float64).uniform_(-bound, bound, generator=gen)
            self.register_buffer(str(l), B.to(dtype=dtype, device=device))

    def __getitem__(self, l: int) -> Tensor:
        return getattr(self, str(l))


class Network(nn.Module):
    """Recurrent layers + stateless linear readout + fixed feedback matrices."""

    def __init__(self, layers: Sequence[RecurrentLayer], readout: nn.Linear, feedback: FeedbackMatrices,
                 config: dict[str, Any]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.readout = readout
        self.feedback = feedback
        self.config = dict(config)  # how it was built, for checkpoints and configs
        for buf in self.feedback.buffers():
            buf.requires_grad_(False)

    @classmethod
    def from_sizes(cls, sizes: Sequence[int], cell: str = "snu", recurrent: bool = False, seed: int = 0,
                   dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                   cell_options: dict[str, Any] | None = None, feedback_scale: float | None = None
                   ) -> "Network":
        """sizes = [n_in, h_1, ..., h_{K-1}, n_out]; at least one hidden layer.

        Weights are Glorot-uniform from a generator seeded with `seed`; biases start at the
        cell's default (SNU: -1, a threshold of 1); B_l ~ U(-sqrt(6/n_l), sqrt(6/n_l)) from a
        separate seeded stream, or U(-feedback_scale, feedback_scale) when given."""
        sizes = list(sizes)
        if len(sizes) < 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes):
            raise OsttpError(f"sizes must be [n_in, hidden..., n_out] with >= 1 hidden layer and positive "
                             f"integers, got {sizes!r}")
        if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise OsttpError(f"dtype must be a floating torch dtype, got {dtype!r}")
        if feedback_scale is not None and not feedback_scale > 0:
            raise OsttpError(f"feedback_scale must be > 0, got {feedback_scale!r}")
        the_cell = make_cell(cell, **dict(cell_options or {}))
        gen = torch.Generator().manual_seed(int(seed))
        layers = [RecurrentLayer(the_cell, n_in, n, recurrent, gen, dtype, device)
                  for n_in, n in zip(sizes[:-2], sizes[1:-1])]
        readout = nn.Linear(sizes[-2], sizes[-1], dtype=dtype, device=device)
        glorot_uniform_(readout.weight, gen)
        nn.init.zeros_(readout.bias)
        feedback = FeedbackMatrices(sizes[-1], sizes[1:-1], seed, feedback_scale, dtype, device)
        config = {"sizes": sizes, "cell": cell, "recurrent": bool(recurrent), "seed": int(seed),
                  "cell_options": dict(cell_options or {}), "feedback_scale": feedback_scale}
        return cls(layers, readout, feedback, config)

    @property
    def n_in(self) -> int:
        return self.layers[0].n_in

    @property
    def n_out(self) -> int:
        return self.readout.out_features

    @property
    def hidden_sizes(self) -> list[int]:
        return [layer.n for layer in self.layers]

    @property
    def dtype(self) -> torch.dtype:
        return self.readout.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.readout.weight.device

    def initial_state(self, batch: int) -> list[LayerState]:
        return [layer.initial_state(batch) for layer in self.layers]

    def step(self, x: Tensor, states: Sequence[LayerState], matvec: MatVec | None = None
             ) -> tuple[Tensor, list[LayerState]]:
        """One time step through all layers: returns the readout o_t and the new states.

        matvec(name, weight, input), with full parameter names ("layers.0.W", "readout.weight"),
        replaces the exact matrix products, e.g. by reads of simulated crossbars."""
        new_states = []
        inp = x
        for l, (layer, state) in enumerate(zip(self.layers, states)):
            if matvec is None:
                state = layer(inp, state)
            else:
                prefix = f"layers.{l}."
                state = layer(inp, state, lambda name, w, v: matvec(prefix + name, w, v))
            new_states.append(state)
            inp = state.y
        if matvec is None:
            return self.readout(inp), new_states
        return matvec("readout.weight", self.readout.weight, inp) + self.readout.bias, new_states

    def forward(self, xs: Tensor, states: Sequence[LayerState] | None = None,
                matvec: MatVec | None = None) -> Tensor:
        """Run a sequence xs (T, B, n_in); returns the readout (T, B, C)."""
        if xs.dim() != 3 or xs.shape[-1] != self.n_in:
            raise OsttpError(f"xs must have shape (T, B, {self.n_in}), got {tuple(xs.shape)}")
        states = list(states) if states is not None else self.initial_state(xs.shape[1])
        outs = []
        for x in xs:
            o, states = self.step(x, states, matvec)
            outs.append(o)
        return torch.stack(outs)
