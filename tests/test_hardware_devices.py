"""Device models: validation, names, and the PCM statistics of docs/math.md §6."""
from __future__ import annotations

import math

import pytest
import torch

from osttp.errors import OsttpError
from osttp.hardware import IdealDevice, PCMArray, PCMDevice, QuantizedDevice, get_device

N = 100_000  # samples per statistic
F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fresh_array(dev: PCMDevice, g: float, n: int = N, seed: int = 0) -> PCMArray:
    """n independent synapses with G⁺ = g exactly and G⁻ at G_min, programmed at the current time."""
    arr = PCMArray(dev, torch.zeros(n, dtype=F64), gen(seed))
    arr.set_conductances(torch.full((dev.n_pairs, n), g, dtype=F64),
                         torch.full((dev.n_pairs, n), dev.g_min, dtype=F64))
    return arr


# --- configuration ------------------------------------------------------------------------------------
def test_defaults_are_spec_values() -> None:
    d = PCMDevice()
    assert (d.g_min, d.g_max, d.g0, d.g0_rel_std) == (0.1, 12.0, 0.1, 0.1)
    assert (d.mu_slope, d.mu_intercept, d.sigma_slope, d.sigma_intercept) == (-0.084, 0.880, 0.091, 0.260)
    assert (d.read_noise_slope, d.read_noise_intercept, d.nu, d.t0) == (0.03, 0.13, 0.04, 1.0)
    assert (d.refresh_threshold, d.n_pairs, d.eps) == (9.0, 1, 0.75)
    assert d.effective_alpha == pytest.approx(1.0 / (9.0 - 0.1))
    assert d.pulse_weight == pytest.approx(0.75 / 8.9)
    assert d.saturation_conductance == pytest.approx(0.880 / 0.084)
    assert PCMDevice(alpha=0.5).effective_alpha == 0.5
    assert PCMDevice(n_pairs=2, w_max=2.0).effective_alpha == pytest.approx(2.0 / (2 * 8.9))
    q = QuantizedDevice(bits=3, w_max=1.5)
    assert q.max_level == 3 and q.level_step == pytest.approx(0.5)


@pytest.mark.parametrize("cls, field, value", [
    (PCMDevice, "g_max", 0.05), (PCMDevice, "g_min", -1.0), (PCMDevice, "g0", 20.0),
    (PCMDevice, "n_pairs", 0), (PCMDevice, "n_pairs", 1.5), (PCMDevice, "nu", -0.1),
    (PCMDevice, "t0", 0.0), (PCMDevice, "eps", 0.0), (PCMDevice, "alpha", -1.0),
    (PCMDevice, "refresh_threshold", 0.05), (PCMDevice, "write_noise", 1), (PCMDevice, "w_max", math.nan),
    (PCMDevice, "sigma_intercept", -1.0), (PCMDevice, "read_noise_slope", -1.0),
    (QuantizedDevice, "bits", 1), (QuantizedDevice, "bits", 4.0), (QuantizedDevice, "w_max", 0.0),
])
def test_bad_values_name_field_value_and_expectation(cls: type, field: str, value: object) -> None:
    with pytest.raises(OsttpError) as info:
        cls(**{field: value})
    msg = str(info.value)
    assert field in msg and repr(value) in msg and "expected" in msg


def test_get_device_names_overrides_and_errors() -> None:
    assert isinstance(get_device("ideal"), IdealDevice)
    assert get_device("quantized", bits=6).bits == 6
    assert get_device("pcm", nu=0.05, n_pairs=2) == PCMDevice(nu=0.05, n_pairs=2)
    with pytest.raises(OsttpError, match="ideal, quantized, pcm"):
        get_device("rram")
    with pytest.raises(OsttpError, match="g_minimum"):
        get_device("pcm", g_minimum=0.2)
    with pytest.raises(OsttpError, match="bits"):
        get_device("quantized", bits=0)


def test_equations() -> None:
    d = PCMDevice()
    g = torch.tensor([0.1, 2.0, 8.0, 10.5, 12.0], dtype=F64)
    assert torch.allclose(d.mean_increment(g), torch.clamp(-0.084 * g + 0.880, min=0.0))
    assert d.mean_increment(g)[-2:].eq(0).all()
    assert torch.allclose(d.increment_std(g), 0.091 * g + 0.260)
    assert torch.allclose(d.read_noise_std(g), 0.03 * g + 0.13)
    dt = torch.tensor([0.0, 0.5, 1.0, 10.0, 1e6], dtype=F64)
    assert torch.allclose(d.drift_factor(dt), torch.tensor([1.0, 1.0, 1.0, 10.0 ** -0.04, 1e6 ** -0.04],
                                                           dtype=F64))
    g_init = d.initial_conductance((N,), gen(), F64)
    assert g_init.min() >= d.g_min and g_init.max() <= d.g_max
    # N(0.1, 0.01) clipped at 0.1: half the devices sit at G_min, the rest are the upper half-normal.
    assert float((g_init == d.g_min).double().mean()) == pytest.approx(0.5, abs=0.01)
    assert float(g_init.mean()) == pytest.approx(0.1 + 0.01 / math.sqrt(2 * math.pi), abs=1e-3)


