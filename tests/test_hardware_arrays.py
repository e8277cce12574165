"""Arrays: programming, refresh (each weight within half a pulse), drift compensation, quantized levels."""
from __future__ import annotations

import pytest
import torch

from osttp.errors import OsttpError
from osttp.hardware import (IdealArray, IdealDevice, PCMArray, PCMDevice, QuantizedArray, QuantizedDevice,
                            global_drift_compensation_factor, make_array)

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_weights(n: int, w_max: float, seed: int) -> torch.Tensor:
    return (torch.rand(n, generator=gen(seed), dtype=F64) * 2 - 1) * w_max


@pytest.mark.parametrize("n_pairs", [1, 3])
def test_initial_programming_within_half_a_pulse(n_pairs: int) -> None:
    dev = PCMDevice(n_pairs=n_pairs)
    w0 = random_weights(2000, 0.95, seed=n_pairs)
    arr = PCMArray(dev, w0, gen(1))
    assert arr.unconverged == 0
    assert float((arr.weight(read_noise=False) - w0).abs().max()) <= dev.pulse_weight / 2
    assert arr.total_pulses == 0 and arr.program_pulses > 0  # programming is not counted as updates
    assert arr.g_pos.shape == (n_pairs, 2000)


def test_deterministic_given_seed() -> None:
    w0 = random_weights(300, 0.5, seed=0)
    n = torch.randint(0, 4, (300,), generator=gen(9))
    reads = []
    for seed in (7, 7, 8):
        arr = PCMArray(PCMDevice(n_pairs=2), w0, gen(seed))
        arr.apply_pulses(n, n.flip(0))
        reads.append(arr.weight())
    assert torch.equal(reads[0], reads[1]) and not torch.equal(reads[0], reads[2])


def test_pulses_route_to_the_right_device_and_pairs_round_robin() -> None:
    dev = PCMDevice(n_pairs=2, write_noise=False)
    arr = PCMArray(dev, torch.zeros(4, dtype=F64), gen(0))
    arr.set_conductances(torch.full((2, 4), 1.0, dtype=F64), torch.full((2, 4), 1.0, dtype=F64))
    arr.apply_pulses(torch.tensor([1, 0, 2, 0]), torch.tensor([0, 1, 0, 0]))
    step = 0.880 - 0.084
    g_pos, g_neg = arr.conductances()
    assert torch.allclose(g_pos, torch.tensor([[1 + step, 1, 1 + step, 1], [1, 1, 1 + step, 1]], dtype=F64))
    assert torch.allclose(g_neg, torch.tensor([[1, 1 + step, 1, 1], [1, 1, 1, 1]], dtype=F64))
    w = arr.weight(read_noise=False)
    assert torch.allclose(w, dev.effective_alpha * step * torch.tensor([1, -1, 2, 0], dtype=F64))
    assert arr.pulse_count.tolist() == [1, 1, 2, 0] and arr.total_pulses == 4


def test_refresh_keeps_each_weight_within_half_a_pulse() -> None:
    """Bound: |W_after - W_before| <= α·ε/2 for every refreshed synapse whose weight the pair can hold
    (|W| <= α·n_pairs·(threshold - G_min) = w_max): the program-and-verify tolerance."""
    dev = PCMDevice()
    n = 3000
    arr = PCMArray(dev, random_weights(n, 0.8, seed=2), gen(2))
    g = gen(3)
    # Balanced pulse trains raise both devices (as training does) until many pass the 9 µS threshold
    # (apply_pulses never refreshes by itself).
    for _ in range(6):
        k = torch.randint(0, 4, (n,), generator=g)
        arr.apply_pulses(k + torch.randint(0, 2, (n,), generator=g), k + torch.randint(0, 2, (n,), generator=g))
    g_pos, g_neg = arr.conductances()
    over = ((g_pos > 9.0) | (g_neg > 9.0)).any(0)
    before = arr.weight(read_noise=False)
    holdable = before.abs() <= arr.max_holdable_weight
    assert int(over.sum()) > 300 and int((over & holdable).sum()) > 300
    refreshed = arr.refresh()
    after = arr.weight(read_noise=False)
    assert refreshed == int(over.sum()) == arr.refresh_count
    assert float((after - before)[over & holdable].abs().max()) <= dev.pulse_weight / 2
    assert torch.equal(after[~over], before[~over])  # untouched synapses unchanged
    g_pos, g_neg = arr.conductances()
    assert int(((g_pos > 9.0) | (g_neg > 9.0)).any(0).sum()) < 0.1 * int(over.sum())
    assert arr.refresh() < 0.1 * refreshed


