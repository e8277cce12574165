"""`osttp sweep`: a 4-point grid on a tiny task with 2 workers, resumed after a stop and after a
kill without repeating finished trials; selection on the valid metric; bad specs exit 2."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from osttp.experiment.cli import main

BASE = """
[task]
name = "delayed-xor"
[task.params]
n_train = 64
n_valid = 32
n_test = 32
[model]
hidden = [4]
[train]
rule = "osttp"
epochs = 1
batch_size = 16
max_batches = 2
[run]
threads = 1
"""
GRID = """
[sweep]
base = "base.toml"
sampler = "grid"
[sweep.space]
"train.lr" = [0.001, 0.05]
"task.params.noise" = [0.05, 1.0]
"""


def _write(tmp_path: Path, spec: str = GRID) -> Path:
    (tmp_path / "base.toml").write_text(BASE)
    p = tmp_path / "spec.toml"
    p.write_text(spec)
    return p


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _db_trials(out: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(out / "study.db") as db:
        return sorted(db.execute("SELECT number, state FROM trials").fetchall())


def _completed_points(summary: dict) -> list[tuple[float, float]]:
    return sorted((r["values"]["train.lr"], r["values"]["task.params.noise"])
                  for r in summary["trials"] if r["status"] == "completed")


def test_grid_two_workers_resume_and_kill(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, out = _write(tmp_path), tmp_path / "sweep"
    # 1. the first two grid points, in parallel
    rc, stdout, err = _run(capsys, ["sweep", str(spec), "--workers", "2", "--n-trials", "2", "--out", str(out)])
    assert rc == 0, err
    assert sorted(p.name for p in (out / "trials").iterdir() if p.is_dir()) == ["0000", "0001"]
    first = {n: json.loads((out / "trials" / f"000{n}" / "results.json").read_text()) for n in (0, 1)}

    # 2. resume to the whole grid (n_trials defaults to its 4 points), killed while trial 3 runs
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "osttp", "sweep", str(spec), "--workers", "1", "--out", str(out),
                             "--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300  # generous: a loaded machine starts child processes slowly
    while not (out / "trials" / "0003.toml").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert (out / "trials" / "0003.toml").exists(), "the resumed sweep never started trial 3"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "trials" / "0002" / "results.json").is_file()  # trial 2 finished before trial 3 started
    assert dict(_db_trials(out))[3] == "RUNNING"  # left behind by the killed sweep

    # 3. resume again: trial 3 is failed as interrupted and re-queued (trial 4), nothing else repeats
    rc, stdout, err = _run(capsys, ["sweep", str(spec), "--workers", "2", "--out", str(out), "--resume"])
    assert rc == 0, err
    assert "trial 3: left running by an earlier session; queued again" in stdout
    assert "trial 4: started" in stdout and "trial 0: started" not in stdout and "trial 2: started" not in stdout
    assert _db_trials(out) == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE"), (3, "FAIL"), (4, "COMPLETE")]
    for n in (0, 1):  # finished runs were not touched
        assert json.loads((out / "trials" / f"000{n}" / "results.json").read_text()) == first[n]

    summary = json.loads((out / "summary.json").read_text())
    assert _completed_points(summary) == [(0.001, 0.05), (0.001, 1.0), (0.05, 0.05), (0.05, 1.0)]
    by_number = {r["number"]: r for r in summary["trials"]}
    assert by_number[3]["status"] == "interrupted" and by_number[4]["retry_of"] == 3
    assert by_number[4]["values"] == by_number[3]["values"]
    # the best trial is the one with the highest VALID accuracy in its results.json (lowest number on ties)
    valid = {n: json.loads((out / "trials" / f"{n:04d}" / "results.json").read_text())["valid_metric"]
             for n in (0, 1, 2, 4)}
    for n, v in valid.items():
        assert by_number[n]["value"] == v
    best = max(sorted(valid), key=lambda n: valid[n])
    assert summary["best"]["number"] == best and summary["direction"] == "maximize"
    assert summary["metric"] == "valid_metric" and summary["metric_name"] == "accuracy"
    md = (out / "summary.md").read_text()
    assert f"**Best:** trial {best}, valid accuracy" in md and (out / "sweep.png").stat().st_size > 1000
    assert f"best: trial {best}, valid accuracy" in stdout

    # 4. a finished sweep resumed does nothing new; an existing directory without --resume is refused
    rc, stdout, err = _run(capsys, ["sweep", str(spec), "--out", str(out), "--resume"])
    assert rc == 0 and "started" not in stdout and len(_db_trials(out)) == 5
    rc, _, err = _run(capsys, ["sweep", str(spec), "--out", str(out)])
    assert rc == 2 and err.count("\n") == 1 and "already exists" in err


def test_random_sampler_stays_in_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _write(tmp_path, '[sweep]\nbase = "base.toml"\nsampler = "random"\nn_trials = 2\nseed = 3\n'
                            '[sweep.space]\n"train.lr" = { low = 1e-4, high = 1e-1, log = true }\n'
                            '"model.hidden" = [[4], [3, 3]]\n')
    out = tmp_path / "rnd"
    rc, stdout, err = _run(capsys, ["sweep", str(spec), "--workers", "2", "--out", str(out)])
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"completed": 2}
    for r in summary["trials"]:
        assert 1e-4 <= r["values"]["train.lr"] <= 1e-1 and r["values"]["model.hidden"] in ([4], [3, 3])
        cfg = (out / r["run_dir"] / "config.toml").read_text()
        assert f"lr = {r['values']['train.lr']!r}" in cfg  # the trial ran with the sampled value


@pytest.mark.parametrize("spec, match", [
    ("[task]\nname = 'delayed-xor'\n", "has no [sweep] table"),
    (GRID.replace('"train.lr"', '"train.lrr"'), "'train.lrr' is not a config key"),
    (GRID.replace('"task.params.noise"', '"train.lr.x"'), "only free-form tables"),
    (GRID.replace('"grid"', '"annealing"'), "sampler = 'annealing'"),
    (GRID.replace("[0.001, 0.05]", "{ low = 0.001, high = 0.05 }"), "a grid needs a list of values"),
    (GRID.replace("[0.001, 0.05]", "[-1.0, 0.05]"), "value -1.0 gives an invalid config"),
    (GRID.replace("[0.001, 0.05]", "{ low = 0.0, high = 0.05, log = true, num = 3 }"), "log range needs low > 0"),
    (GRID.replace("[0.001, 0.05]", "[]"), "empty list"),
    (GRID.replace('sampler = "grid"', 'sampler = "grid"\nn_trials = 5'), "exceeds the 4 points"),
    (GRID.replace('sampler = "grid"', 'sampler = "tpe"'), "n_trials is required"),
    (GRID.replace('sampler = "grid"', 'sampler = "grid"\nmetric = "test_metric"'), "valid split only"),
    (GRID.replace("base.toml", "missing.toml"), "base config 'missing.toml' not found"),
    (GRID.replace('sampler = "grid"', 'sampler = "grid"\nworkers = 2'), "unknown [sweep] key(s) workers"),
    ("[sweep]\nbase = 'base.toml'\nsampler = 'grid'\n[sweep.space]\n'task.params.delay' = [-1, 2]\n", "delay"),
])
def test_bad_spec_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str,
                                        match: str) -> None:
    p = _write(tmp_path, spec)
    out = tmp_path / "never"
    rc, _, err = _run(capsys, ["sweep", str(p), "--out", str(out)])
    assert rc == 2 and err.startswith("osttp: error: ") and err.count("\n") == 1, err
    assert match in err, err
    assert not out.exists()


def test_bad_flags_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path)
    for argv, match in ((["--workers", "0"], "--workers 0"), (["--resume"], "nothing to resume"),
                        (["--n-trials", "9"], "exceeds the 4 points")):
        rc, _, err = _run(capsys, ["sweep", str(p), "--out", str(tmp_path / "x"), *argv])
        assert rc == 2 and err.count("\n") == 1 and match in err, err
    rc, _, err = _run(capsys, ["sweep", str(p), "--out", str(tmp_path / "y"), "--storage", "nosuchdb://x"])
    assert rc == 2 and err.count("\n") == 1 and "cannot open the study storage" in err, err
