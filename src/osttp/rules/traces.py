"""Eligibility traces: the temporal part of the gradient, layer-local, forward in time (docs/math.md §4.1).

    eps_t^theta = F_t eps_{t-1}^theta + ds_t/dtheta|immediate       (eligibility vector)
    e_t^theta   = dy_t/ds_t eps_t^theta + dy_t/dtheta|direct        (eligibility trace)
    grad_theta += sum_t sum_k L_t,k e_t,k^theta                       (`contract`, docs/math.md §4.3)

F_t is assembled from a cell's `Local` partials (osttp.cells.base) and the recurrent weights H:

    F_t[m, m'] = delta_mm' (Fs + Fy os_{t-1})_m + fI_m H_mm' os_{t-1,m'}

The three kinds differ only in what they keep of F_t:
    exact     -- all of it (RTRL-like; eps^W is (B, n, k, n, n_in));
    diagonal  -- the per-unit blocks m = m' (eps^W is (B, n, k, n_in), the size of W per sample);
    none      -- nothing: no temporal credit, eps = the immediate derivative only (DRTP, DFA); it
                 keeps no per-synapse tensor, only this step's presynaptic vectors, and its
                 contraction is one matrix product per weight.
A trace state is a dataclass of the kind's own (a `TraceState`: its fields are tensors, or None where
the layer has no such part or the step has not produced it yet); `contract` maps it to gradients
itself, adding into the layer's accumulators {"W", "H", "b"}. The hot path
of each kind is its `update` and `contract`, so a new kind is one class plus its registration in
TRACE_KINDS, whose `oracle` metadata names the modified autograd graph it must equal (tests/oracles.py
knows the graphs "exact", "diagonal", "none" and "factorized"; the factorized kind, O(B (n + n_in))
state, lives in osttp.rules.factorized).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from osttp.cells import Local
from osttp.errors import OsttpError
from osttp.network import RecurrentLayer
from osttp.rules.diagonal_block import apply_block, block_factors
from osttp.registry import Registry


@dataclass
class TraceState:
    """A layer's trace state; each kind subclasses it with the tensors it keeps (None: not there)."""

    def tensors(self) -> list[Tensor]:
        """Every tensor the state holds now (the learner's state size counts them)."""
        return [v for f in dataclasses.fields(self) if isinstance(v := getattr(self, f.name), Tensor)]


@dataclass
class EligibilityState(TraceState):
    """Eligibility vectors of W, H (None without recurrence) and b, each (B, n, k, ...) in the kind's layout."""

    W: Tensor
    H: Tensor | None
    b: Tensor

    def eligibilities(self) -> list[tuple[str, Tensor]]:
        return [(name, eps) for name, eps in (("W", self.W), ("H", self.H), ("b", self.b)) if eps is not None]


@dataclass
class DiagonalState(EligibilityState):
    """The diagonal kind's eligibilities, plus the steps recorded by the blocked pass and not yet
    applied (one-state cells; docs/math.md §4.1.2): W and H then hold eps at the start of the block,
    and the buffers (K, B, ...) hold, per recorded step, D, fI, the contraction weight u = L os (zero
    where the step was not contracted) and the presynaptic vectors. b is updated at every step."""

    D: Tensor | None = None
    fI: Tensor | None = None
    u: Tensor | None = None
    pre_W: Tensor | None = None
    pre_H: Tensor | None = None
    recorded: int = 0  # steps in the buffers
    contracted: bool = False  # whether any recorded step was contracted
    eps_zero: bool = False  # W and H are zero, whatever they hold: the next block writes them


@dataclass
class ImmediateState(TraceState):
    """No trace: this step's presynaptic vectors (W: the layer input, H: the last output) and the
    immediate factors fI, fb; all None before the first step."""

    pre_W: Tensor | None = None
    pre_H: Tensor | None = None
    fI: Tensor | None = None
    fb: Tensor | None = None


class TraceKind(Protocol):
    name: str

    def nbytes(self, batch: int, n_in: int, n: int, k: int, recurrent: bool, element_size: int) -> int:
        """Bytes of per-sample state `init` allocates for a layer of n units with k states each and
        n_in inputs (the memory estimate of experiment/resources.py adds these up)."""
        ...

    def init(self, layer: RecurrentLayer, batch: int) -> TraceState: ...

    def update(self, tr: TraceState, layer: RecurrentLayer, loc: Local, os_prev: Tensor, ob_prev: Tensor,
               x: Tensor, y_prev: Tensor) -> None: ...

    def contract(self, tr: TraceState, loc: Local, L: Tensor, acc: dict[str, Tensor]) -> None: ...

    # Optional, for a kind that defers work (the diagonal kind's blocked pass):
    #   flush(tr, acc, when_full=False) -- run it and add its gradient into acc. The online learner
    #   calls it at the end of every step with when_full=True, and with False before gradients are
    #   read or applied and before a reset. A kind without `flush` defers nothing.
    #   reinit(tr, layer, batch) -> state or None -- `init` for new sequences reusing the last ones'
    #   state `tr` (None: it does not fit, `init` is called).


