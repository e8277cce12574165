"""The cochlea's stages on short inputs, each against the equations its module states (written
out here step by step in plain numpy) or a property that follows from them (docs/audio.md)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="the cochlea needs the audio extra (pip install 'osttp[audio]')")
pytest.importorskip("scipy", reason="the cochlea needs the audio extra (pip install 'osttp[audio]')")

from osttp.audio.basilar import BASE_LENGTH, BasilarMembrane, padded_length  # noqa: E402
from osttp.audio.bushy import BushyCellParams, blocked_steps, fibre_counts, lif_spikes  # noqa: E402
from osttp.audio.haircell import HairCellParams, firing_probability, resting_state  # noqa: E402
from osttp.audio.signal import hann_edges, resample, rms_normalise  # noqa: E402
from osttp.errors import OsttpError  # noqa: E402


def test_level_edges_and_resampling() -> None:
    x = np.random.default_rng(0).normal(size=101)
    y = rms_normalise(x, 0.3)
    assert np.sqrt(np.mean(y ** 2)) == pytest.approx(0.3, rel=1e-12)
    with pytest.raises(OsttpError, match="silent"):
        rms_normalise(np.zeros(10))
    h = hann_edges(np.ones(101))
    assert h[0] == 0.0 and h[-1] == 0.0 and h[50] == 1.0 and np.all(np.diff(h[:50]) > 0)
    assert np.allclose(h[:50], h[::-1][:50])
    # a 440 Hz tone at 8 kHz is the same tone at 48 kHz (away from the filter's edge transients)
    t8, t48 = np.arange(800) / 8000, np.arange(4800) / 48000
    up = resample(np.sin(2 * np.pi * 440 * t8), 8000, 48000)
    assert up.size == 4800 and np.max(np.abs(up[600:-600] - np.sin(2 * np.pi * 440 * t48)[600:-600])) < 1e-2


def test_padded_lengths_share_the_base_grid() -> None:
    for n in (1, 2, 999, 4800, 38160, BASE_LENGTH):
        L = padded_length(n)
        assert L >= n and L % 2 == 0 and BASE_LENGTH % L == 0
    assert padded_length(BASE_LENGTH + 1) == 2 * BASE_LENGTH
    with pytest.raises(OsttpError):
        padded_length(0)
    # every length dividing the base reads every m-th row of the base matrix: the same frequencies
    bm = BasilarMembrane(channels=6, base=960)
    assert np.array_equal(bm.transfer(480), bm.compute(480)[:, :])
    assert np.allclose(bm.transfer(480), bm.compute(960)[::2], rtol=0, atol=0)


def test_membrane_is_tonotopic_and_linear() -> None:
    bm = BasilarMembrane(channels=40, base=4800)
    t = np.arange(4800) / 48000
    peaks = []
    for f in (500.0, 2000.0, 8000.0):
        v = bm.velocity(np.sin(2 * np.pi * f * t))
        assert v.shape == (2400, 40)
        peaks.append(int(np.argmax(np.sqrt(np.mean(v[600:] ** 2, axis=0)))))
    assert peaks[0] > peaks[1] > peaks[2]  # channel 0 is the base: highest best frequency
    x = np.random.default_rng(1).normal(size=4800)
    # linear up to the complex64 arithmetic of the product (about 1e-7 of the largest value per operation)
    a, b = bm.velocity(2.5 * x), 2.5 * bm.velocity(x)
    assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()


def _meddis_reference(v: np.ndarray, rate: float, p: HairCellParams) -> np.ndarray:
    """haircell's docstring, one Euler step at a time."""
    q, c, w = (np.full(v.shape[1], s) for s in resting_state(p))
    dt, out = 1.0 / rate, np.empty_like(v)
    for t in range(v.shape[0]):
        s = v[t] + p.a
        k = np.where(s > 0, p.g * s / np.where(s > 0, s + p.b, 1.0), 0.0)
        q_new = np.maximum(q + np.where(q < p.m, p.y * dt * (p.m - q), 0.0) - k * dt * q + p.x * dt * w, 0.0)
        c_new = np.maximum(c + k * dt * q - (p.l + p.r) * dt * c, 0.0)
        w_new = np.maximum(w + p.r * dt * c - p.x * dt * w, 0.0)
        q, c, w = q_new, c_new, w_new
        out[t] = p.h * dt * c
    return out


