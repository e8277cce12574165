"""Validation of what a learner is fed: shapes, dtypes, label ranges, finiteness.

Every check raises OsttpError (a ValueError) naming the value and what was expected. Shapes and dtypes
are always checked (host metadata, free). The checks of values (finite, label range, mask sign)
read the tensor, which off the CPU is a host sync: `values=False` skips them (the learner checks the
values of streamed steps on an accelerator once per sequence, at its first step)."""
from __future__ import annotations

import torch
from torch import Tensor

from osttp.errors import OsttpError


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_tensor(name: str, t: object) -> Tensor:
    if not isinstance(t, Tensor):
        raise OsttpError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def check_inputs(name: str, x: Tensor, shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device | None = None, values: bool = True) -> Tensor:
    """x must have exactly `shape` (-1 = any), the network's dtype and device, and finite values
    (checked when `values`)."""
    check_tensor(name, x)
    if x.dim() != len(shape) or any(s != -1 and s != xs for s, xs in zip(shape, x.shape)):
        want = "(" + ", ".join("*" if s == -1 else str(s) for s in shape) + ")"
        raise OsttpError(f"{name} has shape {_shape(x)}; expected {want}")
    if x.dtype != dtype:
        raise OsttpError(f"{name} has dtype {x.dtype}; expected the network's dtype {dtype}")
    if device is not None and x.device != device:
        raise OsttpError(f"{name} is on device {x.device}; expected the network's device {device}")
    if values and not bool(torch.isfinite(x).all()):
        raise OsttpError(f"{name} contains NaN or Inf values; expected finite inputs")
    return x


def check_targets(name: str, y: Tensor, lead: tuple[int, ...], n_out: int, dtype: torch.dtype,
                  values: bool = True) -> tuple[Tensor, bool]:
    """Class indices (lead) int64 in [0, C), or float vectors (lead + (C,)) in [0, 1].

    Returns the targets as float vectors (one-hot for indices) and whether they were indices."""
    check_tensor(name, y)
    if y.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        if _shape(y) != lead:
            raise OsttpError(f"{name} (class indices) has shape {_shape(y)}; expected {lead}")
        if values and y.numel():
            lo, hi = (int(v) for v in torch.stack(torch.aminmax(y)).tolist())  # one reduction, one read
            if lo < 0 or hi >= n_out:
                bad = lo if lo < 0 else hi
                raise OsttpError(f"{name} contains label {bad}; expected class indices in [0, {n_out - 1}]")
        # scatter, not one_hot: one_hot checks the range itself, a host sync off the CPU.
        onehot = torch.zeros(lead + (n_out,), dtype=dtype, device=y.device)
        return onehot.scatter_(-1, y.long().unsqueeze(-1), 1.0), True
    if y.is_floating_point():
        if _shape(y) != lead + (n_out,):
            raise OsttpError(f"{name} (target vectors) has shape {_shape(y)}; expected {lead + (n_out,)}")
        if y.dtype != dtype:
            raise OsttpError(f"{name} has dtype {y.dtype}; expected the network's dtype {dtype}")
        if values and (not bool(torch.isfinite(y).all()) or bool((y < 0).any()) or bool((y > 1).any())):
            raise OsttpError(f"{name} has values outside [0, 1] or NaN; expected one-/multi-hot targets")
        return y, False
    raise OsttpError(f"{name} has dtype {y.dtype}; expected int64 class indices or float target vectors")


def check_mask(name: str, m: Tensor | None, lead: tuple[int, ...], dtype: torch.dtype,
               device: torch.device, values: bool = True) -> Tensor:
    """Supervision mask: None (all steps supervised) or finite non-negative weights of shape lead."""
    if m is None:
        return torch.ones(lead, dtype=dtype, device=device)
    check_tensor(name, m)
    if _shape(m) != lead:
        raise OsttpError(f"{name} has shape {_shape(m)}; expected {lead}")
    m = m.to(dtype)
    if values and (not bool(torch.isfinite(m).all()) or bool((m < 0).any())):
        raise OsttpError(f"{name} has negative, NaN or Inf entries; expected weights >= 0 (1 = supervised)")
    return m
