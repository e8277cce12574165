"""`[train.signal_options]` / `--signal-option`: the learning signal's parameters from the command line,
recorded in config.toml, and refused in one line (exit 2, nothing written) when they do not fit."""
from __future__ import annotations

import tomllib

import pytest

from cli_helpers import run_cli

TINY = ["--task", "delayed-xor", "--task-param", "n_train=64", "--task-param", "n_valid=32",
        "--task-param", "n_test=32", "--hidden", "8", "--batch-size", "16", "--epochs", "1", "--quiet"]


def test_signal_options_are_used_and_recorded(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, ["train", *TINY, "--rule", "osttp-local", "--signal-option", "beta=2",
                                  "--signal-option", "kappa=0.5", "--out", str(out)])
    assert rc == 0, err
    with open(out / "config.toml", "rb") as f:
        assert tomllib.load(f)["train"]["signal_options"] == {"beta": 2, "kappa": 0.5}


@pytest.mark.parametrize("flags, message", [
    (["--rule", "osttp-local", "--signal-option", "gamma=1"], "has no option(s) gamma; expected one of beta, kappa"),
    (["--rule", "osttp-local", "--signal-option", "beta=-1"], "local-error beta must be a finite number > 0"),
    (["--rule", "bptt", "--signal-option", "beta=1"], "rule 'bptt' has no learning signal"),
])
def test_bad_signal_options_are_one_line_and_write_nothing(tmp_path, capsys, flags, message) -> None:
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, ["train", *TINY, *flags, "--out", str(out)])
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
