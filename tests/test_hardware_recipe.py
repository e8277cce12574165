"""The hardware recipe's knobs and what a hardware engineer reads off a run: the mixed-precision
threshold and pulse budget (against a scalar reference loop), per-layer range factors, pulse statistics
(against counts recomputed from the pulses fired) and conductance histograms."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import make_case

import osttp
from osttp.errors import OsttpError
from osttp.hardware import (HardwareSynapses, HardwareTraining, MixedPrecisionScheme, PCMArray, PCMDevice,
                            conductance_histograms, get_scheme, pulse_statistics)

F64 = torch.float64


def reference_pulses(chi: float, p: float, threshold: float, budget: int | None) -> tuple[int, float]:
    """The scheme written as a controller would run it, one pulse at a time: fire while the residue
    still reaches (threshold) pulses and the budget lasts."""
    n = 0
    while abs(chi) >= threshold * p - 1e-15 and (budget is None or n < budget):
        chi -= math.copysign(p, chi)
        n += 1
    return n, chi


@pytest.mark.parametrize("threshold,budget", [(1.0, None), (0.5, None), (2.0, None), (1.0, 2), (0.5, 1)])
def test_mixed_precision_threshold_and_budget_match_the_pulse_by_pulse_controller(threshold, budget) -> None:
    p = 0.1
    g = torch.Generator().manual_seed(0)
    scheme = MixedPrecisionScheme(threshold=threshold, max_pulses=budget)
    chi_ref = [0.0] * 50
    requested = torch.zeros(50, dtype=F64)
    fired = torch.zeros(50, dtype=F64)
    for _ in range(40):
        dw = torch.randn(50, generator=g, dtype=F64) * 0.25
        requested += dw
        n_pos, n_neg = scheme.pulses(dw, p)
        fired += (n_pos - n_neg).to(F64)
        for i in range(50):
            n, chi_ref[i] = reference_pulses(chi_ref[i] + float(dw[i]), p, threshold, budget)
            assert int(n_pos[i] + n_neg[i]) == n
            assert (n == 0) or (int(n_pos[i]) == n) == (float(n_pos[i] - n_neg[i]) > 0)
    assert scheme.accumulator is not None
    assert torch.allclose(scheme.accumulator, torch.tensor(chi_ref, dtype=F64), atol=1e-12)
    assert torch.allclose(scheme.accumulator + p * fired, requested, atol=1e-12)  # no mass lost
    if budget is None:  # the residue bound of each threshold (θ <= 1: |χ| < θ·p; θ > 1: the dead zone)
        assert float(scheme.accumulator.abs().max()) < max(threshold, 1.0) * p + 1e-12


def test_threshold_one_is_the_original_scheme_and_bad_options_are_refused() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = MixedPrecisionScheme(), get_scheme("mixed-precision", threshold=1.0)
    for _ in range(10):
        dw = torch.randn(30, generator=g, dtype=F64)
        chi = (a.accumulator if a.accumulator is not None else torch.zeros(30, dtype=F64)) + dw
        pa, pb = a.pulses(dw, 0.3), b.pulses(dw, 0.3)
        assert torch.equal(pa[0] + pa[1], torch.floor(chi.abs() / 0.3).long())
        assert torch.equal(pa[0], pb[0]) and torch.equal(pa[1], pb[1])
    for bad in ({"threshold": 0.0}, {"threshold": -1.0}, {"max_pulses": 0}, {"max_pulses": 1.5}):
        with pytest.raises(OsttpError, match="MixedPrecisionScheme"):
            get_scheme("mixed-precision", **bad)


def test_per_layer_range_factors() -> None:
    case = make_case("snu", [4, 8, 3], False, seed=0, T=6, B=2)
    params = {n: p for n, p in case.net.named_parameters() if p.dim() == 2}
    peaks = {n: float(p.detach().abs().max()) for n, p in params.items()}
    hw = HardwareSynapses(params, device="pcm", auto_w_max={"layers.0.W": 1.5, "readout.weight": 6.0})
    assert hw.devices["layers.0.W"].w_max == pytest.approx(1.5 * peaks["layers.0.W"])
    assert hw.devices["readout.weight"].w_max == pytest.approx(6.0 * peaks["readout.weight"])
    # the pulse weight follows the range and the pairs: alpha * eps = w_max * eps / (n_pairs (G_thr - G_min))
    params = {n: p for n, p in make_case("snu", [4, 8, 3], False, seed=0, T=6, B=2).net.named_parameters()
              if p.dim() == 2}  # fresh weights: building the arrays above replaced them by programmed ones
    hw4 = HardwareSynapses(params, device=PCMDevice(n_pairs=4), auto_w_max=2.0)
    for n in params:
        assert hw4.arrays[n].pulse_weight == pytest.approx(2.0 * peaks[n] * 0.75 / (4 * 8.9))
    with pytest.raises(OsttpError, match="missing"):  # a factor per matrix, none left to guess
        HardwareSynapses(params, device="pcm", auto_w_max={"layers.0.W": 1.5})
    with pytest.raises(OsttpError, match="auto_w_max"):
        HardwareSynapses(params, device="pcm", auto_w_max={"layers.0.W": 1.5, "readout.weight": 0.0})


def test_pulse_statistics_match_counts_recomputed_from_the_pulses_fired() -> None:
    case = make_case("snu", [4, 8, 3], False, seed=0, T=6, B=3)
    hw = HardwareTraining(case.net, device="pcm", lr=0.3, seed=0, auto_w_max=2.0)
    fired: dict[str, list[torch.Tensor]] = {n: [] for n in hw.hardware_names}
    for name, array in hw.synapses.arrays.items():  # record every update's pulses as the array sees them
        original = array.apply_pulses

        def spy(n_pos, n_neg, _orig=original, _name=name):
            fired[_name].append(n_pos + n_neg)
            _orig(n_pos, n_neg)
        array.apply_pulses = spy  # type: ignore[method-assign]
    learner = hw.wrap(osttp.make_learner("osttp", case.net, optimizer=hw.optimizer))
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        learner.reset(3)
        for t in range(6):
            learner.step(torch.rand(3, 4, generator=g, dtype=F64) * 2, torch.randint(0, 3, (3,), generator=g))
        learner.apply()
    stats = hw.pulse_counts()
    assert hw.samples == 15
    total_pulses, total_syn = 0, 0
    for name in hw.hardware_names:
        counts = torch.stack(fired[name])  # (updates, *shape)
        s, n = stats[name], counts[0].numel()
        assert s["update_steps"] == counts.shape[0] == 5
        assert s["pulses"] == int(counts.sum()) > 0
        assert s["per_synapse_per_sample"] == pytest.approx(int(counts.sum()) / (n * 15))
        assert s["fraction_ever_written"] == pytest.approx(float((counts.sum(0) > 0).double().mean()))
        assert s["fraction_written_per_update"] == pytest.approx(float((counts > 0).double().mean()))
        total_pulses, total_syn = total_pulses + int(counts.sum()), total_syn + n
    assert stats["total"]["per_synapse"] == pytest.approx(total_pulses / total_syn)
    assert stats["total"]["pulses"] == total_pulses
    with pytest.raises(OsttpError, match="samples"):
        pulse_statistics(hw.synapses, samples=-1)


def test_conductance_histograms_count_every_device() -> None:
    dev = PCMDevice(n_pairs=2)
    arr = PCMArray(dev, torch.linspace(-0.8, 0.8, 30, dtype=F64).reshape(5, 6), torch.Generator().manual_seed(0))
    h = conductance_histograms({"w": arr}, bins=10)["w"]
    assert len(h["edges"]) == 11 and h["edges"][0] == dev.g_min and h["edges"][-1] == dev.g_max
    g_pos, g_neg = arr.conductances(read_noise=False)
    for key, g in (("g_pos", g_pos), ("g_neg", g_neg)):
        assert sum(h[key]) == g.numel() == 60
        expected = [int(((g >= lo) & ((g < hi) if i < 9 else (g <= hi))).sum())
                    for i, (lo, hi) in enumerate(zip(h["edges"][:-1], h["edges"][1:]))]
        assert [int(c) for c in h[key]] == expected
    assert sum(h["g_pos"][1:]) > 0  # positive weights potentiated G+ above the RESET state


def test_drift_rows_read_the_class_with_the_decision_asked_for() -> None:
    """evaluate_drift passes `decision` on: its 1 s row (no drift yet, same seed) is evaluate's value with
    that decision, and "last" and "mean" really differ here (so the check can fail)."""
    import osttp.tasks
    from osttp.hardware import evaluate, evaluate_drift

    task = osttp.tasks.load("delayed-xor", "test", delay=2, n_test=256)
    net = osttp.Network.from_sizes([task.n_in, 16, task.n_out], cell="rnn", seed=3)
    hw = HardwareTraining(net, device="pcm", seed=0, auto_w_max=2.0)
    acc = {d: evaluate(net, hw, task, decision=d, seed=1)["accuracy"] for d in ("last", "mean")}
    assert acc["last"] != acc["mean"]
    for d in ("last", "mean"):
        rows = evaluate_drift(net, hw, task, times=[1.0], drift_compensation=[False], seed=1, decision=d)
        assert rows[0]["accuracy"] == acc[d]


def test_drift_compensation_calibration_is_not_biased_by_read_noise() -> None:
    """Without drift (t <= t0) the factor should be 1. One noisy calibration read biases Σ|W_read|
    upwards (negative control: the factor from a single read is clearly below 1); the averaged
    calibration (CALIBRATION_READS) removes most of it. After a month of drift the bias of a single read
    has grown (the signal shrank, the noise did not); the averaged one stays within 3 % of the exact
    (noise-free) factor."""
    from osttp.hardware.arrays import global_drift_compensation_factor
    from osttp.hardware.pcm_array import CALIBRATION_READS

    dev = PCMDevice(n_pairs=4)
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(4000, generator=g, dtype=F64) * 0.03  # small against the range, as a readout starts
    arr = PCMArray(dev, w0, torch.Generator().manual_seed(1))
    single = global_drift_compensation_factor(arr.weight(1.0, read_noise=True), arr.programmed_weight())
    averaged = arr.drift_compensation_factor(1.0)
    assert float(single) < 0.93
    assert abs(float(averaged) - 1.0) < 0.02 and CALIBRATION_READS == 64
    t = 2.592e6
    exact = global_drift_compensation_factor(arr.weight(t, read_noise=False), arr.programmed_weight())
    assert float(exact) > 1.5  # a month of drift
    assert abs(float(arr.drift_compensation_factor(t)) / float(exact) - 1.0) < 0.03
    one_read = global_drift_compensation_factor(arr.weight(t, read_noise=True), arr.programmed_weight())
    assert float(one_read) / float(exact) < 0.9
