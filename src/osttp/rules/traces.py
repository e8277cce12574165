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
A trace state is a dict of whatever tensors the kind needs (keyed by what they are); `contract`
maps them to gradients itself, adding into the layer's accumulators {"W", "H", "b"}. The hot path
of each kind is its `update` and `contract`, so a new kind is one class plus its registration in
TRACE_KINDS, whose `oracle` metadata names the modified autograd graph it must equal (tests/oracles.py
knows the graphs "exact", "diagonal", "none" and "factorized"; the factorized kind, O(B (n + n_in))
state, lives in osttp.rules.factorized).
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from osttp.cells import Local
from osttp.network import RecurrentLayer
from osttp.registry import Registry

TraceState = dict[str, Tensor]


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


def _presynaptic(layer: RecurrentLayer, x: Tensor, y_prev: Tensor) -> dict[str, Tensor]:
    """The vector each weight matrix multiplies: W <- the layer input, H <- the last output."""
    pre = {"W": x}
    if layer.H is not None:
        pre["H"] = y_prev
    return pre


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


def contract_traces(tr: TraceState, loc: Local, L: Tensor, acc: dict[str, Tensor], equation: str) -> None:
    """grad += sum_b sum_k L_k e_k with e = dy/ds eps + dy/dtheta|direct (docs/math.md §4.3).

    u_m,a = L_m dy_m/ds_m,a weighs each state component's eligibility; `equation` sums u against
    the kind's eps layout (diagonal: unit m = i only; exact: over every unit m)."""
    u = L.unsqueeze(-1) * loc.os
    for name, eps in tr.items():
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

    def init(self, layer: RecurrentLayer, batch: int) -> TraceState:
        k = layer.cell.n_states
        kw = {"dtype": layer.W.dtype, "device": layer.W.device}
        tr = {name: torch.zeros(batch, layer.n, k, p.shape[1], **kw)
              for name, p in (("W", layer.W), ("H", layer.H)) if p is not None}
        tr["b"] = torch.zeros(batch, layer.n, k, **kw)
        return tr

    def update(self, tr: TraceState, layer: RecurrentLayer, loc: Local, os_prev: Tensor, ob_prev: Tensor,
               x: Tensor, y_prev: Tensor) -> None:
        D = diagonal_jacobian(layer, loc, os_prev)
        fused = self.fused and D.shape[-1] == 1
        if fused:
            self._apply_pending(tr, None, None)
        else:
            for name in ("W", "H"):
                if name in tr:
                    tr[name] = times_blocks(D, tr[name])
        # b also acts through y_{t-1} = out(s_{t-1}; b) on the unit's own state.
        tr["b"] = times_blocks(D, tr["b"])
        tr["b"].add_(loc.fb + self_coupling(layer, loc) * ob_prev.unsqueeze(-1))
        for name, pre in _presynaptic(layer, x, y_prev).items():
            if fused:
                tr["pending.pre." + name] = pre
            else:
                tr[name].addcmul_(loc.fI.unsqueeze(-1), pre[:, None, None, :])
        if fused:
            tr["pending.D"], tr["pending.fI"] = D, loc.fI

    @staticmethod
    def _apply_pending(tr: TraceState, u: Tensor | None, acc: dict[str, Tensor] | None) -> None:
        """Run the recorded update of W and H (with the contraction when u is given) and forget it."""
        if "pending.D" not in tr:
            return
        D, fI = tr.pop("pending.D"), tr.pop("pending.fI")
        for name in ("W", "H"):
            if name in tr:
                fused_diagonal_pass(tr[name], D, fI, tr.pop("pending.pre." + name), u,
                                    None if acc is None else acc[name])

    def contract(self, tr: TraceState, loc: Local, L: Tensor, acc: dict[str, Tensor]) -> None:
        if "pending.D" not in tr:
            contract_traces(tr, loc, L, acc, "bia,bia...->i...")
            return
        u = L.unsqueeze(-1) * loc.os
        self._apply_pending(tr, u, acc)
        acc["b"] += (u * tr["b"]).sum((0, 2)) + (L * loc.ob).sum(0)


