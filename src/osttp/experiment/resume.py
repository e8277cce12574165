"""Where a run is, and reading it back from a checkpoint that must be proven whole before use.

    position = Position()                                   # a fresh run
    ckpt, path = pick_checkpoint(out, template, history_of) # last.pt, else prev.pt (the one before)

Every checkpoint is checked for its digest (checkpoint.load_checkpoint) and then its structure
against `template`, the checkpoint this very setup would write now: the same top-level keys, and
tensors of the same shapes and dtypes everywhere (model, optimizer, hardware state, RNG state). The
progress entry must be a complete `Position` with values of the right types, and its epoch
history must agree with metrics.jsonl. Optimizer state tensors are checked against their
parameters after loading. A checkpoint failing any check is corrupt: resume falls back to the
previous one (prev.pt) and says why when both are bad.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from osttp.errors import OsttpError
from osttp.experiment.checkpoint import dumps_json, load_checkpoint

LAST, PREV = "last.pt", "prev.pt"  # the newest checkpoint and the one before it (checkpoints/)


@dataclass
class Position:
    """Where the loop is: saved in every checkpoint as "progress" (plain values only)."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # batches done in the current epoch
    global_batches: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per completed epoch
    train_metric: dict[str, Any] | None = None  # the running metric's state, mid-epoch
    epoch_seconds: float = 0.0  # training time of the current epoch so far
    train_seconds: float = 0.0
    wall_seconds: float = 0.0  # all sessions, up to the last checkpoint
    best_epoch: int | None = None
    best_value: float | None = None
    learner_state_bytes: int = 0  # largest learner.state_nbytes() seen at a sequence end


class Corrupt(OsttpError):
    """A checkpoint that loads but does not hold what this run would have written."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


_POSITION_TYPES: dict[str, Callable[[Any], bool]] = {
    "epoch": lambda v: _is_int(v) and v >= 0, "batch": lambda v: _is_int(v) and v >= 0,
    "global_batches": lambda v: _is_int(v) and v >= 0,
    "history": lambda v: isinstance(v, list) and all(isinstance(h, dict) for h in v),
    "train_metric": lambda v: v is None or isinstance(v, dict),
    "epoch_seconds": lambda v: _is_num(v) and v >= 0, "train_seconds": lambda v: _is_num(v) and v >= 0,
    "wall_seconds": lambda v: _is_num(v) and v >= 0,
    "best_epoch": lambda v: v is None or (_is_int(v) and v >= 1),
    "best_value": lambda v: v is None or isinstance(v, float),
    "learner_state_bytes": lambda v: _is_int(v) and v >= 0,
}


def position_from(progress: Any, metric_keys: set[str]) -> Position:
    """The Position a checkpoint's "progress" entry describes, or Corrupt saying what is wrong."""
    names = {f.name for f in dataclasses.fields(Position)}
    if not isinstance(progress, dict) or set(progress) != names:
        got = sorted(progress) if isinstance(progress, dict) else type(progress).__name__
        raise Corrupt(f"progress has keys {got}; expected {sorted(names)}")
    for k, ok in _POSITION_TYPES.items():
        if not ok(progress[k]):
            raise Corrupt(f"progress.{k} = {progress[k]!r} has the wrong type or range")
    p = Position(**progress)
    if len(p.history) != p.epoch or [h.get("epoch") for h in p.history] != list(range(1, p.epoch + 1)):
        raise Corrupt(f"progress.history holds {len(p.history)} epoch record(s) for {p.epoch} completed epoch(s)")
    if p.train_metric is not None and set(p.train_metric) != metric_keys:
        raise Corrupt(f"progress.train_metric has keys {sorted(p.train_metric)}; expected {sorted(metric_keys)}")
    if p.best_epoch is not None and p.best_epoch > p.epoch:
        raise Corrupt(f"progress.best_epoch = {p.best_epoch} is after the {p.epoch} completed epochs")
    return p


