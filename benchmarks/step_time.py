"""Milliseconds per time step and peak memory of learners (docs/performance.md).

    python benchmarks/step_time.py --threads 1 [--repeats 3] [--device cpu|cuda] [--out PATH]

Setup: SNU layers (feed-forward), n_in inputs, 10 outputs, Adam; one timed run learns one sequence
(reset, T steps, apply). Two groups: the target network (hidden 256,256, n_in 28) with every rule
but the exact one, and a small network (hidden 32,32) where the exact traces fit, both at batch 64
and 1. Times: per (group, B, T) one process builds every rule's learner and *interleaves* their
repeats, so a rule and BPTT are timed seconds apart under the same machine load; the ratio to BPTT
is the median over repeats of the per-repeat ratios. Peak memory: one fresh process per
configuration (CPU: ru_maxrss growth over the process baseline; CUDA: max_memory_allocated).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

GROUPS = {
    "target": {"hidden": [256, 256], "n_in": 28, "T": [28, 784], "batch": [64, 1],
               "rules": ["bptt", "tbptt", "osttp", "osttp-fact", "ostl", "drtp", "dfa"]},
    "small": {"hidden": [32, 32], "n_in": 28, "T": [28], "batch": [64, 1],
              "rules": ["bptt", "osttp", "osttp-fact", "osttp-exact"]},
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _setup(rule: str, T: int, batch: int, hidden: list[int], n_in: int, device: str):
    import torch

    import osttp

    torch.manual_seed(0)
    net = osttp.Network.from_sizes([n_in, *hidden, 10], cell="snu", seed=0, device=device)
    learner = osttp.make_learner(rule, net, optimizer=torch.optim.Adam(net.parameters(), lr=1e-3))
    xs = torch.rand(T, batch, n_in, device=device)
    ys = torch.randint(0, 10, (T, batch), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def once() -> float:
        sync()
        t0 = time.perf_counter()
        learner.reset(batch)
        for t in range(T):
            learner.step(xs[t], ys[t])
        learner.apply()
        sync()
        return time.perf_counter() - t0

    return learner, once


def time_group(rules: list[str], T: int, batch: int, hidden: list[int], n_in: int, device: str,
               repeats: int) -> list[dict]:
    """Interleaved repeats of every rule in this process; ms/step medians and ratios to bptt."""
    runs = {rule: _setup(rule, T, batch, hidden, n_in, device) for rule in rules}
    for _, once in runs.values():
        once()  # warm-up (allocations, first-call paths)
    times: dict[str, list[float]] = {rule: [] for rule in rules}
    for _ in range(repeats):
        for rule, (_, once) in runs.items():
            times[rule].append(once())
    rows = []
    for rule in rules:
        ratios = [t / b for t, b in zip(times[rule], times["bptt"])]
        rows.append({"rule": rule, "T": T, "batch": batch, "hidden": hidden, "n_in": n_in, "device": device,
                     "ms_per_step": round(1000 * statistics.median(times[rule]) / T, 3),
                     "ratio_to_bptt": round(statistics.median(ratios), 3),
                     "ms_per_step_runs": [round(1000 * t / T, 3) for t in times[rule]]})
    return rows


def memory_one(rule: str, T: int, batch: int, hidden: list[int], n_in: int, device: str) -> dict:
    """Peak memory of one learned sequence in this (fresh) process."""
    import torch

    import osttp  # noqa: F401  (imported and warmed up before the baseline)

    torch.ones(8, 8) @ torch.ones(8, 8)
    base = _rss_mb()
    learner, once = _setup(rule, T, batch, hidden, n_in, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    once()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _rss_mb() - base
    traces = getattr(learner.stream, "traces", [])
    trace_bytes = sum(t.numel() * t.element_size() for tr in traces for t in tr.tensors())
    return {"peak_mem_mb": round(peak, 1), "learner_state_mb": round(learner.state_nbytes() / 2**20, 2),
            "trace_mb": round(trace_bytes / 2**20, 3)}


def _child(args: argparse.Namespace) -> None:
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    hidden = [int(h) for h in args.hidden.split(",")]
    T, batch = int(args.T), int(args.batch)
    if args.child == "time":
        out = time_group(args.rules.split(","), T, batch, hidden, args.n_in, args.device, args.repeats)
    else:
        out = memory_one(args.rules, T, batch, hidden, args.n_in, args.device)
    print(json.dumps(out))


def _run_child(kind: str, rules: str, T: int, batch: int, hidden: list[int], n_in: int,
               args: argparse.Namespace):
    cmd = [sys.executable, __file__, "--child", kind, "--rules", rules, "--T", str(T), "--batch", str(batch),
           "--hidden", ",".join(map(str, hidden)), "--n-in", str(n_in), "--device", args.device,
           "--repeats", str(args.repeats), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups", default=",".join(GROUPS), help="which of: " + ", ".join(GROUPS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default=None)
    p.add_argument("--child", choices=["time", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--rules", help=argparse.SUPPRESS)
    p.add_argument("--T", help=argparse.SUPPRESS)
    p.add_argument("--batch", help=argparse.SUPPRESS)
    p.add_argument("--hidden", help=argparse.SUPPRESS)
    p.add_argument("--n-in", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return
    rows = []
    for group in args.groups.split(","):
        g = GROUPS[group]
        for T in g["T"]:
            for batch in g["batch"]:
                timed = _run_child("time", ",".join(g["rules"]), T, batch, g["hidden"], g["n_in"], args)
                for row in timed:
                    row.update(_run_child("memory", row["rule"], T, batch, g["hidden"], g["n_in"], args))
                    row["group"] = group
                    rows.append(row)
                    print(f"{group:>6} {row['rule']:>11}  T={T:<4d} B={batch:<3d} {row['ms_per_step']:8.3f} ms/step  "
                          f"x{row['ratio_to_bptt']:5.2f} bptt  peak {row['peak_mem_mb']:7.1f} MB  "
                          f"state {row['learner_state_mb']:7.2f} MB  traces {row['trace_mb']:7.3f} MB", flush=True)
    import torch
    result = {"command": "python " + " ".join(sys.argv), "torch": torch.__version__,
              "threads": args.threads or torch.get_num_threads(), "load_average_after": os.getloadavg(),
              "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "groups": GROUPS, "rows": rows}
    out_path = args.out or f"results/step_time_{args.device}.json"
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
