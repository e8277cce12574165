"""The diagonal kind's trace pass, blocked in time: K steps of the recursion in one pass over eps.

For one-state cells the diagonal kind's eligibility of W (docs/math.md §4.1) and the gradient it
feeds (§4.3) are, per sample b, unit i and input j,

    eps_t,ij = D_t,i eps_{t-1},ij + a_t,i x_t,j          (a = fI)
    grad_ij += sum_b u_t,i eps_t,ij                       (u = L os, zero on a step not contracted)

Nothing of the forward pass reads eps, so steps t0+1..t0+k can be recorded (D, a, u and x: vectors
of B (3n + n_in) numbers per step) and applied together. Unrolled over the block (docs/math.md
§4.1.2), with G_s = sum_{t>=s} u_t prod_{r=s+1..t} D_r and R_s = prod_{r>=s} D_r:

    grad_ij += sum_b c_i eps_t0,ij + sum_{s,b} (a_s G_s)_i x_s,j         c = D_t0+1 G_t0+1
    eps_t0+k,ij = R_t0+1,i eps_t0,ij + sum_s (a_s R_s+1)_i x_s,j          (R_t0+k+1 = 1)

The first sum reads eps once; the second is one (n x kB)(kB x n_in) matrix product; the new eps is
one scale and one batched (n x k)(k x n_in) product per sample. So eps, the only tensor of W's
size per sample, is read and written once per k steps instead of once per step, and the rest is
matrix products that are compute-bound (the bytes per step: docs/performance.md).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

# A chunk of samples small enough to stay in a core's L2 cache across the pass's in-place operations
# (contraction, scale, batched product), so each number of eps comes from memory once per block.
CHUNK_BYTES = 1 << 20
# From this many numbers per sample on, the contraction adds sample by sample (addcmul_: no
# temporary); below, one einsum over the chunk costs fewer operations.
PER_SAMPLE_MIN = 2048


class BlockFactors(NamedTuple):
    """What a block of k recorded steps contributes, per sample and unit (all (B, n) or (k, B, n))."""

    c: Tensor | None  # weight of eps_t0 in the block's gradient (None: nothing contracted)
    v: Tensor | None  # a_s G_s: weight of x_s in the block's gradient (k, B, n)
    scale: Tensor  # R_t0+1 = prod of the block's D: what eps_t0 is multiplied by
    q: Tensor  # a_s R_s+1: weight of x_s in the new eps (k, B, n)


def block_factors(D: Tensor, a: Tensor, u: Tensor | None) -> BlockFactors:
    """The factors of one block from its recorded D, a, u (k, B, n); overwrites u and a (consumed).

    G_s = u_s + D_s+1 G_s+1 (G_k = u_k) runs backwards in place in u; R by a reverse cumprod."""
    k = D.shape[0]
    c = v = None
    if u is not None:
        for s in range(k - 2, -1, -1):
            u[s].addcmul_(D[s + 1], u[s + 1])
        c = D[0] * u[0]
        v = u.mul_(a)
    R = D.flip(0).cumprod(0).flip(0)  # R_s = prod_{r>=s} D_r
    a[:-1].mul_(R[1:])
    return BlockFactors(c, v, R[0], a)


def apply_block(eps: Tensor, f: BlockFactors, x: Tensor, acc: Tensor | None, eps_zero: bool = False) -> None:
    """acc += the block's gradient; eps <- eps at the block's end. eps (B, n, m), x (k, B, m), acc (n, m).
    eps_zero: eps at the block's start is zero (a new sequence), whatever it holds: it is written, not read.

    On the CPU the batch is walked in cache-sized chunks of samples, so the contraction, the scale
    and the batched product read eps while it is in cache; no tensor of eps's size is allocated."""
    B, n, m = eps.shape
    k = x.shape[0]
    if acc is not None and f.v is not None:
        # in the accumulator's dtype (>= float32: half-precision networks accumulate in float32)
        acc.addmm_(f.v.reshape(k * B, n).T.to(acc.dtype), x.reshape(k * B, m).to(acc.dtype))
    qt, xt = f.q.permute(1, 2, 0), x.permute(1, 0, 2)  # (B, n, k), (B, k, m)
    contract = acc is not None and f.c is not None and not eps_zero
    if eps.device.type != "cpu":  # whole-batch kernels: per-chunk launches would cost more than they save
        if contract:
            acc.add_(torch.einsum("bi,bij->ij", f.c, eps))
        if eps_zero:
            eps.baddbmm_(qt, xt, beta=0.0)  # beta = 0: what eps held (even NaN) is not read
        else:
            eps.mul_(f.scale.unsqueeze(-1)).baddbmm_(qt, xt)
        return
    chunk = max(1, CHUNK_BYTES // max(1, n * m * eps.element_size()))
    per_sample = n * m >= PER_SAMPLE_MIN
    for s in range(0, B, chunk):
        e = eps[s:s + chunk]
        if contract:
            if per_sample:
                for b in range(s, s + e.shape[0]):
                    acc.addcmul_(f.c[b].unsqueeze(-1), eps[b])
            else:
                acc.add_(torch.einsum("bi,bij->ij", f.c[s:s + chunk], e))
        if eps_zero:
            e.baddbmm_(qt[s:s + chunk], xt[s:s + chunk], beta=0.0)
        else:
            e.mul_(f.scale[s:s + chunk].unsqueeze(-1)).baddbmm_(qt[s:s + chunk], xt[s:s + chunk])
