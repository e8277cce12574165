"""Inner hair cell: Meddis's (1986, 1988) transmitter-reservoir model (docs/audio.md §3).

Per channel, three transmitter pools: free q (in the cell), cleft c and reprocessing w. With
membrane velocity v, the cleft permeability is k = g (v + A) / (v + A + B) (0 for v + A <= 0), and
one explicit Euler step of length dt is

    q' = max(q + y dt (M - q) [q < M] - k dt q + x dt w, 0)
    c' = max(c + k dt q - (l + r) dt c, 0)
    w' = max(w + r dt c - x dt w, 0)

starting from the resting state for v = 0. The output, the auditory nerve's firing probability
per step, is h dt c'. The loop over time is sequential, so it is compiled (numba) and runs over all
channels of a step at once; it overwrites its input to keep one buffer per recording.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class HairCellParams:
    """Meddis's constants (per second): replenishment y, permeability g, A, B, loss l, reuptake r,
    reprocessing x, firing scale h, pool size M."""

    y: float = 5.05
    g: float = 2000.0
    l: float = 2500.0
    r: float = 6580.0
    x: float = 66.3
    a: float = 5.0
    b: float = 300.0
    h: float = 50000.0
    m: float = 1.0


def resting_state(p: HairCellParams) -> tuple[float, float, float]:
    """(q, c, w) at equilibrium for zero velocity, where the spontaneous rate comes from."""
    k = p.g * p.a / (p.a + p.b)
    c = p.m * p.y * k / (p.l * k + p.y * (p.l + p.r))
    return c * (p.l + p.r) / k, c, c * p.r / p.x


@numba.njit(cache=True, nogil=True)
def _meddis_inplace(v: np.ndarray, rate: float, y: float, g: float, l: float, r: float, x: float,
                    a: float, b: float, h: float, m: float, q0: float, c0: float, w0: float) -> None:
    steps, channels = v.shape
    q = np.full(channels, q0)
    c = np.full(channels, c0)
    w = np.full(channels, w0)
    # rate constants times dt, each as constant / rate (one rounding, not two through dt = 1 / rate)
    ymdt, ydt, gdt, xdt, rdt, lrdt, hdt = y * m / rate, y / rate, g / rate, x / rate, r / rate, (l + r) / rate, h / rate
    for t in range(steps):
        for j in range(channels):
            s = v[t, j] + a
            k = gdt * s / (s + b) if s > 0.0 else 0.0
            qj, cj, wj = q[j], c[j], w[j]
            replenish = ymdt - ydt * qj if qj < m else 0.0
            eject = k * qj
            reprocess = xdt * wj
            q[j] = max(qj + replenish - eject + reprocess, 0.0)
            c[j] = max(cj + eject - lrdt * cj, 0.0)
            w[j] = max(wj + rdt * cj - reprocess, 0.0)
            v[t, j] = c[j] * hdt


def firing_probability(velocity: np.ndarray, rate: float, p: HairCellParams | None = None,
                       inplace: bool = False) -> np.ndarray:
    """Per-step firing probability, time-major like velocity (steps, channels), at `rate` Hz."""
    p = p or HairCellParams()
    out = velocity if inplace else np.array(velocity, dtype=np.float64, copy=True)
    if out.dtype != np.float64 or out.ndim != 2 or not out.flags.c_contiguous:
        out = np.ascontiguousarray(out, dtype=np.float64).reshape(out.shape[0], -1)
    q0, c0, w0 = resting_state(p)
    _meddis_inplace(out, float(rate), p.y, p.g, p.l, p.r, p.x, p.a, p.b, p.h, p.m, q0, c0, w0)
    return out