def _zero_eligibilities(layer: RecurrentLayer, batch: int, per_unit: tuple[int, ...]) -> dict[str, Tensor | None]:
    """Zero eligibility vectors (B, n, k, *per_unit, fan-in) of W and H, and (B, n, k, *per_unit) of b."""
    k = layer.cell.n_states
    kw = {"dtype": layer.W.dtype, "device": layer.W.device}
    out: dict[str, Tensor | None] = {
        name: None if p is None else torch.zeros(batch, layer.n, k, *per_unit, p.shape[1], **kw)
        for name, p in (("W", layer.W), ("H", layer.H))}
    out["b"] = torch.zeros(batch, layer.n, k, *per_unit, **kw)
    return out


def self_coupling(layer: RecurrentLayer, loc: Local) -> Tensor:
    """d s_t,i / d y_{t-1,i}: the unit's own reset path plus its self-recurrence H_ii (B, n, k)."""
    if layer.H is None:
        return loc.Fy
    return loc.Fy + loc.fI * torch.diagonal(layer.H).unsqueeze(-1)


def diagonal_jacobian(layer: RecurrentLayer, loc: Local, os_prev: Tensor, coupling: Tensor | None = None) -> Tensor:
    """The per-unit blocks of F_t (B, n, k, k): Fs + (Fy + fI H_ii) os_{t-1}^T; `coupling`: this
    step's `self_coupling` when the caller has it already (for the bias trace), else computed."""
    c = self_coupling(layer, loc) if coupling is None else coupling
    return loc.Fs + c.unsqueeze(-1) * os_prev.unsqueeze(-2)


def times_blocks(D: Tensor, eps: Tensor) -> Tensor:
    """Apply per-unit k x k blocks D (B, n, k, k) to eps (B, n, k, ...), in place when k = 1."""
    if D.shape[-1] == 1:
        return eps.mul_(D.reshape(D.shape[:2] + (1,) * (eps.dim() - 2)))
    return torch.matmul(D, eps.reshape(eps.shape[:3] + (-1,))).reshape(eps.shape)


def contract_traces(eligibilities: Iterable[tuple[str, Tensor]], loc: Local, L: Tensor, acc: dict[str, Tensor],
                    equation: str) -> None:
    """grad += sum_b sum_k L_k e_k with e = dy/ds eps + dy/dtheta|direct (docs/math.md §4.3).

    u_m,a = L_m dy_m/ds_m,a weighs each state component's eligibility; `equation` sums u against
    the kind's eps layout (diagonal: unit m = i only; exact: over every unit m)."""
    u = L.unsqueeze(-1) * loc.os
    for name, eps in eligibilities:
        acc[name] += torch.einsum(equation, u, eps)
    acc["b"] += (L * loc.ob).sum(0)  # b also acts on y_t directly


