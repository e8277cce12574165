"""Config rules that involve several keys, checked after the layers are merged (config.resolve):
momentum only where the optimizer takes it; simulated synapses trained by plain SGD at one learning
rate, with final weights and device options the device accepts; a known run.device."""
from __future__ import annotations

import re
from typing import Any, Mapping

from osttp import checks
from osttp.errors import OsttpError
from osttp.experiment.backend import on_devices
from osttp.experiment.optimizers import OPTIMIZERS, plain_sgd_name
from osttp.hardware import device_options, get_device

W_RANGE_MIN = 1e-3  # hardware.w_range: smallest per-layer range factor accepted (besides 0)


def hardware_optimizer(cfg: dict[str, Any], layers: list[tuple[dict[str, Any], str]]) -> None:
    """Simulated synapses are trained by plain SGD through the devices (HardwareTraining's optimizer),
    so train.optimizer becomes the plain-SGD entry of OPTIMIZERS; a layer that explicitly asks for another
    (the last one to set the key) is refused rather than silently ignored. The default is replaced
    without a word."""
    synapse = cfg["hardware"]["synapse"]
    if not on_devices(synapse):
        return
    sgd = plain_sgd_name()
    setters = [(p["train"]["optimizer"], src) for p, src in layers if "optimizer" in p.get("train", {})]
    if setters and setters[-1][0] != sgd:
        opt, src = setters[-1]
        raise OsttpError(f"{src + ': ' if src else ''}train.optimizer = {checks.show(opt)} cannot be used with "
                         f"hardware.synapse = {checks.show(synapse)}: simulated synapses are trained by plain SGD "
                         f"through the devices; use --optimizer {sgd} or leave the optimizer unset")
    cfg["train"]["optimizer"] = sgd


def check_consistency(cfg: Mapping[str, Any]) -> None:
    """Rules that involve several keys."""
    tr = cfg["train"]
    if not OPTIMIZERS.get(tr["optimizer"]).meta["momentum"] and tr["momentum"] != 0.0:
        takes = ", ".join(e.name for e in OPTIMIZERS.entries() if e.meta["momentum"])
        raise OsttpError(f"config key train.momentum = {tr['momentum']} applies only to optimizer {takes}, "
                         f"not {tr['optimizer']}")
    hw = cfg["hardware"]
    if on_devices(hw["synapse"]):
        _check_hardware(cfg)
    dev = cfg["run"]["device"]
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", dev):
        raise checks.fail("run.device", dev, "auto, cpu, cuda or cuda:N")


def _check_hardware(cfg: Mapping[str, Any]) -> None:
    """A run on simulated synapses: plain SGD at one learning rate, final weights, a device that accepts
    the [hardware] values of its options."""
    tr, hw = cfg["train"], cfg["hardware"]
    synapse = checks.show(hw["synapse"])
    if tr["hidden_lr_scale"] != 1.0:
        raise OsttpError(f"config key train.hidden_lr_scale = {tr['hidden_lr_scale']} is not supported with "
                         f"hardware.synapse = {synapse}: the devices share one learning rate")
    for key in ("momentum", "weight_decay"):
        if tr[key] != 0.0:
            raise OsttpError(f"config key train.{key} = {tr[key]} is not supported with hardware.synapse = "
                             f"{synapse}: the devices are trained by plain SGD")
    if cfg["eval"]["test_params"] != "final":
        raise OsttpError(f"eval.test_params = {checks.show(cfg['eval']['test_params'])} is not supported with "
                         f"hardware.synapse = {synapse}: the devices hold only the final weights; use final")
    options = device_options(hw["synapse"], hw)
    try:
        get_device(hw["synapse"], **options)
    except OsttpError as e:  # the device's own check names its field: say which keys set it
        keys = ", ".join(f"hardware.{k} = {checks.show(v)}" for k, v in options.items())
        raise OsttpError(f"hardware.synapse = {synapse} with {keys}: {e}") from None
    if hw["update"] != "mixed-precision":
        for key, default in (("accumulator_threshold", 1.0), ("max_pulses", 0)):
            if hw[key] != default:
                raise OsttpError(f"hardware.{key} = {hw[key]} applies only to hardware.update = mixed-precision, "
                                 f"not {checks.show(hw['update'])}")
    if hw["readout_w_range"] is not None and hw["w_range"] == 0.0:
        raise OsttpError(f"hardware.readout_w_range = {hw['readout_w_range']} needs per-layer ranges: set "
                         "hardware.w_range > 0 too (0 means the device's own w_max for every layer)")
    for key in ("w_range", "readout_w_range"):
        if hw[key] is not None and 0.0 < hw[key] < W_RANGE_MIN:
            raise checks.fail(f"hardware.{key}", hw[key], f"0 (the device's own w_max) or a number >= "
                              f"{W_RANGE_MIN:g}: below it every initial weight is clipped to almost 0 and the "
                              "pulse counts of an update overflow")

