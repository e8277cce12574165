"""The forward model shared by every learning rule (docs/math.md §2, §3, §4.2).

K-1 recurrent layers of one cell kind and a readout (stateless linear, or a leaky integrator,
docs/math.md §3.5), plus the fixed random feedback matrices B_l of the target-projection and
random-error signals. Parameter names: `layers.{l}.W` (n_l x n_{l-1}), `layers.{l}.H` (when
recurrent), `layers.{l}.b`, `readout.weight`, `readout.bias`; buffers `feedback.{l}` (C x n_l).

The network's state is a list of K `LayerState`s: one per hidden layer, then the readout's
(s = o_t as (B, C, 1), y = o_t), so the integrator's memory travels with the rest.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from osttp.cells import (Cell, LayerState, MatVec, cell_step, cell_step_with_current, dense_matvec, make_cell,
                         zero_state)
from osttp import checks
from osttp.errors import OsttpError
from osttp.registry import Registry

_FEEDBACK_STREAM = 0x5EED_FB  # feedback matrices come from their own generator stream


def glorot_uniform_(w: Tensor, generator: torch.Generator) -> Tensor:
    """Drawn in float32 on the CPU and cast: the same seed gives the same weights (rounded in
    float16/bfloat16, exact in float64) in every dtype and on every device. float32 rather than
    float64 draws: float32 runs -- every shipped config, result table and calibrated test -- keep
    exactly the weights they were measured with."""
    fan_out, fan_in = w.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return w.copy_(torch.empty(w.shape, dtype=torch.float32).uniform_(-bound, bound, generator=generator))


def _prefixed(matvec: MatVec, prefix: str) -> MatVec:
    return lambda name, w, v: matvec(prefix + name, w, v)


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

    def step_with_current(self, x: Tensor, state: LayerState, matvec: MatVec = dense_matvec
                          ) -> tuple[Tensor, LayerState]:
        """The same step, also returning the synaptic current I_t (for the online rules)."""
        return cell_step_with_current(self.cell, self.W, self.H, self.b, x, state, matvec)

    def extra_repr(self) -> str:
        return f"{self.cell}, n_in={self.n_in}, n={self.n}, recurrent={self.recurrent}"


def leaky_integrator(o_prev: Tensor, drive: Tensor, kappa: float) -> Tensor:
    """o_t = kappa o_{t-1} + (V y_t + c): non-spiking output units that integrate their input.
    kappa = 0 is the stateless linear readout."""
    return drive if kappa == 0.0 else kappa * o_prev + drive


class Readout(nn.Linear):
    """Output layer o_t = kappa o_{t-1} + V y_t + c (docs/math.md §3.5); weight V, bias c.

    kappa = 0: the stateless linear readout. Its state is LayerState(o.unsqueeze(-1), o)."""

    def __init__(self, n_in: int, n_out: int, kappa: float = 0.0, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__(n_in, n_out, dtype=dtype, device=device)
        if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not 0.0 <= kappa < 1.0:
            raise OsttpError(f"readout kappa must be a number in [0, 1), got {kappa!r}")
        self.kappa = float(kappa)

    def initial_state(self, batch: int) -> LayerState:
        o = torch.zeros(batch, self.out_features, dtype=self.weight.dtype, device=self.weight.device)
        return LayerState(o.unsqueeze(-1), o)

    def step(self, y: Tensor, state: LayerState, matvec: MatVec | None = None) -> LayerState:
        # F.linear, not self(y): a Module call's hook machinery costs more than the product at batch 1.
        drive = (torch.nn.functional.linear(y, self.weight, self.bias) if matvec is None
                 else matvec("readout.weight", self.weight, y) + self.bias)
        o = leaky_integrator(state.y, drive, self.kappa)
        return LayerState(o.unsqueeze(-1), o)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", kappa={self.kappa}"


# meta: default kappa. "linear" is kappa = 0; "integrator" takes model.kappa (default 0.9).
READOUTS: Registry[Readout] = Registry("readout")
READOUTS.register("linear", Readout, help="stateless linear readout o_t = V y_t + c", kappa=0.0)
READOUTS.register("integrator", Readout, help="leaky integrator o_t = kappa o_{t-1} + V y_t + c", kappa=0.9)


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
    """Recurrent layers + readout + fixed feedback matrices."""

    def __init__(self, layers: Sequence[RecurrentLayer], readout: Readout, feedback: FeedbackMatrices,
                 config: dict[str, Any]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.readout = readout
        self.feedback = feedback
        self.config = dict(config)  # how it was built, for checkpoints and configs
        self._dense_matvecs: list[MatVec] = [dense_matvec] * len(self.layers)  # built once, not per step
        for buf in self.feedback.buffers():
            buf.requires_grad_(False)

    @classmethod
    def from_sizes(cls, sizes: Sequence[int], cell: str = "snu", recurrent: bool = False, seed: int = 0,
                   dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                   cell_options: dict[str, Any] | None = None, feedback_scale: float | None = None,
                   readout: str = "linear", kappa: float | None = None) -> "Network":
        """sizes = [n_in, h_1, ..., h_{K-1}, n_out]; at least one hidden layer.

        Weights are Glorot-uniform from a generator seeded with `seed`; biases start at the
        cell's default (SNU: -1, a threshold of 1); B_l ~ U(-sqrt(6/n_l), sqrt(6/n_l)) from a
        separate seeded stream, or U(-feedback_scale, feedback_scale) when given.
        readout: "linear" or "integrator" (READOUTS); kappa: the integrator's leak (default 0.9)."""
        sizes = list(sizes)
        if len(sizes) < 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes):
            raise OsttpError(f"sizes must be [n_in, hidden..., n_out] with >= 1 hidden layer and positive "
                             f"integers, got {sizes!r}")
        if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise OsttpError(f"dtype must be a floating torch dtype, got {dtype!r}")
        if feedback_scale is not None:  # U(-x, x) needs 2x finite in the dtype
            checks.number("feedback_scale", feedback_scale, gt=0.0, le=torch.finfo(dtype).max / 2)
        the_cell = make_cell(cell, **dict(cell_options or {}))
        entry = READOUTS.get(readout)
        if readout == "linear" and kappa not in (None, 0, 0.0):
            raise OsttpError(f"kappa={kappa!r} needs readout='integrator'; the linear readout has kappa 0")
        kappa_value = entry.meta["kappa"] if kappa is None else kappa
        gen = torch.Generator().manual_seed(int(seed))
        layers = [RecurrentLayer(the_cell, n_in, n, recurrent, gen, dtype, device)
                  for n_in, n in zip(sizes[:-2], sizes[1:-1])]
        out = entry.build(n_in=sizes[-2], n_out=sizes[-1], kappa=kappa_value, dtype=dtype, device=device)
        glorot_uniform_(out.weight, gen)
        nn.init.zeros_(out.bias)
        feedback = FeedbackMatrices(sizes[-1], sizes[1:-1], seed, feedback_scale, dtype, device)
        config = {"sizes": sizes, "cell": cell, "recurrent": bool(recurrent), "seed": int(seed),
                  "cell_options": dict(cell_options or {}), "feedback_scale": feedback_scale,
                  "readout": readout, "kappa": out.kappa}
        return cls(layers, readout=out, feedback=feedback, config=config)

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
        """Zero states of every hidden layer, then of the readout."""
        return [layer.initial_state(batch) for layer in self.layers] + [self.readout.initial_state(batch)]

    def layer_matvecs(self, matvec: MatVec | None) -> list[MatVec]:
        """Per hidden layer, `matvec` with the layer's parameter prefix ("W" -> "layers.l.W")."""
        if matvec is None:
            return self._dense_matvecs
        return [_prefixed(matvec, f"layers.{l}.") for l in range(len(self.layers))]

    def step(self, x: Tensor, states: Sequence[LayerState], matvec: MatVec | None = None
             ) -> tuple[Tensor, list[LayerState]]:
        """One time step through all layers: returns the readout o_t and the new states.

        matvec(name, weight, input), with full parameter names ("layers.0.W", "readout.weight"),
        replaces the exact matrix products, e.g. by reads of simulated crossbars."""
        new_states = []
        inp = x
        for layer, state, mv in zip(self.layers, states, self.layer_matvecs(matvec)):
            state = layer.forward(inp, state, mv)  # not layer(...): no Module-call overhead per step
            new_states.append(state)
            inp = state.y
        out = self.readout.step(inp, states[-1], matvec)
        new_states.append(out)
        return out.y, new_states

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
