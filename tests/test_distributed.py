"""Data-parallel training (docs/distributed.md): 2 gloo processes on this CPU equal one
process on the combined batch; a killed process stops the job, and --resume continues it bit for bit."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli_helpers import TIMING_KEYS, without_keys
from osttp.distributed import shard_bounds, tensor_digest
from osttp.errors import OsttpError
from osttp.experiment.cli import main

# A small recurrent SNU network in float64; 48 training sequences in batches of 16, so each process
# holds 8 per batch; 2 epochs: several updates (6 at sequence end, 6 x 12 per step).
BASE = ["train", "--task", "delayed-xor", "--task-param", "n_train=48", "--task-param", "n_valid=16",
        "--task-param", "n_test=16", "--task-param", "delay=4", "--cell", "snu", "--hidden", "6", "--recurrent",
        "--dtype", "float64", "--optimizer", "adam", "--lr", "0.01", "--batch-size", "16", "--threads", "1", "--quiet"]
# per-process resources and clocks, not results
TIMING = TIMING_KEYS | {"threads", "processes", "learner_state_mb"}


def _cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "osttp", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def _state(out: Path) -> dict:
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    results = json.loads((out / "results.json").read_text())
    return {"model": last["model"], "optimizer": last["optimizer"]["state"],
            "metrics": _no_timing(metrics), "results": _no_timing(results)}


def _no_timing(x):
    return without_keys(x, TIMING)


def _close(a, b, tol: float, where: str = "") -> None:
    """Tensors and floats within tol (absolute), everything else equal; tol 0 means bit for bit."""
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert (a - b).abs().max().item() <= tol if a.numel() else True, (where, (a - b).abs().max().item())
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], tol, f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, tol, f"{where}[{i}]")
    elif isinstance(a, float) and tol > 0:
        assert abs(a - b) <= tol, (where, a, b)
    else:
        assert a == b, (where, a, b)


@pytest.mark.parametrize("rule", ["bptt", "osttp", "eprop-sym"])
@pytest.mark.parametrize("schedule", ["sequence-end", "per-step"])
def test_two_processes_equal_one_on_the_combined_batch(tmp_path, rule, schedule) -> None:
    args = [*BASE, "--rule", rule, "--schedule", schedule, "--epochs", "2"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, "--out", str(one)]) == 0
    p = _cli([*args, "--out", str(two), "--nproc", "2"])
    assert p.returncode == 0, p.stderr
    a, b = _state(one), _state(two)
    assert json.loads((two / "results.json").read_text())["processes"] == 2
    assert a["optimizer"] and b["optimizer"]  # Adam's slots are compared too
    moved = max((a["model"][k] - torch.load(one / "model.pt", weights_only=True)["model"][k]).abs().max().item()
                for k in a["model"])
    assert moved == 0.0  # last.pt is the final state
    _close(a, b, 1e-10)
    # negative control: one update fewer is far from it
    short = tmp_path / "short"
    assert main([*args[:-2], "--epochs", "1", "--out", str(short)]) == 0
    with pytest.raises(AssertionError):
        _close(_state(short)["model"], b["model"], 1e-10)


def _ranks(launcher: subprocess.Popen) -> dict[int, int]:
    """pid of each rank started under `launcher` (read from their environment)."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            if f"TORCHELASTIC_RUN_ID".encode() not in b"".join(env):
                continue
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == launcher.pid:
            rank = [int(e.split(b"=")[1]) for e in env if e.startswith(b"RANK=")]
            if rank:
                found[rank[0]] = int(d.name)
    return found


def test_a_killed_process_stops_the_job_and_resume_is_bit_identical(tmp_path) -> None:
    args = [*BASE, "--rule", "osttp", "--epochs", "12", "--checkpoint-every", "2", "--nproc", "2"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    p = _cli([*args, "--out", str(ref)])
    assert p.returncode == 0, p.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, "-m", "osttp", *args, "--out", str(cut)], stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 240
    metrics = cut / "metrics.jsonl"
    while time.monotonic() < deadline and launcher.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    ranks = _ranks(launcher)
    assert set(ranks) == {0, 1}, ranks
    os.kill(ranks[1], signal.SIGKILL)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert "process 1 of 2 ended with signal SIGKILL" in err and "--resume" in err, err
    assert "Traceback" not in err, err
    assert not (cut / "results.json").exists()
    p = _cli([*args, "--out", str(cut), "--resume"])
    assert p.returncode == 0, p.stderr
    _close(_state(ref), _state(cut), 0.0)