def same_structure(template: Any, got: Any, where: str) -> None:
    """`got` has the layout of `template`: same dict keys, list lengths, leaf types, tensor shapes and
    dtypes. Skipped: optimizer "state" tables (empty in a fresh template; checked after loading)."""
    if isinstance(template, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.dtype != template.dtype or got.shape != template.shape:
            desc = f"{got.dtype} {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__
            raise Corrupt(f"{where} is {desc}; expected {template.dtype} {tuple(template.shape)}")
    elif isinstance(template, Mapping):
        if not isinstance(got, Mapping):
            raise Corrupt(f"{where} is a {type(got).__name__}; expected a table")
        if set(got) != set(template):
            raise Corrupt(f"{where} has keys {sorted(map(str, got))}; expected {sorted(map(str, template))}")
        optimizer_like = "param_groups" in template and "state" in template
        for k in template:
            if optimizer_like and k == "state":
                if not isinstance(got[k], Mapping):
                    raise Corrupt(f"{where}.state is not a table")
                continue
            same_structure(template[k], got[k], f"{where}.{k}")
    elif isinstance(template, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(template):
            raise Corrupt(f"{where} is not a list of {len(template)} entries")
        for i, (t, g) in enumerate(zip(template, got)):
            same_structure(t, g, f"{where}[{i}]")
    elif template is not None and got is not None:
        numeric = (int, float)
        if type(template) is not type(got) and not (isinstance(template, numeric) and isinstance(got, numeric)
                                                    and not isinstance(got, bool)):
            raise Corrupt(f"{where} = {got!r} has type {type(got).__name__}; expected {type(template).__name__}")


def check_structure(ckpt: Mapping[str, Any], template: Mapping[str, Any], metric_keys: set[str]) -> Position:
    keys = set(template) | {"digest"}
    if set(ckpt) != keys:
        raise Corrupt(f"top-level keys are {sorted(map(str, ckpt))}; expected {sorted(keys)}")
    for k in template:
        if k in ("progress", "format", "rng"):
            continue
        same_structure(template[k], ckpt[k], k)
    rng = ckpt["rng"]
    if not isinstance(rng, Mapping) or not set(rng) <= {"torch", "cuda"} or "torch" not in rng:
        raise Corrupt("rng must hold the torch generator state")
    same_structure(template["rng"]["torch"], rng["torch"], "rng.torch")
    return position_from(ckpt["progress"], metric_keys)


def check_optimizer_state(optimizers: list[torch.optim.Optimizer]) -> None:
    """After loading: every per-parameter state tensor is a scalar or has its parameter's shape and dtype."""
    for opt in optimizers:
        for p, state in opt.state.items():
            for name, t in state.items():
                if isinstance(t, torch.Tensor) and t.dim() > 0 and (t.shape != p.shape or t.dtype != p.dtype):
                    raise Corrupt(f"optimizer state {name} is {t.dtype} {tuple(t.shape)}; its parameter is "
                                  f"{p.dtype} {tuple(p.shape)}")


def check_history(position: Position, metrics: list[Any] | None, fallback: bool) -> None:
    """metrics.jsonl is written right after last.pt at each epoch end: it may lag the newest
    checkpoint by one epoch, or lead the previous one by one; every common epoch must agree."""
    if metrics is None:
        return
    ours = [json.loads(dumps_json(h, indent=None)) for h in position.history]
    lead = len(metrics) - len(ours)
    if lead > (1 if fallback else 0) or ours[:len(metrics)] != metrics[:len(ours)]:
        raise Corrupt(f"its epoch history ({len(ours)} epoch(s)) disagrees with metrics.jsonl "
                      f"({len(metrics)} record(s))")


def read_metrics(path: Path) -> list[Any] | None:
    """metrics.jsonl as a list of records; None when it is missing or unreadable (it is rewritten)."""
    try:
        text = path.read_bytes().decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError, RecursionError):
        return None


def pick_checkpoint(ckpt_dir: Path, verify: Callable[[dict[str, Any], bool], Position]
                    ) -> tuple[dict[str, Any], Position, Path, list[str]] | None:
    """The newest checkpoint that loads and passes `verify(ckpt, is_fallback)`: last.pt, else prev.pt,
    with the reasons the newer one was skipped. None when neither exists; OsttpError naming the
    file(s) when all that exist are corrupt."""
    errors = []
    for i, name in enumerate((LAST, PREV)):
        path = ckpt_dir / name
        if not path.is_file():
            continue
        try:
            ckpt = load_checkpoint(path)
            return ckpt, verify(ckpt, i > 0), path, errors
        except Corrupt as e:
            errors.append(f"checkpoint {str(path)!r} is corrupt: {e}")
        except OsttpError as e:
            errors.append(str(e))
    if not errors:
        return None
    raise OsttpError("; ".join(errors) + "; no good checkpoint left to resume from (start a new run)")
