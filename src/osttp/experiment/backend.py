"""Where a run's weights live and how they are updated: float tensors, or simulated synapses.

The training loop, evaluation, checkpoints and results talk to one `Backend` and never ask which
one it is. `make_backend(cfg, net)` picks it from hardware.synapse through the registry `BACKENDS`,
whose entries' `synapses` metadata lists the hardware.synapse values each one serves:

    float      "float"                    FloatBackend: a torch optimizer (train.optimizer, OPTIMIZERS)
    hardware   every device name (DEVICES) HardwareBackend: weight matrices in osttp.hardware devices,
                                          trained by plain SGD through them (biases: digital SGD), read
                                          noisily at evaluation

Checkpoint entries: a float run saves "optimizer" (and "hardware": None), a hardware run "hardware"
(holding its digital optimizer; and "optimizer": None).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from torch import Tensor

import osttp
from osttp import hardware
from osttp.errors import OsttpError
from osttp.experiment.optimizers import make_optimizer
from osttp.network import Network
from osttp.registry import Registry
from osttp.tasks import Task
from osttp.tasks.base import derive_seed


class Optimizer(Protocol):
    """What a learner needs from an optimizer (torch's, or HardwareTraining.optimizer)."""

    def step(self, closure: Callable[[], float] | None = None) -> float | None: ...

    def zero_grad(self, set_to_none: bool = True) -> None: ...


class Stepper(Protocol):
    """The part of a learner the training loop drives (a Learner, or the hardware wrapper around one)."""

    loss_sum: Tensor | float

    def reset(self, batch_size: int) -> None: ...

    def step(self, x_t: Tensor, y_t: Tensor, m_t: Tensor | None = None) -> Tensor: ...

    def apply(self) -> None: ...


class Backend(ABC):
    """One run's weights: how they are updated, read for evaluation, saved and reported."""

    #: what the learner is given as its optimizer
    optimizer: Optimizer

    def __init__(self, cfg: Mapping[str, Any], net: Network) -> None:
        self.cfg, self.net = cfg, net

    @abstractmethod
    def stepper(self, learner: osttp.Learner) -> Stepper:
        """What the training loop calls reset/step/apply on for `learner`."""

    @abstractmethod
    def eval_model(self, t: float = 0.0, drift_compensation: bool = False) -> Callable[[Tensor], Tensor]:
        """xs (T, B, n_in) -> outputs (T, B, C) as deployed, t seconds after now."""

    @abstractmethod
    def torch_optimizers(self) -> list[torch.optim.Optimizer]:
        """The torch optimizers whose per-parameter state a checkpoint holds and restores."""

    @abstractmethod
    def checkpoint_state(self) -> dict[str, Any]:
        """The checkpoint entries beside the model's state_dict ("optimizer", "hardware")."""

    @abstractmethod
    def load_checkpoint_state(self, ckpt: Mapping[str, Any]) -> None:
        """Restore from a checkpoint, after the model's state_dict; KeyError/ValueError when it does not fit."""

    @abstractmethod
    def final_weights(self) -> None:
        """Set the parameters to the trained weights before the final test and model.pt."""

    @abstractmethod
    def model_state(self) -> dict[str, Any]:
        """Entries of model.pt beside the model's state_dict."""

    @abstractmethod
    def result_fields(self) -> dict[str, Any]:
        """Fields of results.json that describe the backend."""

    @abstractmethod
    def drift_rows(self, task: Task, batch_size: int, max_batches: int | None,
                   decision: str = "last") -> list[dict[str, Any]]:
        """Test metrics against time after programming (osttp.hardware.evaluate_drift rows); [] when
        the backend has no drift or the config turned it off."""


def _param_groups(net: Network, lr: float, hidden_scale: float) -> list[dict[str, Any]]:
    """The hidden layers' parameters at lr * hidden_scale, the readout's at lr."""
    return [{"params": list(net.layers.parameters()), "lr": lr * hidden_scale},
            {"params": list(net.readout.parameters())}]


class FloatBackend(Backend):
    """Plain tensors and a torch optimizer: the decision of how gradients become parameter changes."""

    def __init__(self, cfg: Mapping[str, Any], net: Network) -> None:
        super().__init__(cfg, net)
        t = cfg["train"]
        self.torch_optimizer: torch.optim.Optimizer
        groups = _param_groups(net, t["lr"], t["hidden_lr_scale"])
        self.torch_optimizer = make_optimizer(groups, t)
        self.optimizer = self.torch_optimizer

    def stepper(self, learner: osttp.Learner) -> Stepper:
        return learner

    def eval_model(self, t: float = 0.0, drift_compensation: bool = False) -> Callable[[Tensor], Tensor]:
        return self.net  # digital weights neither drift nor need compensation

    def torch_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.torch_optimizer]

    def checkpoint_state(self) -> dict[str, Any]:
        return {"optimizer": self.torch_optimizer.state_dict(), "hardware": None}

    def load_checkpoint_state(self, ckpt: Mapping[str, Any]) -> None:
        self.torch_optimizer.load_state_dict(ckpt["optimizer"])

    def final_weights(self) -> None:
        pass  # the parameters are the weights

    def model_state(self) -> dict[str, Any]:
        return {}

    def result_fields(self) -> dict[str, Any]:
        return {"synapse": "float"}

    def drift_rows(self, task: Task, batch_size: int, max_batches: int | None,
                   decision: str = "last") -> list[dict[str, Any]]:
        return []


def _range_factors(net: Network, h: Mapping[str, Any]) -> dict[str, float] | None:
    """Per-layer range factors (HardwareTraining's auto_w_max): w_range, the readout's readout_w_range
    when set; None when w_range is 0 (the device's own w_max everywhere)."""
    if not h["w_range"]:
        return None
    readout = h["readout_w_range"] or h["w_range"]
    return {n: readout if n == "readout.weight" else h["w_range"]
            for n in hardware.select_weights(net, hardware.DEFAULT_WEIGHTS)}