class DiagonalTrace:
    """Per-unit traces (k = i only): eps^W is (B, n, k, n_in), the size of W per sample.

    block > 1 (default 16; one-state cells): `update` and `contract` record the step's vectors, and
    every `block` steps -- or when the learner reads its gradients (`flush`) -- one pass over eps
    applies them all and adds their gradient (osttp.rules.diagonal_block). block = 1: the reference
    form, update then contract as separate passes at every step."""

    name = "diagonal"

    def __init__(self, block: int = 16) -> None:
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise OsttpError(f"diagonal trace block must be an integer >= 1, got {block!r}")
        self.block = block

    def _blocked(self, k: int) -> bool:
        return self.block > 1 and k == 1

    def nbytes(self, batch: int, n_in: int, n: int, k: int, recurrent: bool, element_size: int) -> int:
        rec = n if recurrent else 0
        buffers = self.block * batch * (3 * n + n_in + rec) if self._blocked(k) else 0
        return (batch * n * k * (n_in + rec + 1) + buffers) * element_size

    def init(self, layer: RecurrentLayer, batch: int) -> DiagonalState:
        tr = DiagonalState(**_zero_eligibilities(layer, batch, ()))  # type: ignore[arg-type]
        if self._blocked(layer.cell.n_states):
            kw = {"dtype": layer.W.dtype, "device": layer.W.device}
            K, n = self.block, layer.n
            tr.D, tr.fI, tr.u = (torch.zeros(K, batch, n, **kw) for _ in range(3))
            tr.pre_W = torch.zeros(K, batch, layer.n_in, **kw)
            tr.pre_H = None if layer.H is None else torch.zeros(K, batch, n, **kw)
            tr.eps_zero = True
        return tr

    def reinit(self, tr: TraceState, layer: RecurrentLayer, batch: int) -> DiagonalState | None:
        """`init` for new sequences that reuses the last ones' tensors (None where they do not fit):
        the blocked pass reads no eps marked zero, so eps is not filled with zeros (a pass over it)."""
        if not (isinstance(tr, DiagonalState) and tr.D is not None and tr.W.shape[0] == batch
                and tr.W.shape[1:3] == (layer.n, 1) and tr.W.shape[-1] == layer.n_in
                and tr.W.dtype == layer.W.dtype and tr.W.device == layer.W.device
                and (tr.H is None) == (layer.H is None) and self._blocked(layer.cell.n_states)
                and tr.D.shape[0] == self.block):
            return None
        tr.b.zero_()
        tr.recorded, tr.contracted, tr.eps_zero = 0, False, True
        return tr

    def update(self, tr: DiagonalState, layer: RecurrentLayer, loc: Local, os_prev: Tensor, ob_prev: Tensor,
               x: Tensor, y_prev: Tensor) -> None:
        coupling = self_coupling(layer, loc)
        D = diagonal_jacobian(layer, loc, os_prev, coupling)
        if tr.D is not None:
            self._record(tr, D, loc, x, y_prev)
        else:
            tr.W = times_blocks(D, tr.W)
            tr.W.addcmul_(loc.fI.unsqueeze(-1), x[:, None, None, :])
            if tr.H is not None:
                tr.H = times_blocks(D, tr.H)
                tr.H.addcmul_(loc.fI.unsqueeze(-1), y_prev[:, None, None, :])
        # b also acts through y_{t-1} = out(s_{t-1}; b) on the unit's own state.
        tr.b = times_blocks(D, tr.b)
        tr.b.add_(loc.fb + coupling * ob_prev.unsqueeze(-1))

    @staticmethod
    def _record(tr: DiagonalState, D: Tensor, loc: Local, x: Tensor, y_prev: Tensor) -> None:
        """Copy this step's vectors into the next slot of the block's buffers (the caller's `flush`
        empties them when full, before this is called again)."""
        assert tr.fI is not None and tr.u is not None and tr.pre_W is not None and tr.D is not None
        r = tr.recorded
        B, n = D.shape[:2]
        tr.D[r].copy_(D.view(B, n))
        tr.fI[r].copy_(loc.fI.view(B, n))
        tr.u[r].zero_()
        tr.pre_W[r].copy_(x)
        if tr.pre_H is not None:
            tr.pre_H[r].copy_(y_prev)
        tr.recorded = r + 1

    def flush(self, tr: DiagonalState, acc: dict[str, Tensor], when_full: bool = False) -> None:
        """Apply the recorded steps to W and H and add their gradient into acc (when_full: only if the
        buffers are full, at the end of a step)."""
        k = tr.recorded
        if k == 0 or (when_full and k < self.block):
            return
        assert tr.D is not None and tr.fI is not None and tr.u is not None and tr.pre_W is not None
        f = block_factors(tr.D[:k], tr.fI[:k], tr.u[:k] if tr.contracted else None)
        apply_block(tr.W.view(tr.W.shape[0], tr.W.shape[1], -1), f, tr.pre_W[:k], acc["W"], tr.eps_zero)
        if tr.H is not None:
            assert tr.pre_H is not None
            apply_block(tr.H.view(tr.H.shape[0], tr.H.shape[1], -1), f, tr.pre_H[:k], acc["H"], tr.eps_zero)
        tr.recorded, tr.contracted, tr.eps_zero = 0, False, False

    def contract(self, tr: DiagonalState, loc: Local, L: Tensor, acc: dict[str, Tensor]) -> None:
        if tr.u is None:
            contract_traces(tr.eligibilities(), loc, L, acc, "bia,bia...->i...")
            return
        u = L.unsqueeze(-1) * loc.os
        tr.u[tr.recorded - 1].add_(u.view(tr.u.shape[1:]))
        tr.contracted = True
        acc["b"] += (u * tr.b).sum((0, 2)) + (L * loc.ob).sum(0)


