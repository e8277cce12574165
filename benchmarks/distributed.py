"""Data-parallel throughput: training samples per second with 1 and N processes (docs/distributed.md).

    python benchmarks/distributed.py [--nproc 1,2] [--batches 40] [--repeats 3] [--device cpu]
                                     [--out results/distributed_cpu.json]

Each case is a real `osttp train` run (`--nproc N`, one torch thread per process, so N processes use
N cores); the figure is training sequences / results.json's train_s (training only: start-up,
evaluation and checkpoints excluded), over --batches batches of the first epoch. "1 process, N
threads" is the other way to use the same cores, for comparison. Runs are interleaved over repeats
(every case once, then again) and the median is reported.

Cases (smnist-rows needs the MNIST files in OSTTP_DATA):
- smnist-rows, 28 -> 256 recurrent SNU -> 10, batch 64, T = 28: osttp and bptt, updates at sequence end;
- the same osttp with per-step updates: an all-reduce of every gradient at each of the 28 steps;
- delayed XOR, 3 -> 16 -> 2, batch 32: a network so small that the exchange dominates.
On a GPU machine (--device cuda) each process takes one GPU (NCCL).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SMNIST = ["--task", "smnist-rows", "--hidden", "256", "--recurrent", "--cell", "snu", "--batch-size", "64",
          "--optimizer", "adam", "--lr", "0.001"]
XOR = ["--task", "delayed-xor", "--task-param", "n_train=4096", "--hidden", "16", "--recurrent", "--batch-size", "32"]
CASES: dict[str, list[str]] = {
    "smnist-rows osttp": [*SMNIST, "--rule", "osttp"],
    "smnist-rows bptt": [*SMNIST, "--rule", "bptt"],
    "smnist-rows osttp per-step": [*SMNIST, "--rule", "osttp", "--schedule", "per-step"],
    "delayed-xor osttp": [*XOR, "--rule", "osttp"],
}


def run_case(args: list[str], nproc: int, threads: int, batches: int, device: str, tmp: Path) -> dict[str, Any]:
    out = tmp / f"run{len(list(tmp.iterdir()))}"
    cmd = [sys.executable, "-m", "osttp", "train", *args, "--epochs", "1", "--max-train-batches", str(batches),
           "--max-valid-batches", "1", "--max-test-batches", "1", "--threads", str(threads),
           "--device", device, "--nproc", str(nproc), "--quiet", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.strip()}")
    r = json.loads((out / "results.json").read_text())
    return {"samples_per_s": r["train_batches"] * r["batch_size"] / r["train_s"], "train_s": r["train_s"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", default="1,2", help="process counts, comma-separated")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "distributed_cpu.json")
    a = ap.parse_args()
    counts = [int(n) for n in a.nproc.split(",")]
    setups = [(n, 1) for n in counts] + [(1, n) for n in counts if n > 1]  # (processes, threads each)
    names = a.cases.split(",")
    times: dict[tuple[str, int, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.repeats):
            for name in names:
                for nproc, threads in setups:
                    r = run_case(CASES[name], nproc, threads, a.batches, a.device, Path(tmp))
                    times.setdefault((name, nproc, threads), []).append(r["samples_per_s"])
                    print(f"{name:28s} {nproc} proc x {threads} thr: {r['samples_per_s']:8.1f} samples/s", flush=True)
    rows = []
    for (name, nproc, threads), v in times.items():
        base = statistics.median(times[(name, 1, 1)])
        rows.append({"case": name, "processes": nproc, "threads_per_process": threads,
                     "samples_per_s": statistics.median(v), "runs": v, "speedup": statistics.median(v) / base})
    record = {"command": "python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]),
              "device": a.device, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "batches": a.batches, "repeats": a.repeats, "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, indent=1) + "\n")
    print("\n| case | processes x threads | samples/s (median) | speed-up vs 1 x 1 |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['processes']} x {r['threads_per_process']} | {r['samples_per_s']:.1f} | "
              f"{r['speedup']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
