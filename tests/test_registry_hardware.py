"""Generic suites over DEVICES and SCHEMES: every registered device and update scheme goes through the
hardware invariants the moment it exists.

    device   its entry builds the config it names and declares an array class, a range flag and options
             that are fields of the config; the array holds the initial weights (within a pulse),
             keeps time forward only, is deterministic given its seed, round-trips its state; pulses
             move the mean weight their way and are counted; training through HardwareSynapses
             moves the weights against the gradient
    scheme   fresh state per build; pulse counts are non-negative integers of the request's shape, in
             the request's direction, none for no request, at least one for a request of several
             pulses; its state round-trips

The last tests register a toy device and a toy scheme from inside the test and run the suites on them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from osttp.errors import OsttpError
from osttp.hardware import DEVICES, SCHEMES, HardwareSynapses, SynapseArray, get_device, get_scheme, make_array
from osttp.hardware.arrays import QuantizedArray
from osttp.hardware.devices import QuantizedDevice
from osttp.hardware.catalog import device_entry
from osttp.hardware.schemes import StochasticScheme, _check_pulse_weight
from test_registry_signals import registered

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def initial_weights(w_max: float) -> torch.Tensor:
    return (torch.rand(64, 16, generator=gen(7), dtype=F64) - 0.5) * w_max  # within half the range


def run_device_suite(name: str) -> None:
    entry = DEVICES.get(name)
    config = get_device(name)
    assert isinstance(config, entry.factory) and device_entry(config) is entry
    assert issubclass(entry.meta["array"], SynapseArray) and isinstance(entry.meta["scalable"], bool)
    fields = {f.name for f in dataclasses.fields(config)}
    assert set(entry.meta.get("options", ())) <= fields, (name, entry.meta.get("options"))
    w0 = initial_weights(getattr(config, "w_max", 1.0))
    arr = make_array(config, w0, gen())
    assert isinstance(arr, entry.meta["array"]) and arr.shape == w0.shape
    w = arr.weight(read_noise=False)
    assert w.shape == w0.shape and w.dtype == F64
    tol = 1e-12 if arr.exact_write else arr.pulse_weight
    assert float((w - w0).abs().max()) <= tol, name
    again = make_array(config, w0, gen())
    assert torch.equal(again.weight(generator=gen(1)), arr.weight(generator=gen(1)))  # deterministic
    arr.set_time(2.0)
    with pytest.raises(OsttpError, match="time"):
        arr.set_time(1.0)
    if not arr.exact_write:
        _check_pulses(arr)
    state = arr.state_dict()
    fresh = make_array(config, torch.zeros_like(w0), gen(3))
    fresh.load_state_dict(state)
    assert torch.equal(fresh.weight(read_noise=False), arr.weight(read_noise=False)) and fresh.time == arr.time
    _check_training(name, arr.pulse_weight)


def _check_pulses(arr: SynapseArray) -> None:
    before = arr.weight(read_noise=False)
    three, zero = torch.full(arr.shape, 3, dtype=torch.long), torch.zeros(arr.shape, dtype=torch.long)
    arr.apply_pulses(three, zero)
    up = arr.weight(read_noise=False)
    assert float((up - before).mean()) > 0 and arr.total_pulses == 3 * arr.shape.numel()
    arr.apply_pulses(zero, three)
    assert float((arr.weight(read_noise=False) - up).mean()) < 0 and arr.total_pulses == 6 * arr.shape.numel()
    with pytest.raises(OsttpError, match="n_pos"):
        arr.apply_pulses(-three, zero)


def _check_training(name: str, pulse_weight: float) -> None:
    """Ten SGD steps with a constant positive gradient (three pulses' worth in all) lower the weights on
    average."""
    p = torch.nn.Parameter(initial_weights(0.5))
    w0 = p.detach().clone()
    hw = HardwareSynapses({"w": p}, device=name, lr=0.3 * pulse_weight or 0.02, seed=0)
    for _ in range(10):
        p.grad = torch.ones_like(p)
        hw.step()
    assert float((p.detach() - w0).mean()) < 0, name


def run_scheme_suite(name: str) -> None:
    a, b = get_scheme(name), get_scheme(name)
    assert a is not b and type(a) is SCHEMES.get(name).factory
    p = 0.1
    delta = torch.tensor([[0.35, -0.35, 0.0], [1.0, -1.0, 0.0]], dtype=F64)
    n_pos, n_neg = a.pulses(delta, p, gen())
    for n in (n_pos, n_neg):
        assert n.dtype == torch.long and n.shape == delta.shape and int(n.min()) >= 0
    assert int(n_pos[delta <= 0].sum()) == 0 and int(n_neg[delta >= 0].sum()) == 0, name
    assert bool((n_pos[delta > 0] >= 1).all()) and bool((n_neg[delta < 0] >= 1).all()), name
    state = a.state_dict()
    c = get_scheme(name)
    c.load_state_dict(state)
    nxt = [s.pulses(delta, p, gen(5)) for s in (a, c)]
    assert all(torch.equal(x, y) for x, y in zip(nxt[0], nxt[1])), name
    with pytest.raises(OsttpError, match="pulse_weight"):
        get_scheme(name).pulses(delta, 0.0, gen())


@pytest.mark.parametrize("device", DEVICES.names())
def test_every_registered_device(device: str) -> None:
    run_device_suite(device)


@pytest.mark.parametrize("scheme", SCHEMES.names())
def test_every_registered_scheme(scheme: str) -> None:
    run_scheme_suite(scheme)


# --------------------------------------------------------------------------------------- toys


@dataclass(frozen=True)
class TernaryDevice:
    """Three levels -w_max, 0, w_max: the quantized device at its coarsest, a device of its own name."""

    w_max: float = 1.0
    name: ClassVar[str] = "toy-ternary"
    max_level: ClassVar[int] = 1

    @property
    def level_step(self) -> float:
        return self.w_max

    @property
    def pulse_weight(self) -> float:
        return self.w_max


class RoundScheme(StochasticScheme):
    """n = ceil(|dW| / p - 1/2): the nearest whole number of pulses, no randomness."""

    name: ClassVar[str] = "toy-round"

    def pulses(self, delta_w, pulse_weight, generator=None):
        n = torch.ceil(delta_w.abs() / _check_pulse_weight(pulse_weight) - 0.5).clamp(min=0).to(torch.long)
        return torch.where(delta_w > 0, n, 0), torch.where(delta_w < 0, n, 0)


def test_a_toy_device_and_scheme_registered_here_are_picked_up_by_the_generic_suites() -> None:
    with registered(DEVICES, TernaryDevice.name, TernaryDevice, array=QuantizedArray, scalable=True, options=()):
        assert TernaryDevice.name in DEVICES.names()
        run_device_suite(TernaryDevice.name)
    with registered(SCHEMES, RoundScheme.name, RoundScheme):
        run_scheme_suite(RoundScheme.name)
        p = torch.nn.Parameter(initial_weights(0.5))
        HardwareSynapses({"w": p}, device="quantized", scheme=RoundScheme.name, lr=0.02, seed=0).step()


@dataclass(frozen=True)
class ForgetfulDevice(QuantizedDevice):
    name: ClassVar[str] = "toy-forgetful"


class ForgetfulArray(QuantizedArray):
    """Programs zeros whatever the initial weights: what the suite must catch."""

    def __init__(self, config, initial_weight, generator=None, time=0.0) -> None:
        super().__init__(config, torch.zeros_like(initial_weight), generator, time)


def test_the_device_suite_rejects_an_array_that_loses_the_initial_weights() -> None:
    with registered(DEVICES, ForgetfulDevice.name, ForgetfulDevice, array=ForgetfulArray, scalable=True,
                    options=("bits",)):
        with pytest.raises(AssertionError):
            run_device_suite(ForgetfulDevice.name)
