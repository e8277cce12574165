"""train.lr_schedule: the factors, the learning rate every batch of a run is trained with, and a run
interrupted mid-schedule that resumes to the same weights as one never interrupted."""
from __future__ import annotations

import math

import pytest
import torch

from cli_helpers import run_cli
from osttp.experiment.lr_schedule import LR_SCHEDULES, cosine_factor, lr_factor, set_lrs

TINY = ["train", "--task", "delayed-xor", "--task-param", "n_train=96", "--task-param", "n_valid=32",
        "--task-param", "n_test=32", "--hidden", "8", "--batch-size", "16", "--quiet", "--threads", "1",
        "--rule", "osttp", "--optimizer", "adam", "--lr", "0.01", "--epochs", "2"]
BATCHES = 2 * 96 // 16


def test_cosine_factor_runs_from_one_to_zero() -> None:
    assert cosine_factor(0.0) == 1.0
    assert cosine_factor(0.5) == pytest.approx(0.5, abs=1e-15)
    assert cosine_factor(1.0) == pytest.approx(0.0, abs=1e-15)
    values = [lr_factor("cosine", k, 10) for k in range(11)]
    assert all(a > b for a, b in zip(values, values[1:]))  # strictly decreasing
    assert all(lr_factor("constant", k, 10) == 1.0 for k in range(11))


@pytest.mark.parametrize("done,total", [(-1, 10), (11, 10), (0, 0)])
def test_lr_factor_refuses_positions_outside_the_run(done: int, total: int) -> None:
    with pytest.raises(ValueError, match="expected 0 <= done <= total"):
        lr_factor("cosine", done, total)


def test_set_lrs_needs_one_base_per_group() -> None:
    groups = [{"lr": 1.0}, {"lr": 2.0}]
    set_lrs(groups, [0.1, 0.2], 0.5)
    assert [g["lr"] for g in groups] == [0.05, 0.1]
    with pytest.raises(ValueError, match="2 parameter groups but 1 base"):
        set_lrs(groups, [0.1], 0.5)


def _record_lrs(monkeypatch) -> list[list[float]]:
    """Every Adam step's learning rates, per parameter group, in order."""
    seen: list[list[float]] = []
    real = torch.optim.Adam.step

    def step(self, *a, **k):  # type: ignore[no-untyped-def]
        seen.append([g["lr"] for g in self.param_groups])
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    return seen


@pytest.mark.parametrize("schedule", sorted(LR_SCHEDULES.names()))
def test_every_batch_is_trained_at_the_scheduled_rate(tmp_path, capsys, monkeypatch, schedule: str) -> None:
    seen = _record_lrs(monkeypatch)
    rc, _, err = run_cli(capsys, [*TINY, "--lr-schedule", schedule, "--hidden-lr-scale", "0.5",
                                  "--out", str(tmp_path / "r")])
    assert rc == 0, err
    assert len(seen) == BATCHES
    for k, (hidden, readout) in enumerate(seen):
        factor = LR_SCHEDULES.build(schedule, progress=k / BATCHES)
        assert hidden == 0.005 * factor and readout == 0.01 * factor, (k, hidden, readout)
    if schedule == "cosine":  # the control: the rate does move under a non-constant schedule
        assert seen[-1][1] < 0.01 * 0.1 and seen[0][1] == 0.01


def test_cosine_run_resumed_mid_schedule_equals_an_uninterrupted_one(tmp_path, capsys, monkeypatch) -> None:
    args = [*TINY, "--lr-schedule", "cosine", "--checkpoint-every", "2"]
    assert run_cli(capsys, [*args, "--out", str(tmp_path / "whole")])[0] == 0
    calls = {"n": 0}
    real = torch.optim.Adam.step

    def interrupted(self, *a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 8:  # the 8th of 12 batches: the resumed run starts from the checkpoint before it
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupted)
    rc, _, err = run_cli(capsys, [*args, "--out", str(tmp_path / "cut")])
    assert rc == 130, err
    monkeypatch.undo()
    seen = _record_lrs(monkeypatch)
    rc, _, err = run_cli(capsys, ["train", "--out", str(tmp_path / "cut"), "--resume", "--quiet"])
    assert rc == 0, err
    first = BATCHES - len(seen)  # the batch the resumed run started from
    assert 0 < first < BATCHES
    assert [lr for _, lr in seen] == [0.01 * cosine_factor(k / BATCHES) for k in range(first, BATCHES)]
    whole = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["model"]
    cut = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)["model"]
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    assert not math.isclose(seen[0][1], 0.01)  # it resumed mid-schedule, not from the start