def test_hair_cell_is_meddis_step_by_step() -> None:
    p = HairCellParams()
    v = np.random.default_rng(2).normal(scale=200.0, size=(300, 5))
    v[:, 0] = 0.0
    got = firing_probability(v, 24000.0, p)
    assert np.allclose(got, _meddis_reference(v, 24000.0, p), rtol=1e-10, atol=1e-15)
    # zero velocity: the resting state is a fixed point (the spontaneous rate)
    assert np.allclose(got[:, 0], p.h / 24000.0 * resting_state(p)[1], rtol=1e-9)
    assert not np.array_equal(got[:, 1], got[:, 2])  # a negative control: inputs matter


def test_fibres_respect_their_refractory_period() -> None:
    rate, p = 24000.0, BushyCellParams()
    blocked = blocked_steps(p.tau_refrac, rate)
    assert blocked == 23  # 1 ms at 24 kHz: a spike d steps later is dropped while d < 24
    counts = fibre_counts(np.ones((100, 2)), rate, seed=0, p=p)
    period = blocked + 1
    expect = np.where(np.arange(100) % period == 0, p.n_convergence, 0)
    assert np.array_equal(counts[:, 0], expect) and np.array_equal(counts[:, 1], expect)
    a = fibre_counts(np.full((2000, 3), 0.01), rate, seed=5, p=p)
    assert np.array_equal(a, fibre_counts(np.full((2000, 3), 0.01), rate, seed=5, p=p))
    assert not np.array_equal(a, fibre_counts(np.full((2000, 3), 0.01), rate, seed=6, p=p))
    # mean rate of a fibre with p per step and dead time `blocked`: p / (1 + p * blocked)
    assert a.mean() / p.n_convergence == pytest.approx(0.01 / (1 + 0.01 * blocked), rel=0.05)


def _lif_reference(counts: np.ndarray, rate: float, p: BushyCellParams) -> list[tuple[int, int]]:
    """bushy's docstring: I_t = I_{t-1} e^{-dt/tau_syn} + k_t, V_t = min(V_{t-1} e^{-dt/tau_mem} + w dt I_t, 1);
    a step with V = 1 is a spike, then V is 0 and held for tau_ref * rate steps."""
    dt, w = 1.0 / rate, p.weight / p.n_convergence
    out = []
    for j in range(counts.shape[1]):
        v = cur = 0.0
        hold = 0
        for t in range(counts.shape[0]):
            cur = cur * np.exp(-dt / p.tau_syn) + counts[t, j]
            if hold > 0:
                v, hold = 0.0, hold - 1
                continue
            v = min(v * np.exp(-dt / p.tau_mem) + w * dt * cur, 1.0)
            if v >= 1.0:
                out.append((t, j))
                v, hold = 0.0, int(round(p.tau_refrac * rate))
    return sorted(out)


def test_bushy_cells_are_the_stated_lif() -> None:
    rate, p = 24000.0, BushyCellParams()
    counts = np.random.default_rng(3).poisson(0.6, size=(600, 4)).astype(np.int32)
    steps, units = lif_spikes(counts, rate, p)
    got = sorted(zip(steps.tolist(), units.tolist()))
    assert len(got) > 10 and got == _lif_reference(counts, rate, p)
    assert lif_spikes(np.zeros((50, 3), dtype=np.int32), rate, p)[0].size == 0
    last = np.zeros((5, 2), dtype=np.int32)
    last[4, 1] = 1000  # V reaches 1 on the last step: still a spike
    assert [a.tolist() for a in lif_spikes(last, rate, p)] == [[4], [1]] and _lif_reference(last, rate, p) == [(4, 1)]