class NoTrace:
    """No temporal credit (DRTP, DFA): the eligibility is the immediate derivative fI_i pre_j.

    Nothing per synapse is stored: the state holds references to this step's presynaptic vectors
    and immediate factors, and the contraction is one matrix product per weight matrix."""

    name = "none"

    def nbytes(self, batch: int, n_in: int, n: int, k: int, recurrent: bool, element_size: int) -> int:
        return 0  # references to this step's tensors only

    def init(self, layer: RecurrentLayer, batch: int) -> ImmediateState:
        return ImmediateState()

    def update(self, tr: ImmediateState, layer: RecurrentLayer, loc: Local, os_prev: Tensor, ob_prev: Tensor,
               x: Tensor, y_prev: Tensor) -> None:
        tr.pre_W, tr.pre_H = x, (y_prev if layer.H is not None else None)
        tr.fI, tr.fb = loc.fI, loc.fb

    def contract(self, tr: ImmediateState, loc: Local, L: Tensor, acc: dict[str, Tensor]) -> None:
        assert tr.pre_W is not None and tr.fI is not None and tr.fb is not None
        u = L.unsqueeze(-1) * loc.os  # (B, n, k): L_i dy_i/ds_i,a
        v = (u * tr.fI).sum(-1)  # (B, n): L_i dy_i/dI_i
        acc["W"] += v.T @ tr.pre_W
        if tr.pre_H is not None:
            acc["H"] += v.T @ tr.pre_H
        acc["b"] += (u * tr.fb).sum((0, 2)) + (L * loc.ob).sum(0)


class ExactTrace:
    """Full traces: eps holds ds_m/dtheta for every unit m. O(n^2 n_in) per sample: small layers only."""

    name = "exact"

    def nbytes(self, batch: int, n_in: int, n: int, k: int, recurrent: bool, element_size: int) -> int:
        return n * batch * n * k * (n_in + (n if recurrent else 0) + 1) * element_size

    def init(self, layer: RecurrentLayer, batch: int) -> EligibilityState:
        return EligibilityState(**_zero_eligibilities(layer, batch, (layer.n,)))  # type: ignore[arg-type]

    @staticmethod
    def _full_jacobian_times(layer: RecurrentLayer, loc: Local, os_prev: Tensor, eps: Tensor) -> Tensor:
        """F_t eps for eps (B, n, k, *P), without forming the (nk x nk) matrix."""
        flat = eps.reshape(eps.shape[:3] + (-1,))
        own = loc.Fs + loc.Fy.unsqueeze(-1) * os_prev.unsqueeze(-2)
        out = torch.matmul(own, flat)
        if layer.H is not None:
            through_output = torch.einsum("bna,bnap->bnp", os_prev, flat)
            out = out + loc.fI.unsqueeze(-1) * torch.einsum("mn,bnp->bmp", layer.H, through_output).unsqueeze(2)
        return out.reshape(eps.shape)

    def update(self, tr: EligibilityState, layer: RecurrentLayer, loc: Local, os_prev: Tensor, ob_prev: Tensor,
               x: Tensor, y_prev: Tensor) -> None:
        tr.W = self._full_jacobian_times(layer, loc, os_prev, tr.W)
        if tr.H is not None:
            tr.H = self._full_jacobian_times(layer, loc, os_prev, tr.H)
        tr.b = self._full_jacobian_times(layer, loc, os_prev, tr.b)
        for eps, pre in ((tr.W, x), (tr.H, y_prev)):
            if eps is None:
                continue
            # ds_i/dtheta_ij|immediate = fI_i pre_j lands on unit m = i only.
            diag = eps.diagonal(dim1=1, dim2=3)  # (B, k, n_pre, n): [b, a, j, i]
            diag.add_(loc.fI.permute(0, 2, 1).unsqueeze(2) * pre[:, None, :, None])
        own = loc.fb + loc.Fy * ob_prev.unsqueeze(-1)  # via the unit's own reset path
        tr.b.diagonal(dim1=1, dim2=3).add_(own.permute(0, 2, 1))
        if layer.H is not None:  # via y_{t-1,i} into every unit m through H_mi
            tr.b.add_(loc.fI.unsqueeze(-1) * (layer.H.unsqueeze(0) * ob_prev.unsqueeze(1)).unsqueeze(2))

    def contract(self, tr: EligibilityState, loc: Local, L: Tensor, acc: dict[str, Tensor]) -> None:
        contract_traces(tr.eligibilities(), loc, L, acc, "bma,bma...->...")


# meta: oracle -- the modified autograd graph (tests/oracles.py) the kind's gradients must equal.
TRACE_KINDS: Registry[TraceKind] = Registry("trace kind")
TRACE_KINDS.register("diagonal", DiagonalTrace, help="per-unit traces: off-diagonal recurrent paths dropped",
                     oracle="diagonal")
TRACE_KINDS.register("none", NoTrace, help="no temporal credit: immediate derivative only", oracle="none")
TRACE_KINDS.register("exact", ExactTrace, help="full RTRL traces, O(n^2 n_in) per sample: small layers only",
                     oracle="exact")


def make_trace(name: str) -> TraceKind:
    return TRACE_KINDS.build(name)
