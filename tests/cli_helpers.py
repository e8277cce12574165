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
