"""Update schemes: ΔW -> pulse counts; mixed precision loses no update mass."""
from __future__ import annotations

import pytest
import torch

from osttp.errors import OsttpError
from osttp.hardware import MixedPrecisionScheme, PCMArray, PCMDevice, SignScheme, StochasticScheme, get_scheme

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_get_scheme() -> None:
    assert isinstance(get_scheme("stochastic"), StochasticScheme)
    assert get_scheme("sign", threshold=0.1).threshold == 0.1
    assert isinstance(get_scheme("mixed-precision"), MixedPrecisionScheme)
    assert get_scheme("mixed-precision") is not get_scheme("mixed-precision")  # fresh state each time
    with pytest.raises(OsttpError, match="expected one of stochastic, sign, mixed-precision"):
        get_scheme("momentum")
    with pytest.raises(OsttpError, match="threshold"):
        get_scheme("sign", threshold=-1.0)
    with pytest.raises(OsttpError, match="bad options"):
        get_scheme("stochastic", threshold=1.0)


def test_stochastic_expectation() -> None:
    p = 0.1
    dw = torch.tensor([0.0, 0.03, -0.25, 0.1, -1.0], dtype=F64)
    reps = 20_000
    scheme = StochasticScheme()
    g = gen(1)
    total = torch.zeros(5, dtype=F64)
    sq = torch.zeros(5, dtype=F64)
    for _ in range(reps // 1000):  # batch the repetitions along a leading axis
        n_pos, n_neg = scheme.pulses(dw.expand(1000, 5), p, g)
        assert not ((n_pos > 0) & (n_neg > 0)).any()
        signed = (n_pos - n_neg).to(F64)
        total += signed.sum(0)
        sq += (signed ** 2).sum(0)
    mean = total / reps
    expected = dw / p
    # n is ⌊x⌋ or ⌊x⌋+1: variance f(1-f) with f the fractional part.
    frac = expected.abs() - expected.abs().floor()
    se = torch.sqrt(frac * (1 - frac) / reps).clamp(min=1e-12)
    assert ((mean - expected).abs() <= 3 * se + 1e-12).all()
    n_pos, n_neg = scheme.pulses(dw, p, g)
    assert n_pos[4] == 0 and n_neg[4] == 10 and n_pos[3] == 1 and n_neg[2] in (2, 3)


def test_sign_scheme() -> None:
    p = 0.1
    dw = torch.tensor([0.0, 0.04, 0.06, -0.06, -3.0], dtype=F64)
    n_pos, n_neg = SignScheme().pulses(dw, p)  # default threshold p/2 = 0.05
    assert n_pos.tolist() == [0, 0, 1, 0, 0] and n_neg.tolist() == [0, 0, 0, 1, 1]
    n_pos, n_neg = SignScheme(threshold=0.0).pulses(dw, p)
    assert n_pos.tolist() == [0, 1, 1, 0, 0] and n_neg.tolist() == [0, 0, 0, 1, 1]


def test_mixed_precision_bookkeeping_is_exact_on_a_noisy_device() -> None:
    """χ + p·Σ(n_pos - n_neg) = ΣΔW to float precision, with |χ| < p, on the default noisy PCM."""
    dev = PCMDevice()
    p = dev.pulse_weight
    n = 200
    arr = PCMArray(dev, torch.zeros(n, dtype=F64), gen(2))
    scheme = MixedPrecisionScheme()
    g = gen(3)
    requested = torch.zeros(n, dtype=F64)
    fired = torch.zeros(n, dtype=F64)
    count = 0
    for _ in range(150):
        dw = torch.randn(n, generator=g, dtype=F64) * 0.4 * p + 0.05 * p  # small steps, slow drift up
        requested += dw
        n_pos, n_neg = scheme.pulses(dw, p)
        fired += (n_pos - n_neg).to(F64)
        count += int((n_pos + n_neg).sum())
        arr.apply_pulses(n_pos, n_neg)
        arr.refresh()
    assert scheme.accumulator is not None
    assert float(scheme.accumulator.abs().max()) < p
    assert torch.allclose(scheme.accumulator + p * fired, requested, rtol=0, atol=1e-12)
    assert arr.total_pulses == count > 0


def test_mixed_precision_programmed_change_plus_accumulator_equals_requests() -> None:
    """On a device whose pulses add exactly ε (linear, noise-free, no drift, exact RESET), the programmed
    weight change plus the accumulator equals the sum of requests: no update mass is lost, refreshes
    included (every weight stays a multiple of α·ε, so refresh reprograms it exactly). Two pairs,
    so that the weights stay within what the pairs hold."""
    dev = PCMDevice(mu_slope=0.0, mu_intercept=0.75, write_noise=False, g0_rel_std=0.0, nu=0.0, n_pairs=2)
    p = dev.pulse_weight
    n = 300
    arr = PCMArray(dev, torch.zeros(n, dtype=F64), gen(4))
    w0 = arr.weight(read_noise=False)
    scheme = MixedPrecisionScheme()
    g = gen(5)
    requested = torch.zeros(n, dtype=F64)
    for _ in range(200):
        # Noisy steps pulled back towards 0 (like a gradient), so that the weights stay small while
        # both devices of every pair climb to the refresh threshold.
        dw = torch.randn(n, generator=g, dtype=F64) * 1.5 * p - 0.1 * requested
        requested += dw
        arr.apply_pulses(*scheme.pulses(dw, p))
        arr.refresh()
    assert arr.refresh_count > n  # refresh happened and had to preserve the mass too
    programmed = arr.weight(read_noise=False) - w0
    assert scheme.accumulator is not None
    assert torch.allclose(programmed + scheme.accumulator, requested, rtol=0, atol=1e-9)
    assert float((programmed + scheme.accumulator).abs().max()) < arr.max_holdable_weight


def test_scheme_rejects_bad_pulse_weight_and_shape_change() -> None:
    s = MixedPrecisionScheme()
    with pytest.raises(OsttpError, match="pulse_weight"):
        s.pulses(torch.zeros(3), 0.0)
    s.pulses(torch.zeros(3), 0.1)
    with pytest.raises(OsttpError, match="shape"):
        s.pulses(torch.zeros(4), 0.1)
