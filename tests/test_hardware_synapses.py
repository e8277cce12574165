"""HardwareSynapses, the optimizer that programs devices: ideal == SGD, PCM training, determinism, options."""
from __future__ import annotations

import pytest
import torch

from osttp.errors import OsttpError
from osttp.hardware import HardwareSynapses, PCMDevice, QuantizedDevice

F64 = torch.float64


def make_params(seed: int = 0, scale: float = 0.3) -> dict[str, torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"layers.0.W": (7, 5), "layers.0.H": (7, 7), "readout.weight": (3, 7), "readout.bias": (3,)}
    return {k: torch.nn.Parameter((torch.rand(s, generator=g, dtype=F64) * 2 - 1) * scale)
            for k, s in shapes.items()}


def test_ideal_device_reproduces_sgd_exactly() -> None:
    hw_params, ref_params = make_params(1), make_params(1)
    hw = HardwareSynapses(hw_params, device="ideal", scheme="stochastic", lr=0.05, seed=3)
    sgd = torch.optim.SGD(list(ref_params.values()), lr=0.05)
    g = torch.Generator().manual_seed(2)
    for step in range(30):
        if step == 15:  # an LR schedule acts on param_groups, as with any optimizer
            hw.param_groups[0]["lr"] = sgd.param_groups[0]["lr"] = 0.01
        for name in hw_params:
            grad = torch.randn(hw_params[name].shape, generator=g, dtype=F64)
            skip = step % 7 == 3 and name == "readout.bias"  # parameters without a grad are left alone
            hw_params[name].grad = None if skip else grad.clone()
            ref_params[name].grad = None if skip else grad.clone()
        hw.step()
        sgd.step()
    for name in hw_params:
        ref = ref_params[name].detach()
        assert float((hw_params[name].detach() - ref).abs().max()) <= 1e-12
        assert float((hw.read_weights(t=1e6)[name] - ref).abs().max()) <= 1e-12
    assert hw.total_pulses() == 0


def test_pcm_initial_weights_programmed_and_written_back() -> None:
    params = make_params(4)
    init = {k: p.detach().clone() for k, p in params.items()}
    hw = HardwareSynapses(params, device=PCMDevice(), scheme="mixed-precision", lr=0.1, seed=0)
    pw = PCMDevice().pulse_weight
    for name, p in params.items():
        assert float((p.detach() - init[name]).abs().max()) <= pw / 2
        assert torch.equal(p.detach(), hw.read_weights(read_noise=False)[name])
    assert all(s["unconverged"] == 0 and s["update_pulses"] == 0 for s in hw.stats().values())


@pytest.mark.parametrize("scheme", ["stochastic", "sign", "mixed-precision"])
def test_pcm_training_reaches_a_target(scheme: str) -> None:
    """Minimise ½‖W - W*‖² with grad = W - W*: every scheme ends within one pulse of W* on average. (lr = 1:
    the sign scheme's dead zone is |grad| <= α·ε/(2·lr), half a pulse here.)"""
    params = {"w": torch.nn.Parameter(torch.zeros(6, 8, dtype=F64))}
    target = (torch.rand(6, 8, generator=torch.Generator().manual_seed(5), dtype=F64) * 2 - 1) * 0.6
    hw = HardwareSynapses(params, device="pcm", scheme=scheme, lr=1.0, seed=1)
    start = float((params["w"].detach() - target).abs().mean())
    for _ in range(60):
        params["w"].grad = params["w"].detach() - target
        hw.step()
        hw.zero_grad()
    err = float((params["w"].detach() - target).abs().mean())
    assert err < 0.25 * start and err < PCMDevice().pulse_weight
    counts = hw.pulse_counts()["w"]
    assert counts.shape == (6, 8) and int(counts.sum()) == hw.total_pulses() > 0


def test_quantized_mixed_precision_keeps_update_mass() -> None:
    dev = QuantizedDevice(bits=8, w_max=1.0)
    params = {"w": torch.nn.Parameter(torch.zeros(50, dtype=F64))}
    hw = HardwareSynapses(params, device=dev, scheme="mixed-precision", lr=1.0, seed=0)
    g = torch.Generator().manual_seed(6)
    requested = torch.zeros(50, dtype=F64)
    for _ in range(100):
        grad = torch.randn(50, generator=g, dtype=F64) * 0.01
        requested -= grad
        params["w"].grad = grad
        hw.step()
    levels = params["w"].detach() / dev.level_step
    assert torch.allclose(levels, levels.round(), atol=1e-9)
    chi = hw.schemes["w"].accumulator
    assert torch.allclose(params["w"].detach() + chi, requested, atol=1e-12)


def test_deterministic_given_seed_and_reads() -> None:
    results = []
    for seed in (11, 11, 12):
        params = make_params(7)
        hw = HardwareSynapses(params, device="pcm", scheme="stochastic", lr=0.2, seed=seed)
        g = torch.Generator().manual_seed(8)
        for _ in range(5):
            for p in params.values():
                p.grad = torch.randn(p.shape, generator=g, dtype=F64)
            hw.step()
        hw.set_time(1000.0)
        assert hw.time == 1000.0
        nominal = {k: p.detach().clone() for k, p in params.items()}
        hw.load_read_weights()
        noisy = {k: p.detach().clone() for k, p in params.items()}
        assert all(not torch.equal(nominal[k], noisy[k]) for k in params)
        results.append(torch.cat([v.flatten() for v in noisy.values()]))
    assert torch.equal(results[0], results[1]) and not torch.equal(results[0], results[2])


def test_drift_compensation_option() -> None:
    params = make_params(9, scale=0.8)
    hw = HardwareSynapses(params, device="pcm", lr=0.1, seed=0, drift_compensation=True)
    programmed = {k: p.detach().clone() for k, p in params.items()}
    hw.set_time(1e5)
    raw = hw.read_weights(read_noise=False, drift_compensation=False)
    comp = hw.read_weights(read_noise=False)
    for k in params:
        assert torch.allclose(comp[k], programmed[k], rtol=1e-9, atol=1e-12)
        assert not torch.allclose(raw[k], programmed[k], rtol=0.05)


def test_auto_w_max_scales_each_parameter() -> None:
    params = make_params(10)
    params["readout.weight"].data *= 10
    hw = HardwareSynapses(params, device="pcm", lr=0.1, seed=0, auto_w_max=1.5)
    for name, p in params.items():
        assert hw.devices[name].w_max == pytest.approx(1.5 * float(p.detach().abs().max()), rel=0.2)
    with pytest.raises(OsttpError, match="auto_w_max"):
        HardwareSynapses(make_params(), device=PCMDevice(alpha=0.1), auto_w_max=1.5)


def test_bad_arguments() -> None:
    with pytest.raises(OsttpError, match="params"):
        HardwareSynapses({}, device="pcm")
    with pytest.raises(OsttpError, match="lr"):
        HardwareSynapses(make_params(), lr=-1.0)
    with pytest.raises(OsttpError, match="ideal, quantized, pcm"):
        HardwareSynapses(make_params(), device="flash")
    with pytest.raises(OsttpError, match="update scheme"):
        HardwareSynapses(make_params(), scheme="adam")
    hw = HardwareSynapses(make_params(), device="quantized")
    hw.set_time(5.0)
    with pytest.raises(OsttpError, match="time"):
        hw.set_time(1.0)
