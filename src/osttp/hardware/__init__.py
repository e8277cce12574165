"""Simulated memristive (PCM) synapses (docs/math.md §6). See docs/hardware.md for the model and its choices.

Public interface:

- Device models (frozen, validated dataclasses; `get_device(name, **overrides)` with names "ideal",
  "quantized", "pcm"): `IdealDevice()`, `QuantizedDevice(bits=4, w_max=1.0)`,
  `PCMDevice(g_min=0.1, g_max=12.0, ..., n_pairs=1, eps=0.75, w_max=1.0, alpha=None)`.
- Arrays, one weight tensor in devices (`make_array(config, initial_weight, generator)`):
  `IdealArray`, `QuantizedArray`, `PCMArray` with ``weight(t=None, read_noise=True,
  drift_compensation=False)``, ``apply_pulses(n_pos, n_neg)``, ``refresh()``, ``set_time(t)``,
  ``pulse_count`` / ``total_pulses``; `PCMArray` also ``conductances``, ``program``,
  ``set_conductances``, ``programmed_weight``.
- Update schemes ΔW -> pulse counts (`get_scheme(name, **options)`, names "stochastic", "sign",
  "mixed-precision"): `StochasticScheme`, `SignScheme(threshold=None)`, `MixedPrecisionScheme`.
- `HardwareSynapses(params, device="pcm", scheme="mixed-precision", lr=1e-3, seed=0, *,
  scheme_options=None, drift_compensation=False, auto_w_max=None)`: a torch.optim.Optimizer;
  ``step()``, ``zero_grad()``, ``read_weights(t)``, ``load_read_weights(t)``, ``set_time(t)``,
  ``pulse_counts()``, ``stats()``, ``total_pulses()``.
- Hardware-in-the-loop training of a Network: `HardwareTraining(net, device="pcm",
  scheme="mixed-precision", lr=1e-3, seed=0, *, digital_optimizer=None, read_noise="auto",
  weights=("W", "H", "readout.weight"), scheme_options=None, drift_compensation=False, auto_w_max=None)`
  with ``optimizer`` (pass to make_learner), ``wrap(learner)``, ``pulse_counts()``, ``read(t)``,
  ``load_read(t)``, ``set_time(t)``, ``state_dict()`` / ``load_state_dict()``, ``describe()``.
- What a hardware engineer asks (osttp.hardware.statistics): `pulse_statistics(synapses, samples)`
  (pulses per synapse and sample, fractions written, refreshes; `HardwareTraining.pulse_counts()`),
  `conductance_histograms(arrays, bins=24)`.
- The product on one crossbar (osttp.hardware.crossbar): `Crossbar`, a read per sequence and step
  in product form, optionally the mean of K reads; used by inference and by
  ``HardwareTraining(read_noise="per-sample")``.
- Inference on the crossbars: `evaluate(net, hardware, task, t=0.0, drift_compensation=False, ..., max_batches=None)`,
  `evaluate_drift(net, hardware, task, times=DEFAULT_DRIFT_TIMES, drift_compensation=(False, True), ...)`,
  `plot_drift(rows, path)`; `HardwareForward(net, hardware, t=0.0, ..., reads=1)`, a module xs -> outputs.
"""
from __future__ import annotations

from osttp.hardware.arrays import IdealArray, QuantizedArray, SynapseArray, global_drift_compensation_factor
from osttp.hardware.pcm_array import PCMArray
from osttp.hardware.devices import DeviceConfig, IdealDevice, PCMDevice, QuantizedDevice
from osttp.hardware.catalog import DEVICES, device_options, get_device, make_array
from osttp.hardware.schemes import (SCHEMES, MixedPrecisionScheme, SignScheme, StochasticScheme, UpdateScheme,
                                    get_scheme)
from osttp.hardware.synapses import HardwareSynapses
from osttp.hardware.training import (DEFAULT_WEIGHTS, READ_NOISE_MODES, HardwareLearner, HardwareOptimizer,
                                     HardwareTraining, select_weights)
from osttp.hardware.evaluation import (DEFAULT_DRIFT_TIMES, HardwareForward, evaluate, evaluate_drift,
                                       forward_hardware)
from osttp.hardware.statistics import conductance_histograms, pulse_statistics
from osttp.plots import plot_drift  # the library's one drift figure, offered here beside evaluate_drift

__all__ = [
    "DEVICES", "DeviceConfig", "IdealDevice", "QuantizedDevice", "PCMDevice", "device_options", "get_device",
    "SynapseArray", "IdealArray", "QuantizedArray", "PCMArray", "make_array",
    "global_drift_compensation_factor",
    "SCHEMES", "UpdateScheme", "StochasticScheme", "SignScheme", "MixedPrecisionScheme", "get_scheme",
    "HardwareSynapses",
    "HardwareTraining", "HardwareOptimizer", "HardwareLearner", "select_weights", "DEFAULT_WEIGHTS",
    "READ_NOISE_MODES",
    "pulse_statistics", "conductance_histograms",
    "evaluate", "evaluate_drift", "forward_hardware", "plot_drift", "DEFAULT_DRIFT_TIMES", "HardwareForward",
]
