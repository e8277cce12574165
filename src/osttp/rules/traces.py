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
from osttp.network import RecurrentLayer
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
    """The diagonal kind's eligibilities, plus the step recorded by a fused `update` and not yet applied
    to W and H: the per-unit factors D (B, n, 1, 1) and fI (B, n, 1) and the presynaptic vectors."""

    D: Tensor | None = None
    fI: Tensor | None = None
    pre_W: Tensor | None = None
    pre_H: Tensor | None = None


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


def diagonal_jacobian(layer: RecurrentLayer, loc: Local, os_prev: Tensor) -> Tensor:
    """The per-unit blocks of F_t (B, n, k, k): Fs + (Fy + fI H_ii) os_{t-1}^T."""
    return loc.Fs + self_coupling(layer, loc).unsqueeze(-1) * os_prev.unsqueeze(-2)


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


# A chunk of samples small enough to stay in a core's L2 cache across the fused pass's in-place
# operations, so each number of eps comes from memory once per step (measured: docs/performance.md).
FUSED_CHUNK_BYTES = 1 << 20
# From this many numbers per sample on, the contraction adds sample by sample (addcmul_: no
# temporary); below, one einsum over the chunk costs fewer operations.
PER_SAMPLE_MIN = 2048


def fused_diagonal_pass(eps: Tensor, D: Tensor, fI: Tensor, pre: Tensor, u: Tensor | None,
                        acc: Tensor | None) -> None:
    """eps <- D eps + fI pre^T, then acc += sum_b u_b eps_b -- one pass over eps, in place.

    One-state cells: eps (B, n, 1, m), D (B, n, 1, 1), fI and u (B, n, 1), pre (B, m), acc (n, m).
    On the CPU the batch is walked in cache-sized chunks of samples, so the update and the
    contraction read eps while it is still in cache; no tensor of eps's size is allocated."""
    B, n, m = eps.shape[0], eps.shape[1], eps.shape[-1]
    e, d, f, p = eps.view(B, n, m), D.view(B, n, 1), fI.view(B, n, 1), pre.view(B, 1, m)
    w = None if u is None else u.view(B, n, 1)
    if e.device.type != "cpu":  # whole-batch kernels: per-chunk launches would cost more than they save
        e.mul_(d).addcmul_(f, p)
        if w is not None and acc is not None:
            acc.add_(torch.einsum("bi,bij->ij", w[..., 0], e))
        return
    chunk = max(1, FUSED_CHUNK_BYTES // max(1, n * m * e.element_size()))
    per_sample = n * m >= PER_SAMPLE_MIN
    for s in range(0, B, chunk):
        ec = e[s:s + chunk]
        ec.mul_(d[s:s + chunk]).addcmul_(f[s:s + chunk], p[s:s + chunk])
        if w is None or acc is None:
            continue
        if per_sample:
            for b in range(s, s + ec.shape[0]):
                acc.addcmul_(w[b], e[b])
        else:
            acc.add_(torch.einsum("bi,bij->ij", w[s:s + chunk, :, 0], ec))


class DiagonalTrace:
    """Per-unit traces (k = i only): eps^W is (B, n, k, n_in), the size of W per sample.

    fused (default; one-state cells): `update` records the step's factors D, fI and presynaptic
    vectors, and the pass over eps runs in `contract`, fused with the contraction
    (`fused_diagonal_pass`); a step that is not contracted (no supervised sample) is applied at the
    next `update`. fused=False: the reference form, update then contract as separate passes."""

    name = "diagonal"

    def __init__(self, fused: bool = True) -> None:
        self.fused = fused

    def nbytes(self, batch: int, n_in: int, n: int, k: int, recurrent: bool, element_size: int) -> int:
        return batch * n * k * (n_in + (n if recurrent else 0) + 1) * element_size

    def init(self, layer: RecurrentLayer, batch: int) -> DiagonalState:
        return DiagonalState(**_zero_eligibilities(layer, batch, ()))  # type: ignore[arg-type]

    def update(self, tr: DiagonalState, layer: RecurrentLayer, loc: Local, os_prev: Tensor, ob_prev: Tensor,
               x: Tensor, y_prev: Tensor) -> None:
        D = diagonal_jacobian(layer, loc, os_prev)
        fused = self.fused and D.shape[-1] == 1
        if fused:
            self._apply_pending(tr, None, None)
        else:
            tr.W = times_blocks(D, tr.W)
            if tr.H is not None:
                tr.H = times_blocks(D, tr.H)
        # b also acts through y_{t-1} = out(s_{t-1}; b) on the unit's own state.
        tr.b = times_blocks(D, tr.b)
        tr.b.add_(loc.fb + self_coupling(layer, loc) * ob_prev.unsqueeze(-1))
        has_H = layer.H is not None
        if fused:
            tr.D, tr.fI, tr.pre_W, tr.pre_H = D, loc.fI, x, (y_prev if has_H else None)
        else:
            tr.W.addcmul_(loc.fI.unsqueeze(-1), x[:, None, None, :])
            if tr.H is not None:
                tr.H.addcmul_(loc.fI.unsqueeze(-1), y_prev[:, None, None, :])

    @staticmethod
    def _apply_pending(tr: DiagonalState, u: Tensor | None, acc: dict[str, Tensor] | None) -> None:
        """Run the recorded update of W and H (with the contraction when u is given) and forget it."""
        if tr.D is None:
            return
        D, fI = tr.D, tr.fI
        assert fI is not None and tr.pre_W is not None
        fused_diagonal_pass(tr.W, D, fI, tr.pre_W, u, None if acc is None else acc["W"])
        if tr.H is not None:
            assert tr.pre_H is not None
            fused_diagonal_pass(tr.H, D, fI, tr.pre_H, u, None if acc is None else acc["H"])
        tr.D = tr.fI = tr.pre_W = tr.pre_H = None

    def contract(self, tr: DiagonalState, loc: Local, L: Tensor, acc: dict[str, Tensor]) -> None:
        if tr.D is None:
            contract_traces(tr.eligibilities(), loc, L, acc, "bia,bia...->i...")
            return
        u = L.unsqueeze(-1) * loc.os
        self._apply_pending(tr, u, acc)
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