def test_refresh_noop_and_disabled() -> None:
    arr = PCMArray(PCMDevice(), random_weights(100, 0.5, seed=4), gen(4))
    before = arr.weight(read_noise=False)
    assert arr.refresh() == 0 and torch.equal(arr.weight(read_noise=False), before)
    arr = PCMArray(PCMDevice(refresh=False), torch.zeros(10, dtype=F64), gen(4))
    arr.set_conductances(torch.full((1, 10), 10.0, dtype=F64), torch.full((1, 10), 0.1, dtype=F64))
    assert arr.refresh() == 0


def test_global_drift_compensation() -> None:
    dev = PCMDevice()
    w0 = random_weights(5000, 0.9, seed=5)
    arr = PCMArray(dev, w0, gen(5))
    programmed = arr.weight(read_noise=False)
    assert torch.equal(programmed, arr.programmed_weight())
    t = 1e6
    drifted = arr.weight(t, read_noise=False)
    raw = arr.weight(t, read_noise=True)
    comp = arr.weight(t, read_noise=True, drift_compensation=True)
    scale = float(programmed.abs().mean())
    err_drift = float((drifted - programmed).abs().mean()) / scale
    err_raw = float((raw - programmed).abs().mean()) / scale
    err_comp = float((comp - programmed).abs().mean()) / scale
    assert err_drift > 0.3  # 1 - 1e6^-0.04 ≈ 0.42
    assert err_comp < 0.15 and err_comp < err_raw / 3
    # Noise-free read: uniform drift is undone exactly.
    assert torch.allclose(arr.weight(t, read_noise=False, drift_compensation=True), programmed, rtol=1e-10)
    z = torch.zeros(3, dtype=F64)
    assert float(global_drift_compensation_factor(z, z)) == 1.0


def test_time_only_moves_forward() -> None:
    arr = PCMArray(PCMDevice(), torch.zeros(3, dtype=F64), gen())
    arr.set_time(10.0)
    with pytest.raises(OsttpError, match="time"):
        arr.set_time(5.0)
    with pytest.raises(OsttpError, match="time"):
        arr.weight(t=1.0)


def test_bad_pulse_counts() -> None:
    arr = PCMArray(PCMDevice(), torch.zeros(3, dtype=F64), gen())
    zero = torch.zeros(3, dtype=torch.long)
    with pytest.raises(OsttpError, match="shape"):
        arr.apply_pulses(torch.zeros(4, dtype=torch.long), zero)
    with pytest.raises(OsttpError, match="integer"):
        arr.apply_pulses(torch.zeros(3), zero)
    with pytest.raises(OsttpError, match=">= 0"):
        arr.apply_pulses(torch.tensor([0, -1, 0]), zero)


def test_quantized_array_levels_and_clipping() -> None:
    dev = QuantizedDevice(bits=3, w_max=1.5)  # levels -1.5, -1, ..., 1.5
    arr = make_array(dev, torch.tensor([0.2, 0.3, -0.74, 9.0], dtype=F64), gen())
    assert isinstance(arr, QuantizedArray)
    assert arr.weight().tolist() == [0.0, 0.5, -0.5, 1.5]
    arr.apply_pulses(torch.tensor([1, 0, 0, 5]), torch.tensor([0, 0, 9, 0]))
    assert arr.weight().tolist() == [0.5, 0.5, -1.5, 1.5]
    assert arr.pulse_weight == 0.5 and arr.total_pulses == 15


def test_ideal_array_is_exact() -> None:
    w0 = random_weights(10, 1.0, seed=6)
    arr = make_array(IdealDevice(), w0, gen())
    assert isinstance(arr, IdealArray)
    dw = random_weights(10, 1e-3, seed=7)
    arr.add(dw)
    assert torch.equal(arr.weight(t=1e9), w0 + dw)
    with pytest.raises(OsttpError, match="exactly"):
        arr.apply_pulses(torch.zeros(10, dtype=torch.long), torch.zeros(10, dtype=torch.long))
