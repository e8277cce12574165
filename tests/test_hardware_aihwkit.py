"""Cross-check of the PCM pulse response against IBM's aihwkit (an independent implementation of the
PCM statistics of Nandakumar et al., Front. Neurosci. 2020: its `PCMPresetDevice`).

Both models are run from the RESET state through a train of SET pulses on many devices; the curve
compared is the mean and std of the increment per pulse against the device's state, with the state
normalised to its saturation value (aihwkit's range is in its own weight units, ours in µS). What must
agree is the published shape: increments that shrink as the device crystallises and vanish at
saturation, the number of pulses that takes, and noise of the order of the mean increment.

aihwkit 1.2.0 is distributed here only as a source package whose build needs OpenBLAS headers and a
long C++ compile (tried: CMake stops at "Could not find OpenBLAS"), so this test skips when the package
is absent and says so; it is in the `hardware` extra for machines where the wheel installs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from osttp.hardware import PCMDevice

N_DEVICES, N_PULSES, BINS = 400, 60, 8


def response_curve(states: np.ndarray, saturation: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Per bin of the normalised state: mean and std of the next increment; and the pulses until the
    median device reaches 90 % of saturation. states: (N_PULSES + 1, devices)."""
    s = states / saturation
    inc = np.diff(s, axis=0).ravel()
    before = s[:-1].ravel()
    edges = np.linspace(0.0, 1.0, BINS + 1)
    idx = np.clip(np.digitize(before, edges) - 1, 0, BINS - 1)
    mean = np.array([inc[idx == b].mean() if (idx == b).sum() > 20 else np.nan for b in range(BINS)])
    std = np.array([inc[idx == b].std() if (idx == b).sum() > 20 else np.nan for b in range(BINS)])
    reached = np.nonzero(np.median(s, axis=1) >= 0.9)[0]
    return mean, std, int(reached[0]) if reached.size else N_PULSES + 1


def osttp_states() -> np.ndarray:
    dev = PCMDevice()
    g_gen = torch.Generator().manual_seed(0)
    g = dev.initial_conductance((N_DEVICES,), g_gen, torch.float64)
    out = [g.clone()]
    for _ in range(N_PULSES):
        g = dev.apply_set_pulse(g, g_gen)
        out.append(g.clone())
    return torch.stack(out).numpy() - dev.g_min


def test_pulse_response_matches_aihwkit_pcm_preset() -> None:
    aihwkit = pytest.importorskip(
        "aihwkit", reason="aihwkit is not installed: 1.2.0 is an sdist here and its build needs OpenBLAS and a "
                          "long C++ compile (pip install aihwkit where a CPU wheel exists)")
    from aihwkit.simulator.configs import SingleRPUConfig
    from aihwkit.simulator.presets.devices import PCMPresetDevice
    from aihwkit.utils.visualization import compute_pulse_response, get_tile_for_plotting

    assert aihwkit is not None
    tile = get_tile_for_plotting(SingleRPUConfig(device=PCMPresetDevice()), N_DEVICES)
    trace = compute_pulse_response(tile, np.ones(N_PULSES + 1))  # (pulses, devices, 1), weights w_min..w_max
    theirs = trace.reshape(N_PULSES + 1, -1) - PCMPresetDevice().w_min
    ours = osttp_states()
    m_ours, s_ours, n_ours = response_curve(ours, float(PCMDevice().saturation_conductance - PCMDevice().g_min))
    m_theirs, s_theirs, n_theirs = response_curve(theirs, float(np.percentile(theirs[-1], 95)))
    ok = ~np.isnan(m_ours) & ~np.isnan(m_theirs)
    assert ok.sum() >= 3
    # the same shape: increments decrease as the device crystallises (rank correlation of the curves)
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    assert np.corrcoef(rank(m_ours[ok]), rank(m_theirs[ok]))[0, 1] > 0.8
    # saturation within a factor 2 of pulses, and noise of the same order relative to the mean step
    assert 0.5 <= n_ours / max(n_theirs, 1) <= 2.0
    ratio_ours = np.nanmedian(s_ours[ok] / np.abs(m_ours[ok]))
    ratio_theirs = np.nanmedian(s_theirs[ok] / np.abs(m_theirs[ok]))
    assert 1 / 3 <= ratio_ours / ratio_theirs <= 3


def test_our_curve_follows_the_documented_model() -> None:
    """The half of the cross-check that runs everywhere: our measured curve is the §6 model's (mean
    increment μ(G) falling to 0 at G_sat; the median device reaches 90 % of G_sat after ~20-25 pulses
    from RESET, more than G_sat/ε ≈ 14 since the increments shrink on the way)."""
    ours = osttp_states()
    dev = PCMDevice()
    mean, std, n90 = response_curve(ours, float(dev.saturation_conductance - dev.g_min))
    valid = ~np.isnan(mean)
    assert valid.sum() >= 6 and np.all(np.diff(mean[valid]) < 0.01)  # decreasing up to sampling noise
    assert mean[valid][-1] < 0.3 * mean[valid][0]
    assert 8 <= n90 <= 30
    assert np.all(std[valid][:-1] > 0)
