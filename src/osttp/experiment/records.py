"""Files of finished runs read back for a report, checked for the shape the report relies on.

results.json, metrics.jsonl and drift.json are ours, but a report may meet any file: a hand edit, a
truncated copy, another program's JSON. Each reader returns the records or raises OsttpError naming
the file and what is wrong (never a KeyError or TypeError from deep inside the report).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from osttp.errors import OsttpError
from osttp.experiment.checkpoint import read_json

_NUMBER_KEYS = ("valid_metric", "test_metric", "wall_s", "train_s", "peak_mem_mb", "learner_state_mb", "chance",
                "chance_valid", "last_valid_metric", "best_valid_metric")
_STRING_KEYS = ("status", "metric_name", "test_params", "task", "rule")
REQUIRED_COMPLETED = ("valid_metric", "test_metric")


def _number_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def _bad(path: Path, what: str) -> OsttpError:
    return OsttpError(f"{str(path)!r}: {what}")


def read_results(path: Path) -> dict[str, Any]:
    r = read_json(path)
    if not isinstance(r, dict):
        raise _bad(path, f"expected a JSON object (a run's results), got {type(r).__name__}")
    if not isinstance(r.get("status"), str):
        raise _bad(path, "expected a \"status\" string")
    for k in _STRING_KEYS:
        if k in r and r[k] is not None and not isinstance(r[k], str):
            raise _bad(path, f"{k} = {json.dumps(r[k])}: expected a string")
    for k in _NUMBER_KEYS:
        if k in r and not _number_or_none(r[k]):
            raise _bad(path, f"{k} = {json.dumps(r[k])}: expected a number or null")
    if "higher_is_better" in r and r["higher_is_better"] is not None and not isinstance(r["higher_is_better"], bool):
        raise _bad(path, f"higher_is_better = {json.dumps(r['higher_is_better'])}: expected true or false")
    if r["status"] == "completed":
        missing = [k for k in REQUIRED_COMPLETED if k not in r]
        if missing:
            raise _bad(path, f"a completed run without {', '.join(missing)}")
    return r


def _check_record(path: Path, i: int, rec: Any) -> dict[str, Any]:
    where = f"line {i + 1}"
    if not isinstance(rec, dict):
        raise _bad(path, f"{where}: expected a JSON object (one epoch), got {type(rec).__name__}")
    ep = rec.get("epoch")
    if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1:
        raise _bad(path, f"{where}: epoch = {json.dumps(ep)}: expected an integer >= 1")
    for part in ("train", "valid"):
        metrics = rec.get(part)
        if not isinstance(metrics, dict):
            raise _bad(path, f"{where}: {part} = {json.dumps(metrics)}: expected an object of metrics")
        for k, v in metrics.items():
            if not _number_or_none(v):
                raise _bad(path, f"{where}: {part}.{k} = {json.dumps(v)}: expected a number or null")
    return rec


def read_history(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl: one JSON object per completed epoch."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise OsttpError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise _bad(path, "not UTF-8 text") from None
    history = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            raise _bad(path, f"line {i + 1} is not JSON") from None
        history.append(_check_record(path, i, rec))
    return history


def read_drift(path: Path) -> list[dict[str, Any]]:
    """drift.json: rows {t_s, compensation, <metric>: value, ...} (osttp.hardware.evaluate_drift)."""
    rows = read_json(path)
    if not isinstance(rows, list) or not rows:
        raise _bad(path, "expected a non-empty list of drift rows")
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not _number_or_none(r.get("t_s")) or r.get("t_s") is None or \
                not isinstance(r.get("compensation"), bool) or \
                not all(_number_or_none(v) for k, v in r.items() if k not in ("t_s", "compensation")) or \
                not any(isinstance(v, float) for k, v in r.items() if k not in ("t_s", "compensation")):
            raise _bad(path, f"row {i}: expected {{t_s: number, compensation: true/false, <metric>: number, ...}}")
    return rows
