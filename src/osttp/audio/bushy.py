"""Bushy cells: each channel's auditory-nerve fibres converge on one leaky integrate-and-fire
neuron, whose spikes are the cochlea's output (docs/audio.md §4).

Fibres: n_convergence per channel, each firing at a step with the hair cell's probability p_t,
but not within the refractory period tau_ref after its own last spike (a spike d steps later is
dropped while d < tau_ref * rate). The fibres of a channel are exchangeable and independent, so the
number that fire at step t is Binomial(n_free_t, p_t), where n_free_t is n_convergence minus those
that fired in the last ceil(tau_ref * rate) - 1 steps: the same distribution as drawing every
fibre and discarding its refractory spikes, at one draw per channel and step instead of 40.

Neuron (per step dt, w = weight / n_convergence):
    I_t = I_{t-1} e^{-dt/tau_syn} + k_t                 summed synaptic current of the fibres
    V_t = min(V_{t-1} e^{-dt/tau_mem} + w dt I_t, 1)     outside refractoriness
A step whose V reached 1 is a spike; the next step resets V to 0 and holds it there (not
integrating, the current still decays and accumulates) for tau_ref * rate steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil, exp

import numba
import numpy as np


@dataclass(frozen=True)
class BushyCellParams:
    n_convergence: int = 40
    tau_mem: float = 1e-3
    tau_syn: float = 5e-4
    tau_refrac: float = 1e-3
    weight: float = 13e3


def blocked_steps(tau_refrac: float, rate: float) -> int:
    """How many steps after its spike a fibre stays silent: the d >= 1 with d < tau_refrac * rate."""
    return max(int(ceil(tau_refrac * rate)) - 1, 0)


@numba.njit(cache=True, nogil=True)
def _fibre_counts(prob: np.ndarray, n_conv: int, blocked: int, seed: int) -> np.ndarray:
    """How many of each channel's fibres fire at each step, (steps, channels) int32."""
    np.random.seed(seed)
    steps, channels = prob.shape
    counts = np.zeros((steps, channels), dtype=np.int32)
    recent = np.zeros(channels, dtype=np.int64)  # fibres that fired in the last `blocked` steps
    for t in range(steps):
        for j in range(channels):
            if t > blocked and blocked > 0:
                recent[j] -= counts[t - blocked - 1, j]
            free = n_conv - recent[j]
            pj = min(max(prob[t, j], 0.0), 1.0)
            k = np.random.binomial(free, pj) if (free > 0 and pj > 0.0) else 0
            counts[t, j] = k
            if blocked > 0:
                recent[j] += k
    return counts


@numba.njit(cache=True, nogil=True)
def _lif_spikes(counts: np.ndarray, dt: float, tau_mem: float, tau_syn: float, refrac: float,
                w: float) -> tuple[np.ndarray, np.ndarray]:
    """Spike (step, channel) pairs of the bushy neurons, in time order then channel order."""
    steps, channels = counts.shape
    v = np.zeros(channels)
    cur = np.zeros(channels)
    hold = np.zeros(channels)  # refractory steps left; <= 0 means integrating
    dm, ds = exp(-dt / tau_mem), exp(-dt / tau_syn)
    cap = channels * (steps // 2 + 1)
    out_t = np.empty(cap, dtype=np.int64)
    out_c = np.empty(cap, dtype=np.int64)
    n = 0
    for t in range(steps):
        for j in range(channels):
            if t > 0:
                if hold[j] <= 0.0:
                    if v[j] < 1.0:
                        v[j] = v[j] * dm
                    else:
                        hold[j] = refrac
                        v[j] = 0.0
                        out_t[n] = t - 1
                        out_c[n] = j
                        n += 1
                else:
                    v[j] = 0.0
                cur[j] = cur[j] * ds
            cur[j] += counts[t, j]
            if hold[j] <= 0.0:
                v[j] += cur[j] * w * dt
            if v[j] > 1.0:
                v[j] = 1.0
            hold[j] -= 1.0
    # a spike is emitted when the step after it resets V; one reached on the last step has no such step
    for j in range(channels):
        if steps > 0 and v[j] >= 1.0:
            out_t[n] = steps - 1
            out_c[n] = j
            n += 1
    return out_t[:n].copy(), out_c[:n].copy()


def fibre_counts(prob: np.ndarray, rate: float, seed: int, p: BushyCellParams | None = None) -> np.ndarray:
    p = p or BushyCellParams()
    prob = np.ascontiguousarray(prob, dtype=np.float64)
    return _fibre_counts(prob, p.n_convergence, blocked_steps(p.tau_refrac, rate), int(seed) % (2 ** 32))


def lif_spikes(counts: np.ndarray, rate: float, p: BushyCellParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, channels) of every bushy-cell spike for per-step fibre counts (steps, channels)."""
    p = p or BushyCellParams()
    counts = np.ascontiguousarray(counts)
    return _lif_spikes(counts, 1.0 / float(rate), p.tau_mem, p.tau_syn, p.tau_refrac * rate,
                       p.weight / p.n_convergence)