# --- programming statistics ------------------------------------------------------------------------
@pytest.mark.parametrize("g", [0.5, 2.0, 5.0, 8.0])
def test_set_increment_mean_and_std_match_model(g: float) -> None:
    dev = PCMDevice()
    arr = fresh_array(dev, g, seed=int(g * 10))
    arr.apply_pulses(torch.ones(N, dtype=torch.long), torch.zeros(N, dtype=torch.long))
    inc = arr.conductances()[0][0] - g
    mu = float(dev.mean_increment(torch.tensor(g)))
    sigma = float(dev.increment_std(torch.tensor(g)))
    se_mean = sigma / math.sqrt(N)
    se_std = sigma / math.sqrt(2 * (N - 1))
    assert abs(float(inc.mean()) - mu) < 3 * se_mean
    assert abs(float(inc.std()) - sigma) < 3 * se_std
    assert int(arr.total_pulses) == N


def test_increment_vanishes_near_saturation() -> None:
    dev = PCMDevice()
    mu_max = float(dev.mean_increment(torch.tensor(dev.g_min)))
    for g in (10.0, 10.4):  # just below G_sat: μ small, σ ≈ 1.2 µS, clipped at G_max
        arr = fresh_array(dev, g)
        arr.apply_pulses(torch.ones(N, dtype=torch.long), torch.zeros(N, dtype=torch.long))
        assert abs(float((arr.conductances()[0][0] - g).mean())) < 0.1 * mu_max
    for g in (10.5, 11.0, 11.9, 12.0):  # at or above G_sat: fully SET, pulses change nothing
        arr = fresh_array(dev, g, n=1000)
        arr.apply_pulses(torch.full((1000,), 3, dtype=torch.long), torch.zeros(1000, dtype=torch.long))
        assert torch.equal(arr.conductances()[0][0], torch.full((1000,), g, dtype=F64))


def test_conductance_stays_in_range_over_long_pulse_trains() -> None:
    dev = PCMDevice(refresh=False)
    n = 2000
    arr = PCMArray(dev, torch.zeros(n, dtype=F64), gen(3))
    g = torch.Generator().manual_seed(4)
    for _ in range(20):  # 20 bursts of up to 30 pulses on either device: ~300 pulses per device
        arr.apply_pulses(torch.randint(0, 30, (n,), generator=g), torch.randint(0, 30, (n,), generator=g))
        for cond in arr.conductances():
            assert cond.min() >= dev.g_min and cond.max() <= dev.g_max
    g_pos, g_neg = arr.conductances()
    assert float(g_pos.mean()) > 9.0 and float(g_neg.mean()) > 9.0  # the trains did reach saturation


# --- drift and read noise ---------------------------------------------------------------------------
def test_drift_follows_power_law() -> None:
    dev = PCMDevice()
    arr = PCMArray(dev, torch.zeros(500, dtype=F64), gen(5))
    arr.set_time(5.0)  # programming time t_p = 5 s
    g0 = torch.linspace(0.5, 11.0, 500, dtype=F64)
    arr.set_conductances(g0.unsqueeze(0), torch.full((1, 500), dev.g_min, dtype=F64))
    for t in (6.0, 15.0, 105.0, 1e4, 1e6):
        ratio = arr.conductances(t)[0][0] / g0
        expected = ((t - 5.0) / dev.t0) ** (-dev.nu)
        assert torch.allclose(ratio, torch.full_like(ratio, expected), rtol=1e-12, atol=0)
    # A pulse starts from the drifted value and restarts the device's drift clock.
    quiet = PCMDevice(write_noise=False)
    arr = PCMArray(quiet, torch.zeros(3, dtype=F64), gen(6))
    arr.set_conductances(torch.full((1, 3), 2.0, dtype=F64), torch.full((1, 3), 0.1, dtype=F64))
    arr.set_time(100.0)
    drifted = 2.0 * 100.0 ** -0.04
    arr.apply_pulses(torch.ones(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    after = drifted + (-0.084 * drifted + 0.880)
    assert torch.allclose(arr.conductances()[0][0], torch.full((3,), after, dtype=F64), rtol=1e-12)
    assert torch.allclose(arr.conductances(110.0)[0][0], torch.full((3,), after * 10.0 ** -0.04, dtype=F64),
                          rtol=1e-12)


@pytest.mark.parametrize("g", [1.0, 5.0, 10.0])
def test_read_noise_has_specified_std(g: float) -> None:
    dev = PCMDevice()
    reads_per_device, n_dev = 1000, 100  # 10^5 reads of 100 devices
    arr = fresh_array(dev, g, n=n_dev)
    reads = torch.stack([arr.conductances(read_noise=True)[0][0] for _ in range(reads_per_device)])
    noise = (reads - g).flatten()
    sigma = float(dev.read_noise_std(torch.tensor(g)))
    n = noise.numel()
    assert abs(float(noise.mean())) < 3 * sigma / math.sqrt(n)
    assert abs(float(noise.std()) - sigma) < 3 * sigma / math.sqrt(2 * (n - 1))
    # Reads do not disturb the device.
    assert torch.equal(arr.conductances()[0][0], torch.full((n_dev,), g, dtype=F64))