class NoTrace:
    """No temporal credit (DRTP, DFA): the eligibility is the immediate derivative fI_i pre_j.

    Nothing per synapse is stored: the state holds references to this step's presynaptic vectors
    and immediate factors, and the contraction is one matrix product per weight matrix."""

    name = "none"

    def nbytes(self, batch: int, n_in: int, n: int, k: int, recurrent: bool, element_size: int) -> int:
        return 0  # references to this step's tensors only

    def init(self, layer: RecurrentLayer, batch: int) -> TraceState:
        return {}

    def update(self, tr: TraceState, layer: RecurrentLayer, loc: Local, os_prev: Tensor, ob_prev: Tensor,
               x: Tensor, y_prev: Tensor) -> None:
        tr.update(_presynaptic(layer, x, y_prev))
        tr["fI"], tr["fb"] = loc.fI, loc.fb

    def contract(self, tr: TraceState, loc: Local, L: Tensor, acc: dict[str, Tensor]) -> None:
        u = L.unsqueeze(-1) * loc.os  # (B, n, k): L_i dy_i/ds_i,a
        v = (u * tr["fI"]).sum(-1)  # (B, n): L_i dy_i/dI_i
        for name in ("W", "H"):
            if name in tr:
                acc[name] += v.T @ tr[name]
        acc["b"] += (u * tr["fb"]).sum((0, 2)) + (L * loc.ob).sum(0)


class ExactTrace:
    """Full traces: eps holds ds_m/dtheta for every unit m. O(n^2 n_in) per sample: small layers only."""

    name = "exact"

    def nbytes(self, batch: int, n_in: int, n: int, k: int, recurrent: bool, element_size: int) -> int:
        return n * batch * n * k * (n_in + (n if recurrent else 0) + 1) * element_size

    def init(self, layer: RecurrentLayer, batch: int) -> TraceState:
        k, n = layer.cell.n_states, layer.n
        kw = {"dtype": layer.W.dtype, "device": layer.W.device}
        tr = {name: torch.zeros(batch, n, k, n, p.shape[1], **kw)
              for name, p in (("W", layer.W), ("H", layer.H)) if p is not None}
        tr["b"] = torch.zeros(batch, n, k, n, **kw)
        return tr

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

    def update(self, tr: TraceState, layer: RecurrentLayer, loc: Local, os_prev: Tensor, ob_prev: Tensor,
               x: Tensor, y_prev: Tensor) -> None:
        for name in tr:
            tr[name] = self._full_jacobian_times(layer, loc, os_prev, tr[name])
        for name, pre in _presynaptic(layer, x, y_prev).items():
            # ds_i/dtheta_ij|immediate = fI_i pre_j lands on unit m = i only.
            diag = tr[name].diagonal(dim1=1, dim2=3)  # (B, k, n_pre, n): [b, a, j, i]
            diag.add_(loc.fI.permute(0, 2, 1).unsqueeze(2) * pre[:, None, :, None])
        own = loc.fb + loc.Fy * ob_prev.unsqueeze(-1)  # via the unit's own reset path
        tr["b"].diagonal(dim1=1, dim2=3).add_(own.permute(0, 2, 1))
        if layer.H is not None:  # via y_{t-1,i} into every unit m through H_mi
            tr["b"].add_(loc.fI.unsqueeze(-1) * (layer.H.unsqueeze(0) * ob_prev.unsqueeze(1)).unsqueeze(2))

    def contract(self, tr: TraceState, loc: Local, L: Tensor, acc: dict[str, Tensor]) -> None:
        contract_traces(tr, loc, L, acc, "bma,bma...->...")


# meta: oracle -- the modified autograd graph (tests/oracles.py) the kind's gradients must equal.
TRACE_KINDS: Registry[TraceKind] = Registry("trace kind")
TRACE_KINDS.register("diagonal", DiagonalTrace, help="per-unit traces: off-diagonal recurrent paths dropped",
                     oracle="diagonal")
TRACE_KINDS.register("none", NoTrace, help="no temporal credit: immediate derivative only", oracle="none")
TRACE_KINDS.register("exact", ExactTrace, help="full RTRL traces, O(n^2 n_in) per sample: small layers only",
                     oracle="exact")


def make_trace(name: str) -> TraceKind:
    return TRACE_KINDS.build(name)
