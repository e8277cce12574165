"""The crossbar's converters: input DAC and output ADC quantisation (docs/math.md §6).

Used by every forward pass that runs on simulated crossbars, in training (`HardwareLearner`) and
at inference (`HardwareForward`), so the two see the same converters.
"""
from __future__ import annotations

import torch
from torch import Tensor


def quantize_input(x: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """The DAC: x rounded to 2**bits - 1 signed levels of its own per-row range max|x| (per-vector
    scaling); returns (x_q, scale) with scale (B, 1)."""
    scale = x.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    levels = 2 ** (bits - 1) - 1
    return torch.round(x / scale * levels) / levels * scale, scale


def quantize_output(out: Tensor, in_scale: Tensor, full_scale: float, bits: int, bound: float) -> Tensor:
    """The ADC: the product, in units of (input scale x the array's full-scale weight), clipped to
    +-bound and rounded to 2**bits - 1 signed levels."""
    unit = in_scale * full_scale
    step = bound / (2 ** (bits - 1) - 1)
    return torch.round(torch.clamp(out / unit, -bound, bound) / step) * step * unit


def converted_matvec(x: Tensor, weight: Tensor, full_scale: float, bits: int | None, bound: float) -> Tensor:
    """x @ weight.T through the converters (bits None: exact). Rounding has no useful derivative, so
    under autograd (BPTT) both converters pass the gradient straight through."""
    if bits is None:
        return x @ weight.T
    xq, in_scale = quantize_input(x, bits)
    xq = x + (xq - x).detach() if x.requires_grad else xq
    out = xq @ weight.T
    q = quantize_output(out, in_scale.detach(), full_scale, bits, bound)
    return out + (q - out).detach() if out.requires_grad else q
