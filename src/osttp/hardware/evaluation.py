"""Inference on the simulated crossbars: test metric at a time after programming, and the drift curve.

    evaluate(net, hw, task, t=3600.0)                     # metric one hour after now
    model = HardwareForward(net, hw, t=3600.0)            # xs -> outputs, for any evaluation loop
    rows = evaluate_drift(net, hw, task)                  # 1 s .. 1 month, without/with compensation
    plot_drift(rows, "docs/hardware_drift.png")          # osttp.plots.plot_drift, re-exported here

The forward pass here is the network's own (`Network.forward`), with its `matvec` hook routing each
matrix product through a crossbar that sees the device:

- **Read noise, per sequence and step**: each sequence of a batch sees its own read at every step,
  sampled in product form (`osttp.hardware.crossbar`, exact in distribution). (Training shares one
  read per step across the batch unless ``read_noise="per-sample"``; see training.py.)
- **Drift** at now + t, from each device's own programming time.
- **Global drift compensation**: one calibration per array at that time (the mean of
  CALIBRATION_READS reads, `PCMArray.calibration_weight`) gives the scalar Σ|W(t_p)| / Σ|W_cal(t)|
  (`global_drift_compensation_factor`) that multiplies the array's output (Joshi et al. 2020). It is
  recalibrated for every evaluated time, not per sequence.
- **8-bit input/output quantisation** (optional, `io_bits`; docs/math.md §6): each crossbar's input vector is
  scaled by its largest magnitude (per sequence, as a DAC with per-vector scaling does) and rounded to
  `io_bits` signed levels; the output, in units of (input scale · w_max of the array), is clipped to
  ±`io_out_bound` and rounded to `io_bits` signed levels (the ADC). Training uses the same
  converters (`HardwareTraining(io_bits=...)`, osttp.hardware.io).

The ideal device without I/O quantisation gives exactly `net.forward` (tested).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from osttp.errors import OsttpError
from osttp.evaluation import evaluate_model
from osttp.hardware import _checks
from osttp.hardware.crossbar import Crossbar, crossbars
from osttp.hardware.training import HardwareTraining
from osttp.network import Network
from osttp.tasks import Task

# 1 s .. 1 month: 1 s, 1 min, 10 min, 1 h, 6 h, 1 day, 1 week, 30 days (s); the four a hardware report
# quotes (1 s, 1 h, 1 day, 1 month) are among them.
DEFAULT_DRIFT_TIMES: tuple[float, ...] = (1.0, 60.0, 600.0, 3600.0, 21600.0, 86400.0, 604800.0, 2592000.0)


def _crossbars(net: Network, hardware: HardwareTraining | None, t: float, drift_compensation: bool,
               read_noise: bool, generator: torch.Generator, io_bits: int | None,
               io_out_bound: float, reads: int = 1) -> dict[str, Crossbar]:
    """Every weight matrix of `net` as a crossbar read at now + t (digital ones: exact, no noise)."""
    arrays = hardware.synapses.arrays if hardware is not None else {}
    return crossbars(dict(net.named_parameters()), arrays, t, drift_compensation, read_noise, generator,
                     io_bits, io_out_bound, reads)


@torch.no_grad()
def forward_hardware(net: Network, xs: Tensor, crossbars: Mapping[str, Crossbar]) -> Tensor:
    """Run xs (T, B, n_in) through `net` with every matrix product done by `crossbars`; (T, B, C)."""
    return net(xs, matvec=lambda name, weight, x: crossbars[name](x))


class HardwareForward(torch.nn.Module):
    """``xs (T, B, n_in) -> outputs (T, B, C)`` of `net` on its crossbars read t seconds after now: a
    drop-in for the Network wherever only the forward pass is needed (e.g. a generic evaluation loop).

    The crossbars are read once here (drift and the compensation factor fixed at that time); each call
    draws fresh read noise per sequence and step from the module's own seeded stream. `reads` > 1:
    every product is the mean of that many reads (osttp.hardware.crossbar)."""

    def __init__(self, net: Network, hardware: HardwareTraining | None, t: float = 0.0,
                 drift_compensation: bool = False, read_noise: bool = True, seed: int = 0,
                 io_bits: int | None = None, io_out_bound: float = 12.0, reads: int = 1) -> None:
        super().__init__()
        _check_common(net, hardware, seed, io_bits, io_out_bound)
        t = _checks.number("HardwareForward", "t", t, ge=0.0)
        _checks.boolean("HardwareForward", "drift_compensation", drift_compensation)
        _checks.boolean("HardwareForward", "read_noise", read_noise)
        reads = _checks.integer("HardwareForward", "reads", reads, ge=1)
        self.net = net
        self.generator = torch.Generator(device=net.device).manual_seed(seed)
        self.crossbars = _crossbars(net, hardware, t, drift_compensation, read_noise, self.generator, io_bits,
                                    io_out_bound, reads)

    def forward(self, xs: Tensor) -> Tensor:
        if xs.dim() != 3 or xs.shape[-1] != self.net.n_in:
            raise OsttpError(f"xs must have shape (T, B, {self.net.n_in}), got {tuple(xs.shape)}")
        return forward_hardware(self.net, xs, self.crossbars)


def _check_common(net: Network, hardware: HardwareTraining | None, seed: int, io_bits: int | None,
                  io_out_bound: float) -> None:
    if not isinstance(net, Network):
        raise _checks.fail("evaluate", "net", type(net).__name__, "an osttp.Network")
    if hardware is not None:
        if not isinstance(hardware, HardwareTraining):
            raise _checks.fail("evaluate", "hardware", type(hardware).__name__, "a HardwareTraining or None")
        if hardware.net is not net:
            raise OsttpError("evaluate: hardware holds the weights of another network")
    _checks.integer("evaluate", "seed", seed)
    if io_bits is not None:
        _checks.integer("evaluate", "io_bits", io_bits, ge=2, le=24)
    _checks.number("evaluate", "io_out_bound", io_out_bound, gt=0.0)


def evaluate(net: Network, hardware: HardwareTraining | None, task: Task, *, t: float = 0.0,
             drift_compensation: bool = False, read_noise: bool = True, batch_size: int = 256, seed: int = 0,
             io_bits: int | None = None, io_out_bound: float = 12.0,
             max_batches: int | None = None, decision: str = "last", reads: int = 1) -> dict[str, float]:
    """The task's metrics (``task.new_metric().compute()``) with the weights read t seconds after now,
    over the first max_batches batches of the split (None: all); `decision` reads a sequence's class as
    the task's metric does (osttp.evaluation.evaluate_model: "last", "mean", "max").

    hardware None: the network's own weights (digital); read_noise False: noise-free (drifted) reads.
    `seed` seeds the read noise, so a call is reproducible and leaves the training streams alone;
    `reads`: reads averaged per product (HardwareForward)."""
    model = HardwareForward(net, hardware, t, drift_compensation, read_noise, seed, io_bits, io_out_bound, reads)
    return evaluate_model(model, task, batch_size=batch_size, max_batches=max_batches, device=net.device,
                          dtype=net.dtype, decision=decision)


def evaluate_drift(net: Network, hardware: HardwareTraining, task: Task,
                   times: Sequence[float] = DEFAULT_DRIFT_TIMES,
                   drift_compensation: Sequence[bool] = (False, True), *, batch_size: int = 256, seed: int = 0,
                   io_bits: int | None = None, io_out_bound: float = 12.0,
                   max_batches: int | None = None, decision: str = "last", reads: int = 1) -> list[dict[str, Any]]:
    """The test metric at each time t_s (s after now, i.e. after the last programming) with and without
    global drift compensation, reading noisy, drifted weights. Rows ``{"t_s", "compensation",
    **metrics}``, times in order, for each time one row per compensation setting. Every point uses the
    same read-noise seed (common random numbers: the curve shows drift, not resampling)."""
    if hardware is None:
        raise _checks.fail("evaluate_drift", "hardware", None, "a HardwareTraining")
    if isinstance(times, (int, float)) or len(times) == 0:
        raise _checks.fail("evaluate_drift", "times", times, "a non-empty sequence of times >= 0 (s)")
    ts = [_checks.number("evaluate_drift", "times[]", t, ge=0.0) for t in times]
    if isinstance(drift_compensation, bool) or len(drift_compensation) == 0:
        raise _checks.fail("evaluate_drift", "drift_compensation", drift_compensation,
                           "a non-empty sequence of True/False, e.g. (False, True)")
    comps = [_checks.boolean("evaluate_drift", "drift_compensation[]", c) for c in drift_compensation]
    rows = []
    for t in ts:
        for comp in comps:
            m = evaluate(net, hardware, task, t=t, drift_compensation=comp, batch_size=batch_size, seed=seed,
                         io_bits=io_bits, io_out_bound=io_out_bound, max_batches=max_batches, decision=decision,
                         reads=reads)
            rows.append({"t_s": t, "compensation": comp, **m})
    return rows
