"""Hardware-in-the-loop training: a network's weight matrices held in simulated crossbars.

    hw = HardwareTraining(net, device="pcm", scheme="mixed-precision", lr=1e-3, seed=0)
    learner = hw.wrap(osttp.make_learner("osttp", net, optimizer=hw.optimizer))
    learner.reset(B)
    for t in range(T):
        learner.step(x[t], y[t], m[t])      # forward reads noisy, drifted conductances
    learner.apply()                         # ΔW = -lr·grad -> pulses -> devices; biases: digital SGD
    hw.pulse_counts()                       # per parameter: total update pulses, pulses per synapse

What lives where:

- The weight matrices named by `weights` (default every ``layers.{l}.W``, ``layers.{l}.H`` and
  ``readout.weight``) are `HardwareSynapses` arrays. Building `HardwareTraining` programs the network's
  current weights into them and overwrites ``param.data`` with what the devices hold.
- Everything else (biases ``layers.{l}.b``, ``readout.bias``) stays digital and is trained by
  `digital_optimizer` (default: ``torch.optim.SGD`` with the same lr). Traces, learning signals and the
  mixed-precision accumulators are digital too (docs/math.md §6).
- Reads. Every learner runs the network's own step (`Network.step` / `cell_step_with_current`) with a
  `matvec` hook; the wrapper (`HardwareLearner`) sets it, so each matrix product of the forward pass
  multiplies by a read of the crossbar, through the input/output converters when ``io_bits`` is set
  (`osttp.hardware.io`) -- in training exactly as at inference. ``param.data`` keeps the programmed,
  noise-free weights (what the learning signals and traces read). ``read_noise="per-step"`` draws a
  fresh read before every step (online rules: each step is a new MVM on the crossbar);
  ``"per-sequence"`` one read after `reset` and again after each optimizer step inside a sequence
  (truncated BPTT). Under BPTT the product is W + stopgrad(W_read - W), so autograd's gradient goes
  to the weights while the forward value is the read; a read changing inside a stored graph would
  make that gradient inconsistent, so BPTT gets "per-sequence" and "per-step" is refused. ``"auto"``
  (default) picks per-step for online learners, per-sequence for BPTT; ``"none"`` reads noise-free
  (but drifted) weights. These modes share one read by the whole batch (for batch 1, a single stream
  learning on a device, this is exact). ``"per-sample"`` is what a chip does with a batch: every
  sequence's product at every step is its own read, sampled in product form as at inference
  (`osttp.hardware.crossbar`), so the batch's gradient averages independent noise. The noise enters
  as a detached term added to the exact product, so under BPTT the graph holds only the programmed
  weights (unchanged within a sequence) and the gradient is the noise-free product's, taken along
  the noisy forward pass.
- Simulated time stays where it is unless `set_time` moves it: training at a fixed time sees no drift;
  `osttp.hardware.evaluate_drift` reads at later times.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from osttp.errors import OsttpError
from osttp.hardware import _checks
from osttp.hardware.crossbar import Crossbar, array_crossbar
from osttp.hardware.devices import DeviceConfig
from osttp.hardware.io import converted_matvec
from osttp.hardware.statistics import pulse_statistics
from osttp.hardware.synapses import HardwareSynapses
from osttp.network import Network
from osttp.rules import BPTTLearner, Learner

READ_NOISE_MODES: tuple[str, ...] = ("auto", "per-step", "per-sample", "per-sequence", "none")
DEFAULT_WEIGHTS: tuple[str, ...] = ("W", "H", "readout.weight")
# The matrices a crossbar can hold; biases always stay digital (they are added after the MVM).
_MATRIX_NAME = re.compile(r"^(layers\.\d+\.(W|H)|readout\.weight)$")
_STATE_FORMAT = 2  # 2: update steps, written synapses and samples counted
# Reads draw their noise from their own stream, so the read mode does not change what is programmed.
_READ_STREAM = 0x5EAD


def select_weights(net: Network, weights: Sequence[str]) -> list[str]:
    """Parameter names of `net` that go to hardware: "W", "H" (every layer's), "readout.weight", or full
    names such as "layers.0.W". A short name absent from this net (H of a feed-forward net) is skipped."""
    if isinstance(weights, str) or not isinstance(weights, Sequence) or len(weights) == 0:
        raise OsttpError(f"weights = {weights!r}: expected a non-empty sequence of names from "
                         f"{DEFAULT_WEIGHTS} or full parameter names such as 'layers.0.W'")
    names = [n for n, _ in net.named_parameters()]
    chosen: set[str] = set()
    for w in weights:
        if w in ("W", "H"):
            chosen.update(n for n in names if n.endswith("." + w) and n.startswith("layers."))
        elif isinstance(w, str) and _MATRIX_NAME.match(w):
            if w not in names:
                raise OsttpError(f"weights: this network has no parameter {w!r}; it has {names}")
            chosen.add(w)
        else:
            raise OsttpError(f"weights: {w!r} is not a weight matrix; expected 'W', 'H', 'readout.weight' or "
                             f"a name like 'layers.0.W' (biases stay digital)")
    if not chosen:
        raise OsttpError(f"weights = {tuple(weights)!r} selects no parameter of this network ({names})")
    return [n for n in names if n in chosen]  # network order: fixes the order arrays are built in


class HardwareOptimizer:
    """What the learner steps: programs the crossbars and steps the digital optimizer.

    Not a torch.optim.Optimizer itself (it wraps two); `param_groups` lists both optimizers' groups, so
    setting ``group["lr"]`` for every group works as with any optimizer."""

    def __init__(self, synapses: HardwareSynapses, digital: torch.optim.Optimizer | None) -> None:
        self.synapses = synapses
        self.digital = digital
        self.steps = 0  # optimizer steps so far; the wrapper re-reads the crossbars after each

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return list(self.synapses.param_groups) + (list(self.digital.param_groups) if self.digital else [])

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = self.synapses.step(closure)
        if self.digital is not None:
            self.digital.step()
        self.steps += 1
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.synapses.zero_grad(set_to_none)
        if self.digital is not None:
            self.digital.zero_grad(set_to_none)


class HardwareTraining:
    """Put the weight matrices of `net` into simulated devices; the rest stays digital.

    Parameters
    ----------
    net:
        The network; its weights are programmed into the devices now (``param.data`` is overwritten
        with what the devices hold).
    device:
        "ideal", "quantized", "pcm" or a device config (`IdealDevice`, `QuantizedDevice`, `PCMDevice`).
    scheme:
        Update scheme: "mixed-precision", "stochastic" or "sign" (the ideal device writes ΔW exactly).
    lr:
        Learning rate of the crossbars (ΔW = -lr·grad) and of the default digital optimizer.
    seed:
        Seeds initial programming, pulses and stochastic rounding, and (a separate stream) read noise.
    digital_optimizer:
        For the digital parameters (biases): None -> ``torch.optim.SGD(params, lr)``; a callable
        ``params -> optimizer``; or an optimizer already built over exactly those parameters.
    read_noise:
        When the forward pass gets a fresh noisy read: "auto", "per-step", "per-sample", "per-sequence",
        "none"
        (module docstring).
    weights:
        Which matrices go to hardware (`select_weights`); default all of them.
    scheme_options, drift_compensation, auto_w_max:
        Passed to `HardwareSynapses` (e.g. ``auto_w_max=2.0``: per-layer range w_max = 2·max|W_init|; a
        mapping name -> factor sets each layer's factor).
    io_bits, io_out_bound:
        Input (DAC) and output (ADC) converters of every crossbar during training, as at inference
        (`osttp.hardware.io`); None: exact products.
    """

    def __init__(self, net: Network, device: DeviceConfig | str = "pcm", scheme: str = "mixed-precision",
                 lr: float = 1e-3, seed: int = 0, *,
                 digital_optimizer: torch.optim.Optimizer | Callable[[list[torch.nn.Parameter]],
                                                                     torch.optim.Optimizer] | None = None,
                 read_noise: str = "auto", weights: Sequence[str] = DEFAULT_WEIGHTS,
                 scheme_options: Mapping[str, Any] | None = None, drift_compensation: bool = False,
                 auto_w_max: float | Mapping[str, float] | None = None, io_bits: int | None = None, io_out_bound: float = 12.0
                 ) -> None:
        own = "HardwareTraining"
        if not isinstance(net, Network):
            raise _checks.fail(own, "net", type(net).__name__, "an osttp.Network")
        if read_noise not in READ_NOISE_MODES:
            raise _checks.fail(own, "read_noise", read_noise, f"one of {READ_NOISE_MODES}")
        seed = _checks.integer(own, "seed", seed)
        lr = _checks.number(own, "lr", lr, ge=0.0)
        self.io_bits = None if io_bits is None else _checks.integer(own, "io_bits", io_bits, ge=2, le=24)
        self.io_out_bound = _checks.number(own, "io_out_bound", io_out_bound, gt=0.0)
        self.net = net
        self.read_noise = read_noise
        params = dict(net.named_parameters())
        self.hardware_names = select_weights(net, weights)
        self.digital_names = [n for n in params if n not in self.hardware_names]
        self.synapses = HardwareSynapses({n: params[n] for n in self.hardware_names}, device=device,
                                         scheme=scheme, lr=lr, seed=seed, scheme_options=scheme_options,
                                         drift_compensation=drift_compensation, auto_w_max=auto_w_max)
        self.scheme = scheme
        self.read_generator = torch.Generator(device=net.device).manual_seed(seed + _READ_STREAM)
        self.digital = self._digital_optimizer(digital_optimizer, [params[n] for n in self.digital_names], lr)
        self.optimizer = HardwareOptimizer(self.synapses, self.digital)
        self.samples = 0  # training sequences begun (the wrapper counts them at reset)

    @staticmethod
    def _digital_optimizer(spec: Any, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer | None:
        if not params:
            if spec is not None:
                raise _checks.fail("HardwareTraining", "digital_optimizer", spec,
                                   "None: every parameter is in hardware")
            return None
        if spec is None:
            return torch.optim.SGD(params, lr=lr)
        opt = spec if isinstance(spec, torch.optim.Optimizer) else spec(params) if callable(spec) else None
        if not isinstance(opt, torch.optim.Optimizer):
            raise _checks.fail("HardwareTraining", "digital_optimizer", spec,
                               "None, a torch optimizer or a callable params -> torch optimizer")
        # A hardware weight stepped by a digital optimizer too would be updated twice.
        held = {id(p) for g in opt.param_groups for p in g["params"]}
        if held != {id(p) for p in params}:
            raise _checks.fail("HardwareTraining", "digital_optimizer", type(opt).__name__,
                               "an optimizer over exactly the digital parameters (biases): "
                               "pass a callable params -> optimizer to be safe")
        return opt

    # --- time and reads ------------------------------------------------------------------------------
    @property
    def device(self) -> DeviceConfig:
        """The device model of the first hardware parameter (all share it unless auto_w_max rescaled)."""
        return self.synapses.devices[self.hardware_names[0]]

    @property
    def time(self) -> float:
        """Simulated time now (s)."""
        return self.synapses.time

    def set_time(self, t: float) -> None:
        """Advance simulated time to t (s); the devices drift from their last programming time."""
        self.synapses.set_time(t)

    def read(self, t: float | None = None, read_noise: bool = True,
             drift_compensation: bool | None = None, generator: torch.Generator | None = None
             ) -> dict[str, Tensor]:
        """One read of every crossbar at time t (default now), from the read-noise stream by default."""
        return self.synapses.read_weights(t, read_noise, drift_compensation,
                                          self.read_generator if generator is None else generator)

    @torch.no_grad()
    def load_read(self, t: float | None = None, read_noise: bool = True,
                  drift_compensation: bool | None = None) -> None:
        """Copy one read into the hardware parameters' ``.data`` (what the next forward pass uses)."""
        for name, w in self.read(t, read_noise, drift_compensation).items():
            self.synapses.params[name].data.copy_(w)

    def wrap(self, learner: Any) -> "HardwareLearner":
        """The learner with reads of the crossbars loaded before its forward passes (same API)."""
        return HardwareLearner(self, learner)

    # --- reporting -----------------------------------------------------------------------------------
    def pulse_counts(self) -> dict[str, dict[str, float]]:
        """`osttp.hardware.statistics.pulse_statistics` of the crossbars over the sequences trained so far:
        per hardware parameter and "total", update pulses (total, per synapse, per synapse and sample,
        max), the fractions of synapses written, programming pulses and refreshes."""
        return pulse_statistics(self.synapses, self.samples)

    def describe(self) -> dict[str, Any]:
        """Settings as plain data (for results files)."""
        return {"device": type(self.device).__name__, "device_params": {
                    n: dataclasses.asdict(d) for n, d in self.synapses.devices.items()},
                "scheme": self.scheme, "lr": self.synapses.param_groups[0]["lr"],
                "read_noise": self.read_noise, "hardware": list(self.hardware_names),
                "digital": list(self.digital_names),
                "digital_optimizer": type(self.digital).__name__ if self.digital else None,
                "drift_compensation": self.synapses.drift_compensation}

    # --- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Device state (conductances, programming times, pulse counters), scheme accumulators, the
        random streams, lr and the digital optimizer's state. The network's own parameters are not
        included: save ``net.state_dict()`` alongside (it holds the digital biases)."""
        syn = self.synapses
        return {"format": _STATE_FORMAT, "lr": syn.param_groups[0]["lr"],
                "arrays": {n: {"device": dataclasses.asdict(syn.devices[n]), "class": type(a).__name__,
                               "array": a.state_dict(), "scheme": syn.schemes[n].state_dict()}
                           for n, a in syn.arrays.items()},
                "generator": syn.generator.get_state(), "read_generator": self.read_generator.get_state(),
                "digital": self.digital.state_dict() if self.digital else None,
                "optimizer_steps": self.optimizer.steps, "samples": self.samples}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict()` output into a HardwareTraining built the same way (same parameter
        names, shapes and device models); the hardware parameters then show the programmed weights."""
        syn = self.synapses
        if not isinstance(state, Mapping) or state.get("format") != _STATE_FORMAT:
            raise OsttpError(f"hardware state: expected a HardwareTraining.state_dict() of format {_STATE_FORMAT}")
        arrays = state["arrays"]
        if set(arrays) != set(syn.arrays):
            raise OsttpError(f"hardware state holds {sorted(arrays)}, this model has {sorted(syn.arrays)}")
        for n, entry in arrays.items():
            if entry["class"] != type(syn.arrays[n]).__name__ or entry["device"] != dataclasses.asdict(syn.devices[n]):
                raise OsttpError(f"hardware state for {n!r}: device {entry['class']} {entry['device']} differs "
                                 f"from this model's {type(syn.arrays[n]).__name__} "
                                 f"{dataclasses.asdict(syn.devices[n])}")
        if (state["digital"] is None) != (self.digital is None):
            raise OsttpError("hardware state: digital optimizer present in one and not the other")
        for n, entry in arrays.items():
            syn.arrays[n].load_state_dict(entry["array"])
            syn.schemes[n].load_state_dict(entry["scheme"])
        syn.generator.set_state(state["generator"])
        self.read_generator.set_state(state["read_generator"])
        for g in syn.param_groups:
            g["lr"] = state["lr"]
        if self.digital is not None:
            self.digital.load_state_dict(state["digital"])
        self.optimizer.steps = int(state["optimizer_steps"])
        self.samples = int(state["samples"])
        for n, a in syn.arrays.items():
            syn.params[n].data.copy_(a.weight(read_noise=False, drift_compensation=syn.drift_compensation))


class HardwareLearner:
    """A learner whose forward passes run on the crossbars: `reset`, `step`, `apply` as the learner's;
    every other attribute is the learner's own (``loss_sum``, ``name``, ...)."""

    def __init__(self, hardware: HardwareTraining, learner: Any) -> None:
        if not isinstance(learner, Learner):
            raise OsttpError(f"wrap: expected an osttp learner, got {type(learner).__name__}")
        if learner.net is not hardware.net:
            raise OsttpError("wrap: the learner trains another network than this HardwareTraining's")
        if learner.optimizer is not hardware.optimizer:
            raise OsttpError("wrap: build the learner with optimizer=hardware.optimizer, otherwise its updates "
                             "would not go through the devices")
        mode = hardware.read_noise
        is_bptt = isinstance(learner, BPTTLearner)
        if mode == "auto":
            mode = "per-sequence" if is_bptt else "per-step"
        if mode == "per-step" and is_bptt:
            raise OsttpError("read_noise='per-step' cannot be used with BPTT: its autograd graph over the "
                             "sequence refers to the weights, which must not change within a sequence; "
                             "use 'per-sequence', 'per-sample' (or 'auto')")
        self.hardware = hardware
        self.learner = learner
        self.read_mode = mode
        self.reads: dict[str, Tensor] = {}  # the current read of every crossbar
        self.crossbars: dict[str, Crossbar] = {}  # per-sample mode: the crossbars each product reads
        self._full_scale = {n: a.full_scale for n, a in hardware.synapses.arrays.items()}
        self._read_at_step = -1  # optimizer step count at the last read (per-sequence mode)
        learner.matvec = self.matvec

    def matvec(self, name: str, weight: Tensor, x: Tensor) -> Tensor:
        """The product of `x` with the crossbar holding `name` (digital matrices: exact)."""
        hw = self.hardware
        bar = self.crossbars.get(name)
        if bar is not None:  # per-sample: the traces and any autograd see the programmed weight
            out = bar(x)
            if torch.is_grad_enabled() and weight.requires_grad:
                exact = x @ weight.T
                return exact + (out - exact).detach()
            return out
        read = self.reads.get(name)
        if read is None:  # a digital matrix: exact weights, the same converters (as at inference)
            if hw.io_bits is None:
                return x @ weight.T
            return converted_matvec(x, weight, float(weight.detach().abs().max()) or 1.0, hw.io_bits,
                                    hw.io_out_bound)
        # Forward value: the read; gradient (BPTT): to the weight, as autograd would give it.
        w = weight + (read - weight).detach() if torch.is_grad_enabled() and weight.requires_grad else read
        return converted_matvec(x, w, self._full_scale[name], hw.io_bits, hw.io_out_bound)

    def _load(self) -> None:
        hw = self.hardware
        if self.read_mode == "per-sample":  # mean and noise std, fresh noise drawn by every product
            comp = hw.synapses.drift_compensation
            self.crossbars = {n: array_crossbar(a, 0.0, comp, True, hw.read_generator, hw.io_bits, hw.io_out_bound)
                              for n, a in hw.synapses.arrays.items()}
        else:
            self.reads = hw.read(read_noise=self.read_mode != "none")
        self._read_at_step = hw.optimizer.steps

    def reset(self, batch_size: int) -> None:
        self.learner.reset(batch_size)  # flushes a pending BPTT graph before the weights change
        self.hardware.samples += int(batch_size)
        if self.read_mode != "per-step":
            self._load()

    def step(self, x_t: Tensor, y_t: Tensor, m_t: Tensor | None = None) -> Tensor:
        # per-sequence: a new read only after the devices were reprogrammed (an in-sequence apply, where
        # BPTT's graph has already been cut); per-sample: new means and stds only then too.
        if self.read_mode == "per-step" or self._read_at_step != self.hardware.optimizer.steps:
            self._load()
        return self.learner.step(x_t, y_t, m_t)

    def apply(self) -> None:
        self.learner.apply()

    def __getattr__(self, name: str) -> Any:
        if name in ("learner", "hardware"):  # not set yet (failed __init__, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.learner, name)

    def __repr__(self) -> str:
        return f"HardwareLearner({self.learner!r}, read_noise={self.read_mode!r})"
