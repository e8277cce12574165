"""The device registry: each device model with the array class that holds weights in it.

    DEVICES.register("rram", RRAMDevice, help="...", array=RRAMArray, scalable=True, options=("bits",))

An entry's factory is the device's frozen config dataclass (osttp.hardware.devices); its metadata:

    array      the `SynapseArray` subclass that stores a weight tensor in such devices
    scalable   whether the range w_max can be set per layer (auto_w_max); a device without a range cannot
    options    the dataclass fields an application lets its user set (by the same name), e.g. bits

Everything that builds devices or arrays (`get_device`, `make_array`, HardwareSynapses) reads the entry,
so registering one is the whole of adding a device (docs/architecture.md).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from osttp.errors import OsttpError
from osttp.hardware.arrays import IdealArray, QuantizedArray, SynapseArray
from osttp.hardware.devices import DeviceConfig, IdealDevice, PCMDevice, QuantizedDevice
from osttp.hardware.pcm_array import PCMArray
from osttp.registry import Entry, Registry

DEVICES: Registry[DeviceConfig] = Registry("device")
DEVICES.register("ideal", IdealDevice, help="exact weights, no pulses (a control)", array=IdealArray,
                 scalable=False, options=())
DEVICES.register("quantized", QuantizedDevice, help="n-bit multi-level cell, no noise, no drift",
                 array=QuantizedArray, scalable=True, options=("bits",))
DEVICES.register("pcm", PCMDevice, help="phase-change memory: noisy pulses, read noise, drift", array=PCMArray,
                 scalable=True, options=("n_pairs",))


def device_entry(config: object) -> Entry[DeviceConfig]:
    """The registry entry of a device config object; OsttpError for anything else."""
    name = getattr(type(config), "name", None)
    if not isinstance(name, str) or name not in DEVICES or not isinstance(config, DEVICES.get(name).factory):
        raise OsttpError(f"device: expected a device name ({', '.join(DEVICES)}) or one of their configs, "
                         f"got {config!r}")
    return DEVICES.get(name)


def get_device(name: str, **overrides: object) -> DeviceConfig:
    """The device model called `name` (DEVICES) with fields replaced by `overrides`.

    An unknown name or field raises OsttpError listing the valid ones; bad values raise OsttpError from
    the dataclass's validation."""
    cls = DEVICES.get(name).factory
    valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in overrides:
        if key not in valid:
            raise OsttpError(f"unknown parameter {key!r} for device {name!r}: expected one of "
                             f"{', '.join(valid) if valid else '(none)'}")
    return cls(**overrides)


def device_options(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of device `name` a user may set (its `options`), taken from `values` by name."""
    return {k: values[k] for k in DEVICES.get(name).meta.get("options", ())}


def make_array(config: DeviceConfig, initial_weight: Tensor, generator: torch.Generator,
               time: float = 0.0) -> SynapseArray:
    """The array class of `config`'s device entry, holding `initial_weight`."""
    array: type[SynapseArray] = device_entry(config).meta["array"]
    return array(config, initial_weight, generator, time)
