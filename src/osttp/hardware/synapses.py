"""`HardwareSynapses`: a torch optimizer that programs simulated devices instead of adding -lr·grad.

Usage (the training loop keeps its usual optimizer calls)::

    hw = HardwareSynapses(dict(net.named_parameters()), device="pcm", scheme="mixed-precision",
                          lr=1e-3, seed=0)
    hw.load_read_weights()      # noisy, drifted read into param.data before a forward pass
    ...                         # forward, rule writes .grad
    hw.step()                   # ΔW = -lr·grad -> pulses -> devices; param.data = programmed weight
    hw.zero_grad()
    hw.set_time(t)              # advance simulated time (s) for drift

The arrays (`hw.arrays[name]`) are the source of truth: `step` overwrites `param.data` with the
programmed, noise-free weight at the current time, so edits to `param.data` are not kept. Parameters
that should stay digital (biases, leaks) are simply not passed here; train them with another optimizer.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from osttp.hardware import _checks
from osttp.hardware.arrays import SynapseArray
from osttp.hardware.catalog import device_entry, get_device, make_array
from osttp.hardware.devices import DeviceConfig
from osttp.hardware.schemes import UpdateScheme, get_scheme


def _range_factors(params: Mapping[str, torch.nn.Parameter],
                   auto_w_max: float | Mapping[str, float] | None) -> dict[str, float] | None:
    """auto_w_max as one range factor per parameter name (None: no per-layer scaling)."""
    own = "HardwareSynapses"
    if auto_w_max is None:
        return None
    if isinstance(auto_w_max, Mapping):
        missing = [n for n in params if n not in auto_w_max]
        extra = [n for n in auto_w_max if n not in params]
        if missing or extra:
            raise _checks.fail(own, "auto_w_max", dict(auto_w_max),
                               f"a factor for exactly the parameters {list(params)} (missing {missing}, "
                               f"unknown {extra})")
        return {n: _checks.number(own, f"auto_w_max[{n!r}]", auto_w_max[n], gt=0.0) for n in params}
    k = _checks.number(own, "auto_w_max", auto_w_max, gt=0.0)
    return {n: k for n in params}


class HardwareSynapses(torch.optim.Optimizer):
    """Plain SGD whose writes go through device models, one `SynapseArray` per parameter.

    Parameters
    ----------
    params:
        name -> parameter, e.g. ``dict(net.named_parameters())`` filtered to the weights to put in
        hardware (names like ``layers.0.W``, ``readout.weight``).
    device:
        A device config (`IdealDevice`, `QuantizedDevice`, `PCMDevice`) or its name for `get_device`.
    scheme:
        "stochastic", "sign" or "mixed-precision" (ignored by the ideal device, which writes ΔW exactly).
    lr:
        Learning rate (>= 0); ΔW = -lr·grad. Read from ``param_groups[0]["lr"]`` at each step, so torch
        LR schedulers work.
    seed:
        Seeds the one `torch.Generator` used for initial programming, pulses, stochastic rounding and
        read noise (arrays are built in the order of `params`).
    scheme_options:
        Keyword arguments for the scheme (e.g. ``{"threshold": 0.01}`` for "sign").
    drift_compensation:
        Default for reads (`read_weights`, `load_read_weights`) and the write-back in `step`: scale
        each array's weights by its global drift-compensation factor.
    auto_w_max:
        If given, each parameter gets its own range w_max = k · max|initial weight| (per-layer weight
        scaling; needs a device with w_max and no explicit PCM alpha), with k = auto_w_max, or
        auto_w_max[name] when it is a mapping name -> k covering every parameter (e.g. a wider range for
        a readout whose weights grow far beyond their initial scale). None: device.w_max for all.
    """

    def __init__(self, params: Mapping[str, torch.nn.Parameter], device: DeviceConfig | str = "pcm",
                 scheme: str = "mixed-precision", lr: float = 1e-3, seed: int = 0, *,
                 scheme_options: Mapping[str, Any] | None = None, drift_compensation: bool = False,
                 auto_w_max: float | Mapping[str, float] | None = None) -> None:
        own = "HardwareSynapses"
        if not isinstance(params, Mapping) or len(params) == 0:
            raise _checks.fail(own, "params", type(params).__name__, "a non-empty mapping name -> Parameter")
        for name, p in params.items():
            if not isinstance(p, torch.Tensor) or not p.dtype.is_floating_point:
                raise _checks.fail(own, f"params[{name!r}]", type(p).__name__, "a floating-point Parameter")
        lr = _checks.number(own, "lr", lr, ge=0.0)
        seed = _checks.integer(own, "seed", seed)
        self.drift_compensation = _checks.boolean(own, "drift_compensation", drift_compensation)
        factors = _range_factors(params, auto_w_max)
        config = get_device(device) if isinstance(device, str) else device
        entry = device_entry(config)
        if auto_w_max is not None and getattr(config, "alpha", None) is not None:
            raise _checks.fail(own, "auto_w_max", auto_w_max, "None when the PCMDevice has an explicit alpha")
        super().__init__(list(params.values()), {"lr": lr})
        self.params: dict[str, torch.nn.Parameter] = dict(params)
        first = next(iter(params.values()))
        self.generator = torch.Generator(device=first.device).manual_seed(seed)
        self.devices: dict[str, DeviceConfig] = {}
        self.arrays: dict[str, SynapseArray] = {}
        self.schemes: dict[str, UpdateScheme] = {}
        with torch.no_grad():
            for name, p in self.params.items():
                cfg = config
                if factors is not None and entry.meta["scalable"]:
                    peak = float(p.detach().abs().max()) if p.numel() else 0.0
                    if peak > 0:
                        cfg = dataclasses.replace(config, w_max=factors[name] * peak)
                self.devices[name] = cfg
                self.arrays[name] = make_array(cfg, p.detach(), self.generator)
                self.schemes[name] = get_scheme(scheme, **dict(scheme_options or {}))
                # From now on the parameter shows what the devices hold.
                p.data.copy_(self.arrays[name].weight(read_noise=False, drift_compensation=False))

    @property
    def time(self) -> float:
        """Current simulated time (s)."""
        return next(iter(self.arrays.values())).time

    def set_time(self, t: float) -> None:
        """Advance simulated time to t (s) on every array; drift is measured from each device's t_p."""
        for array in self.arrays.values():
            array.set_time(t)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Program ΔW = -lr·grad into each parameter's devices, refresh, write the weight back."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lr = self.param_groups[0]["lr"]
        for name, p in self.params.items():
            if p.grad is None:
                continue
            array = self.arrays[name]
            delta_w = p.grad.detach() * (-lr)
            if array.exact_write:
                array.add(delta_w)
            else:
                n_pos, n_neg = self.schemes[name].pulses(delta_w, array.pulse_weight, self.generator)
                array.apply_pulses(n_pos, n_neg)
                array.refresh()
            p.data.copy_(array.weight(read_noise=False, drift_compensation=self.drift_compensation))
        return loss

    def read_weights(self, t: float | None = None, read_noise: bool = True,
                     drift_compensation: bool | None = None,
                     generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One read of every array at time t (default now): noisy and drifted unless told otherwise;
        drift_compensation None uses the constructor's setting; `generator` draws the read noise
        (default: the optimizer's own stream)."""
        comp = self.drift_compensation if drift_compensation is None else drift_compensation
        gen = self.generator if generator is None else generator
        return {name: a.weight(t, read_noise=read_noise, drift_compensation=comp, generator=gen)
                for name, a in self.arrays.items()}

    @torch.no_grad()
    def load_read_weights(self, t: float | None = None, read_noise: bool = True,
                          drift_compensation: bool | None = None,
                          generator: torch.Generator | None = None) -> None:
        """Copy `read_weights(...)` into param.data, for a forward pass that should see the hardware."""
        for name, w in self.read_weights(t, read_noise, drift_compensation, generator).items():
            self.params[name].data.copy_(w)

    def pulse_counts(self) -> dict[str, Tensor]:
        """Update pulses fired so far per synapse (long tensor of the parameter's shape), per parameter."""
        return {name: a.pulse_count.clone() for name, a in self.arrays.items()}

    def stats(self) -> dict[str, dict[str, int]]:
        """Per parameter: update_pulses, program_pulses (initial + refresh), refreshes, unconverged."""
        return {name: a.stats() for name, a in self.arrays.items()}

    def total_pulses(self) -> int:
        """Update pulses fired so far over all parameters."""
        return sum(a.total_pulses for a in self.arrays.values())

