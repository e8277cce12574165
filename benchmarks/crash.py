"""SIGKILL a training run at random moments and resume it: every run must end bit-identical to one
that was never interrupted (docs/reliability.md).

    python benchmarks/crash.py [--moments 30] [--seed 0] [--n-train 160] [--dir /tmp/osttp-crash]

One uninterrupted reference run (a real `python -m osttp train` process) gives the run's duration
D, start-up included, and the moment S its run directory appeared. A quarter of the trials kill a
fresh run within [0, S] of its launch (the interpreter start, the directory and config.toml writes),
the rest within [0, 0.95 (D - S)] of the moment its directory appeared (the first checkpoint,
training, every later checkpoint, results): trial i of a group of m over a span L dies at
L (i + u_i) / m, u_i uniform and seeded. What existed at each kill
(directory, config.toml, a checkpoint, epochs logged) is reported. The killed run is then continued with `--resume` (or
started again with the same command when the kill came before its directory existed) and compared
with the reference: parameters of model.pt and last.pt, the optimizer state, metrics.jsonl and
results.json (wall-clock fields excepted). tests/test_reliability.py runs 5 moments.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ARGS = ["train", "--task", "delayed-xor", "--task-param", "n_valid=32",
        "--task-param", "n_test=32", "--hidden", "12", "--recurrent", "--rule", "osttp", "--epochs", "3",
        "--batch-size", "16", "--checkpoint-every", "2", "--threads", "1", "--quiet"]
TIMING = {"seconds", "eval_seconds", "train_s", "wall_s", "peak_mem_mb", "threads"}


N_TRAIN = 160  # training sequences: 10 batches an epoch (--n-train: a longer run, more kills inside training)


def _launch(out: Path, resume: bool) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "osttp", *ARGS, "--task-param", f"n_train={N_TRAIN}", "--out", str(out), *(["--resume"] if resume else [])]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def _finish(out: Path) -> None:
    p = _launch(out, resume=out.exists())
    _, err = p.communicate(timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"resume of {out} failed with exit {p.returncode}: {err.strip()}")


def _no_timing(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _no_timing(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [_no_timing(v) for v in x]
    return x


def _state(out: Path) -> dict[str, Any]:
    model = torch.load(out / "model.pt", weights_only=True)["model"]
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"model": model, "last": last["model"], "optimizer": last["optimizer"]["state"],
            "metrics": _no_timing(metrics), "results": _no_timing(json.loads((out / "results.json").read_text()))}


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _reference(out: Path) -> tuple[float, float]:
    """Run to the end; (seconds until the run directory appeared, total seconds)."""
    t0 = time.monotonic()
    p = _launch(out, resume=False)
    t_dir = None
    while p.poll() is None:
        if t_dir is None and out.exists():
            t_dir = time.monotonic() - t0
        time.sleep(0.002)
    if p.returncode != 0:
        raise RuntimeError(f"reference run failed with exit {p.returncode}: {p.stderr.read().strip()}")
    duration = time.monotonic() - t0
    return (duration if t_dir is None else t_dir), duration


def kill_moments(start_up: float, duration: float, n: int, rng: random.Random) -> list[tuple[str, float]]:
    """n moments as (clock, seconds): a quarter at ("start", t), t spread over [0, start_up] after the
    launch; the rest at ("dir", t), t spread over [0, 0.95 (duration - start_up)] after the run
    directory appeared. Counting from the directory keeps the kills inside the run whatever the
    machine's load does to the interpreter's start-up."""
    early = max(1, n // 4) if n > 1 else 0
    groups = [("start", start_up, early), ("dir", 0.95 * max(duration - start_up, 0.0), n - early)]
    return [(clock, span * (i + rng.random()) / m) for clock, span, m in groups for i in range(m)]


def _wait_and_kill(p: subprocess.Popen, out: Path, clock: str, t: float) -> bool:
    """SIGKILL p t seconds after its launch or after `out` appeared; False when it ended first."""
    if clock == "dir":
        while p.poll() is None and not out.exists():
            time.sleep(0.002)
    deadline = time.monotonic() + t
    while p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    if p.poll() is not None:
        return False
    p.send_signal(signal.SIGKILL)
    return True


def _found(out: Path) -> dict[str, Any]:
    """What a killed run left behind."""
    metrics = out / "metrics.jsonl"
    return {"dir": out.exists(), "config": (out / "config.toml").exists(),
            "checkpoint": (out / "checkpoints" / "last.pt").exists(),
            "epochs_logged": len(metrics.read_bytes().splitlines()) if metrics.exists() else 0}


def run_trials(root: Path, moments: int = 30, seed: int = 0) -> dict[str, Any]:
    """Reference run, then `moments` kill-and-resume trials under root; counts of what happened."""
    root.mkdir(parents=True, exist_ok=True)
    start_up, duration = _reference(root / "ref")
    want = _state(root / "ref")
    rng = random.Random(seed)
    report: dict[str, Any] = {"trials": 0, "identical": 0, "killed": 0, "finished_before_kill": 0,
                              "dir_missing_at_kill": 0, "no_config_at_kill": 0, "no_checkpoint_at_kill": 0,
                              "reference_s": round(duration, 2), "start_up_s": round(start_up, 2),
                              "moments_s": [], "found": []}
    for i, (clock, t_kill) in enumerate(kill_moments(start_up, duration, moments, rng)):
        out = root / f"trial{i}"
        p = _launch(out, resume=False)
        report["killed"] += _wait_and_kill(p, out, clock, t_kill)
        p.wait()
        found = _found(out)
        report["found"].append(found)
        report["dir_missing_at_kill"] += not found["dir"]
        report["no_config_at_kill"] += found["dir"] and not found["config"]
        report["no_checkpoint_at_kill"] += found["config"] and not found["checkpoint"]
        if p.returncode == 0:
            report["finished_before_kill"] += 1
        else:
            _finish(out)
        report["trials"] += 1
        report["moments_s"].append(f"{clock}+{t_kill:.3f}")
        if _equal(want, _state(out)):
            report["identical"] += 1
        else:
            report.setdefault("different", []).append(i)
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moments", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--n-train", type=int, default=N_TRAIN)
    a = ap.parse_args()
    globals()["N_TRAIN"] = a.n_train
    root = a.dir or Path(tempfile.mkdtemp(prefix="osttp-crash-"))
    try:
        report = run_trials(root, a.moments, a.seed)
    finally:
        if a.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=1))
    return 0 if report["identical"] == report["trials"] else 1


if __name__ == "__main__":
    sys.exit(main())