@pytest.mark.parametrize("flags,needle", [
    (["--synapse", "ideal", "--optimizer", "sgd"], "hardware.synapse = ideal"),
    (["--rate-reg", "0.1"], "train.rate_reg = 0.1"),
    (["--batch-size", "1"], "expected at least 2"),
])
def test_what_cannot_run_data_parallel_is_one_line_and_exit_2(tmp_path, flags, needle) -> None:
    out = tmp_path / "run"
    p = _cli([*BASE, "--rule", "osttp", "--epochs", "1", *flags, "--nproc", "2", "--out", str(out)])
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr, p.stderr
    assert not out.exists()


def test_an_existing_run_directory_is_one_line_from_rank_0(tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    p = _cli([*BASE, "--rule", "osttp", "--epochs", "1", "--nproc", "2", "--out", str(out)])
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "already exists" in lines[0], p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("B,world", [(16, 2), (17, 2), (5, 3), (3, 3), (64, 7)])
def test_shards_put_side_by_side_are_the_batch(B, world) -> None:
    bounds = [shard_bounds(B, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == B
    assert all(hi == lo2 for (_, hi), (lo2, _) in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_digest_sees_one_changed_bit() -> None:
    w = torch.randn(4, 4, dtype=torch.float64)
    v = w.clone()
    v.view(torch.int64)[1, 2] ^= 1
    assert tensor_digest([("w", w)]) == tensor_digest([("w", w.clone())])
    assert tensor_digest([("w", w)]) != tensor_digest([("w", v)])
    assert tensor_digest([("w", w)]) != tensor_digest([("u", w)])


def _differing_ranks(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from osttp.distributed import DataParallel

    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}")
    dp = DataParallel.from_process_group()
    dp.check_identical([("w", torch.zeros(3))], "the same weights")  # equal: passes
    try:
        dp.check_identical([("w", torch.full((3,), float(rank)))], "the initial weights")
    except OsttpError as e:
        Path(out, f"rank{rank}.txt").write_text(str(e))
    dist.destroy_process_group()


def test_ranks_that_start_from_different_weights_are_refused(tmp_path) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_differing_ranks, args=(2, port, str(tmp_path)), nprocs=2)
    for r in (0, 1):
        text = (tmp_path / f"rank{r}.txt").read_text()
        assert "the initial weights differ between rank 0 and rank(s) 1" in text


def test_resume_with_another_process_count(tmp_path) -> None:
    """Supported: the union of the shards is the batch whatever their number, so a run continued with
    1 process equals the 1-process run to rounding (not bit for bit: the sums are ordered differently)."""
    args = [*BASE, "--rule", "osttp"]
    one, mixed = tmp_path / "one", tmp_path / "mixed"
    assert main([*args, "--epochs", "2", "--out", str(one)]) == 0
    p = _cli([*args, "--epochs", "1", "--nproc", "2", "--out", str(mixed)])
    assert p.returncode == 0, p.stderr
    assert main([*args, "--epochs", "2", "--nproc", "1", "--out", str(mixed), "--resume"]) == 0
    _close(_state(one), _state(mixed), 1e-10)
    assert "nproc = 1" in (mixed / "config.toml").read_text()


def test_ctrl_c_stops_every_process_with_one_line_and_resume_finishes(tmp_path) -> None:
    out = tmp_path / "run"
    args = [*BASE, "--rule", "osttp", "--epochs", "40", "--nproc", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "osttp", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and p.poll() is None and not (out / "metrics.jsonl").exists():
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert err.strip().splitlines() == ["osttp: interrupted (continue a run with --resume)"], err
    q = _cli([*args, "--resume", "--epochs", "3"])
    assert q.returncode == 0, q.stderr
    assert json.loads((out / "results.json").read_text())["epochs"] == 3


def test_divergence_is_one_line_exit_3_and_recorded_by_rank_0(tmp_path) -> None:
    out = tmp_path / "run"
    p = _cli([*BASE, "--dtype", "float32", "--rule", "bptt", "--optimizer", "sgd", "--lr", "1e37", "--epochs", "2",
              "--nproc", "2", "--out", str(out)])  # later flags win
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "[rank 0] training diverged" in lines[0], p.stderr
    assert json.loads((out / "results.json").read_text())["status"] == "diverged"
