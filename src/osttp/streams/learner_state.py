"""Saving a learner mid-stream: its carried state (`learner.stream`) as plain containers of tensors.

A learner keeps, between steps, a dataclass of tensors, lists, dicts and named tuples (states, traces,
accumulators, the readout's eligibility). `snapshot` turns it into dicts/lists of tensors that
torch.save writes and torch.load(weights_only=True) reads back; `restore` puts such a snapshot into a
learner of the same rule and network, rebuilding the named tuples from the learner's own freshly
reset state. Nothing here knows a field's name, so a learner that adds fields is covered.

BPTT keeps an autograd graph between its updates, which cannot be saved: `can_snapshot` is False
until the next update cuts it (tbptt: the end of the window; bptt: the end of the sequence).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from osttp.errors import OsttpError
from osttp.rules.learner import Learner

SCALARS = (int, float, bool, str, type(None))


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [t for f in dataclasses.fields(obj) for t in _tensors(getattr(obj, f.name))]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    return []


def can_snapshot(learner: Learner) -> bool:
    """False while the learner holds an autograd graph (BPTT between updates)."""
    return not any(t.requires_grad or t.grad_fn is not None for t in _tensors(learner.stream))


def _plain(obj: Any, where: str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, SCALARS):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name), f"{where}.{f.name}") for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):  # named tuples too: rebuilt from the template on restore
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    raise OsttpError(f"cannot save the learner's state: {where} holds a {type(obj).__name__}")


def snapshot(learner: Learner) -> dict[str, Any]:
    """The learner's carried state as dicts, lists, tensors and scalars (copies)."""
    if not can_snapshot(learner):
        raise OsttpError(f"cannot save the state of {learner.name!r} now: it holds an autograd graph until its "
                         "next update")
    return {"rule": learner.name, "state": _plain(learner.stream, "learner.stream")}


def _rebuild(template: Any, data: Any, where: str, device: torch.device) -> Any:
    """`data` with the container types of `template` (the learner's freshly reset state): the named
    tuples and dataclasses that plain containers lose. A field that is None after a reset (e.g. the
    readout eligibility before the first step) takes the saved value as it is: a tensor or a scalar."""
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        if not isinstance(data, dict):
            raise OsttpError(f"learner state {where}: expected a table, got {type(data).__name__}")
        for f in dataclasses.fields(template):
            if f.name not in data:
                raise OsttpError(f"learner state {where}: field {f.name!r} missing")
            setattr(template, f.name, _rebuild(getattr(template, f.name), data[f.name], f"{where}.{f.name}", device))
        return template
    if isinstance(template, tuple) and hasattr(template, "_fields"):
        if not isinstance(data, (list, tuple)) or len(data) != len(template):
            raise OsttpError(f"learner state {where}: expected {len(template)} values")
        return type(template)(*(_rebuild(t, d, f"{where}[{i}]", device)
                                for i, (t, d) in enumerate(zip(template, data))))
    if isinstance(template, list) and isinstance(data, list):
        return [_rebuild(template[i] if i < len(template) else None, d, f"{where}[{i}]", device)
                for i, d in enumerate(data)]
    if isinstance(template, dict) and isinstance(data, dict):
        return {k: _rebuild(template.get(k), v, f"{where}[{k!r}]", device) for k, v in data.items()}
    if isinstance(template, torch.Tensor) and isinstance(data, torch.Tensor) and \
            (template.shape != data.shape or template.dtype != data.dtype):
        raise OsttpError(f"learner state {where}: shape {tuple(data.shape)} {data.dtype}, expected "
                         f"{tuple(template.shape)} {template.dtype}")
    return data.to(device) if isinstance(data, torch.Tensor) else data


def restore(learner: Learner, snap: dict[str, Any]) -> None:
    """Put a `snapshot` back into a learner of the same rule, network and batch size."""
    if not isinstance(snap, dict) or "state" not in snap:
        raise OsttpError("learner state: not a snapshot written by osttp.streams.snapshot")
    if snap.get("rule") != learner.name:
        raise OsttpError(f"learner state was saved from rule {snap.get('rule')!r}, not {learner.name!r}")
    batch = snap["state"].get("batch_size")
    if not isinstance(batch, int):
        raise OsttpError("learner state: no batch size (was it saved before learner.reset?)")
    learner.reset(batch)  # a template with every named tuple and dataclass in place
    _rebuild(learner.stream, snap["state"], "learner.stream", learner.net.device)
