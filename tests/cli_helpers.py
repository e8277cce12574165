"""Helpers shared by the CLI test files."""
from __future__ import annotations

import json
from pathlib import Path

from osttp.experiment.cli import main


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """main(argv) in this process: (exit code, stdout, stderr)."""
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


TIMING_KEYS = frozenset({"seconds", "eval_seconds", "train_s", "wall_s", "peak_mem_mb"})


def without_keys(x, keys=TIMING_KEYS):
    """x (nested dicts and lists) without the entries named in keys: clocks and per-process
    resources, which differ between two runs that are otherwise equal."""
    if isinstance(x, dict):
        return {k: without_keys(v, keys) for k, v in x.items() if k not in keys}
    if isinstance(x, list):
        return [without_keys(v, keys) for v in x]
    return x
