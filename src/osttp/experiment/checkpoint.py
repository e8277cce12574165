"""Files of a run directory that must never be seen half-written: atomic text/torch writes, JSON
without NaN tokens, and checkpoints loaded with weights_only=True (tensors and plain containers,
never code).

A checkpoint ("osttp-checkpoint-1") is a dict: format, model (state_dict), optimizer / hardware
(the backend's state, see backend.py), progress (plain values), rng, net_config, osttp_version.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from osttp.errors import OsttpError

CHECKPOINT_FORMAT = "osttp-checkpoint-1"


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a reader (or a resume after SIGKILL) sees
    either the old complete file or the new complete file, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """weights_only=True: a checkpoint can hold tensors and plain containers, never code."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt/foreign file: bad input, named
        raise OsttpError(f"cannot load checkpoint {str(path)!r}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise OsttpError(f"{str(path)!r} is not an osttp checkpoint ({CHECKPOINT_FORMAT})")
    return ckpt


def _finite_or_none(x: Any) -> Any:
    """JSON has no NaN/Inf: write null instead (json.dumps would write invalid NaN tokens)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    return x


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(_finite_or_none(obj), indent=indent, allow_nan=False)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OsttpError(f"cannot read {str(path)!r}: {e}") from None


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
