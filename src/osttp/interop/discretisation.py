"""Forward-Euler discretisation of NIR's continuous-time neurons (docs/interop.md).

NIR writes a leaky integrator as  tau dv/dt = (v_leak - v) + r I.  One Euler step of length dt:

    v_t = (1 - dt/tau) v_{t-1} + (dt r / tau) I_t          (v_leak = 0)

which is osttp's  v_t = alpha v_{t-1} + I_t  when  alpha = 1 - dt/tau  and the input is multiplied by
the gain  dt r / tau. snnTorch's and norse's NIR exporters and importers use this same Euler step.
An integrator without leak (NIR's I and IF: dv/dt = r I) is alpha = 1 with gain dt r.
"""
from __future__ import annotations

import numpy as np

from osttp.errors import OsttpError


def tau_from_leak(alpha: float, dt: float) -> float:
    """tau = dt / (1 - alpha): the time constant whose Euler step keeps the fraction alpha."""
    if not 0.0 <= alpha < 1.0:
        raise OsttpError(f"a leak alpha in [0, 1) has a finite time constant, got {alpha!r}")
    return dt / (1.0 - alpha)


def leak_from_tau(tau: np.ndarray, dt: float, what: str) -> float:
    """alpha = 1 - dt/tau, one value for the whole layer (osttp's cells have one leak per layer)."""
    tau = np.asarray(tau, dtype=np.float64)
    alphas = np.unique(1.0 - dt / tau)
    if alphas.size != 1 or not np.isfinite(alphas[0]):
        raise OsttpError(f"{what}: osttp needs one time constant per layer, got tau = {np.unique(tau)}")
    alpha = float(alphas[0])
    if not 0.0 <= alpha < 1.0:
        raise OsttpError(f"{what}: tau = {float(np.unique(tau)[0])!r} with dt = {dt!r} gives the leak "
                         f"1 - dt/tau = {alpha!r}, outside [0, 1); choose dt <= tau")
    return alpha


def euler_input_gain(tau: np.ndarray | None, r: np.ndarray, dt: float) -> np.ndarray:
    """The Euler step's input gain dt r / tau per unit (dt r without a leak, tau = None)."""
    r = np.asarray(r, dtype=np.float64)
    return dt * r if tau is None else dt * r / np.asarray(tau, dtype=np.float64)