def _scheme_options(h: Mapping[str, Any]) -> dict[str, Any] | None:
    """The mixed-precision accumulator's threshold and pulse budget (other schemes: their defaults)."""
    if h["update"] != "mixed-precision":
        return None
    return {"threshold": h["accumulator_threshold"], "max_pulses": h["max_pulses"] or None}


class HardwareBackend(Backend):
    """The weight matrices in simulated devices ([hardware]), via osttp.hardware.HardwareTraining.

    Built after the network, so the devices are programmed with the seeded initial weights and
    w_range scales each layer's range from them: the same config gives the same devices. Evaluation
    reads the crossbars with noise from its own seeded stream, so it never moves the training's."""

    def __init__(self, cfg: Mapping[str, Any], net: Network) -> None:
        super().__init__(cfg, net)
        h = cfg["hardware"]
        options = hardware.device_options(h["synapse"], h)
        device: hardware.DeviceConfig = hardware.get_device(h["synapse"], **options)
        self.hw = hardware.HardwareTraining(net, device=device, scheme=h["update"], lr=cfg["train"]["lr"],
                                            seed=derive_seed(cfg["train"]["seed"], "hardware"),
                                            auto_w_max=_range_factors(net, h), io_bits=h["io_bits"] or None,
                                            scheme_options=_scheme_options(h), read_noise=h["train_reads"])
        self.optimizer = self.hw.optimizer  # weights: SGD through the devices; biases: digital SGD
        # After the initial programming; a resumed run rebuilds the same devices, so the same histogram.
        self.histograms_before = hardware.conductance_histograms(self.hw.synapses.arrays)
        self.eval_seed = derive_seed(cfg["train"]["seed"], "hardware-eval")

    def stepper(self, learner: osttp.Learner) -> Stepper:
        return self.hw.wrap(learner)

    def eval_model(self, t: float = 0.0, drift_compensation: bool = False) -> Callable[[Tensor], Tensor]:
        return hardware.HardwareForward(self.net, self.hw, t=t, drift_compensation=drift_compensation,
                                        seed=self.eval_seed, io_bits=self.hw.io_bits,
                                        reads=self.cfg["hardware"]["eval_reads"])

    def torch_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.hw.digital] if isinstance(self.hw.digital, torch.optim.Optimizer) else []

    def checkpoint_state(self) -> dict[str, Any]:
        return {"optimizer": None, "hardware": self.hw.state_dict()}  # holds the digital optimizer too

    def load_checkpoint_state(self, ckpt: Mapping[str, Any]) -> None:
        if ckpt.get("hardware") is None:
            raise KeyError("the checkpoint holds no hardware state (saved by a float run?)")
        self.hw.load_state_dict(ckpt["hardware"])  # after the net: it rewrites the weights the devices hold

    def final_weights(self) -> None:
        self.hw.load_read(read_noise=False)  # what the devices hold (noise-free), not the last noisy read

    def model_state(self) -> dict[str, Any]:
        return {"hardware": self.hw.state_dict()}

    def result_fields(self) -> dict[str, Any]:
        h = self.cfg["hardware"]
        return {"synapse": h["synapse"], "update": h["update"], "w_range": h["w_range"],
                "readout_w_range": h["readout_w_range"], "accumulator_threshold": h["accumulator_threshold"],
                "max_pulses": h["max_pulses"], "train_reads": h["train_reads"], "eval_reads": h["eval_reads"],
                **hardware.device_options(h["synapse"], h), "pulses": self.hw.pulse_counts(), "hardware": self.hw.describe(),
                "conductance_histograms": {"before": self.histograms_before,
                                           "after": hardware.conductance_histograms(self.hw.synapses.arrays)}}

    def drift_rows(self, task: Task, batch_size: int, max_batches: int | None,
                   decision: str = "last") -> list[dict[str, Any]]:
        if not self.cfg["hardware"]["drift_eval"]:
            return []
        # the same read-noise seed at every time (common random numbers), as eval_model uses
        return hardware.evaluate_drift(self.net, self.hw, task, batch_size=batch_size, seed=self.eval_seed,
                                       max_batches=max_batches, io_bits=self.hw.io_bits, decision=decision,
                                       reads=self.cfg["hardware"]["eval_reads"])


BACKENDS: Registry[Backend] = Registry("backend")
BACKENDS.register("float", FloatBackend, help="float tensors and a torch optimizer",
                  synapses=lambda: ["float"])
BACKENDS.register("hardware", HardwareBackend, help="weight matrices in simulated devices",
                  synapses=hardware.DEVICES.names)


def synapse_names() -> list[str]:
    """Every valid hardware.synapse value, backend by backend."""
    return [name for e in BACKENDS.entries() for name in e.meta["synapses"]()]


def on_devices(synapse: str) -> bool:
    """Whether hardware.synapse = `synapse` puts the weights in simulated devices."""
    return synapse in hardware.DEVICES


def make_backend(cfg: Mapping[str, Any], net: Network) -> Backend:
    synapse = cfg["hardware"]["synapse"]
    for entry in BACKENDS.entries():
        if synapse in entry.meta["synapses"]():
            return entry.build(cfg=cfg, net=net)
    raise OsttpError(f"hardware.synapse = {synapse!r}: expected one of {', '.join(synapse_names())}")


__all__ = ["BACKENDS", "Backend", "FloatBackend", "HardwareBackend", "Optimizer", "Stepper", "make_backend",
           "on_devices", "synapse_names"]
