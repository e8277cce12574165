"""One weight matrix as a matrix-vector product sees it on a crossbar: a read per sequence and step.

In hardware every matrix-vector product is a new read, so each sequence of a batch sees its own
read at every step. Read noise is independent Gaussian per device, hence the product with one read,
Σ_j W_read,ij x_j, is Gaussian with mean Σ_j W_ij(t) x_j and variance Σ_j σ_ij² x_j² (σ from
`SynapseArray.weight_std`). `Crossbar` samples it in that form: exact in distribution, two matrix
products instead of one read per sequence. A controller may average several reads of one product
(`reads`: K back-to-back reads, K times the read energy and time); with the model's independent
read noise that divides its std by sqrt(K). Inference (`HardwareForward`) and training with
``read_noise="per-sample"`` (`HardwareLearner`) both use it, so the two see the same crossbar.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from osttp.hardware.arrays import SynapseArray
from osttp.hardware.io import quantize_input, quantize_output


class Crossbar:
    """y = x Wᵀ (+ per-sequence read noise) (+ I/O quantisation), for inputs x of shape (B, n_in)."""

    def __init__(self, mean: Tensor, std: Tensor | None, scale: float, generator: torch.Generator,
                 io_bits: int | None, io_out_bound: float) -> None:
        self.mean, self.generator = mean, generator
        self.var = None if std is None else std * std
        self.scale = scale  # w_max of the array: the ADC range is in units of it
        self.io_bits, self.io_out_bound = io_bits, io_out_bound

    def __call__(self, x: Tensor) -> Tensor:
        in_scale = None
        if self.io_bits is not None:
            x, in_scale = quantize_input(x, self.io_bits)
        out = F.linear(x, self.mean)
        if self.var is not None:
            z = torch.randn(out.shape, generator=self.generator, dtype=out.dtype, device=out.device)
            out = out + F.linear(x * x, self.var).sqrt() * z
        if self.io_bits is not None:
            assert in_scale is not None
            out = quantize_output(out, in_scale, self.scale, self.io_bits, self.io_out_bound)
        return out


def array_crossbar(array: SynapseArray, t: float, drift_compensation: bool, read_noise: bool,
                   generator: torch.Generator, io_bits: int | None, io_out_bound: float,
                   reads: int = 1) -> Crossbar:
    """The crossbar of `array` read t seconds after its now: drifted mean, read-noise std, and with
    drift_compensation the global factor of a calibration at that time scaling both. `reads` > 1: each
    product is the mean of that many reads (noise std / sqrt(reads), the reads' noises independent)."""
    t_abs = array.time + t
    mean = array.weight(t_abs, read_noise=False)
    std = array.weight_std(t_abs) if read_noise else None
    if std is not None and reads > 1:
        std = std / math.sqrt(reads)
    if drift_compensation and array.drifts:
        factor = array.drift_compensation_factor(t_abs, read_noise=read_noise, generator=generator)
        mean = mean * factor
        std = None if std is None else std * factor
    return Crossbar(mean, std, array.full_scale, generator, io_bits, io_out_bound)


def crossbars(params: Mapping[str, Tensor], arrays: Mapping[str, SynapseArray], t: float,
              drift_compensation: bool, read_noise: bool, generator: torch.Generator, io_bits: int | None,
              io_out_bound: float, reads: int = 1) -> dict[str, Crossbar]:
    """Every weight matrix among `params` as a crossbar read at now + t: the ones in `arrays` as their
    devices hold them (each product the mean of `reads` reads), the digital ones exact (no noise; the
    same converters)."""
    out: dict[str, Crossbar] = {}
    for name, p in params.items():
        if p.dim() != 2:
            continue
        if name in arrays:
            out[name] = array_crossbar(arrays[name], t, drift_compensation, read_noise, generator, io_bits,
                                       io_out_bound, reads)
        else:
            out[name] = Crossbar(p.detach(), None, float(p.detach().abs().max()) or 1.0, generator, io_bits,
                                 io_out_bound)
    return out
