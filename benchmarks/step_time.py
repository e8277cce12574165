"""Milliseconds per time step and peak memory of learners (docs/performance.md).

    python benchmarks/step_time.py --threads 1 [--repeats 3] [--device cpu|cuda] [--out PATH]

Setup: SNU layers (feed-forward), n_in inputs, 10 outputs, Adam; one timed run learns one sequence
(reset, T steps, apply). Two groups: the target network (hidden 256,256, n_in 28) with every rule
but the exact one, and a small network (hidden 32,32) where the exact traces fit, both at batch 64
and 1. Times: per (group, B, T) one process builds every rule's learner and *interleaves* their
repeats, so a rule and BPTT are timed seconds apart under the same machine load; the ratio to BPTT
is the median over repeats of the per-repeat ratios. Peak memory: one fresh process per
configuration (CPU: ru_maxrss growth over the process baseline; CUDA: max_memory_allocated).

The "spoken" group is the spoken-digit shape of the paper: 700 inputs, one recurrent layer of 450
soft-reset SNUs, an integrator readout, T = 100 (and 400: memory flat in T), B = 32, with input
spikes at 5 %; its rules include `snntorch-bptt`, the same sizes trained by snnTorch + BPTT in the
same process (benchmarks/peer_snntorch.py; left out, with the reason printed, without snnTorch).
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

import peer_snntorch

FEED_FORWARD = {"recurrent": False, "cell_options": None, "readout": "linear", "spikes": None}
GROUPS = {
    "target": {"hidden": [256, 256], "n_in": 28, "T": [28, 784], "batch": [64, 1], **FEED_FORWARD,
               "rules": ["bptt", "tbptt", "osttp", "osttp-fact", "ostl", "drtp", "dfa"]},
    "small": {"hidden": [32, 32], "n_in": 28, "T": [28], "batch": [64, 1], **FEED_FORWARD,
              "rules": ["bptt", "osttp", "osttp-fact", "osttp-exact"]},
    "spoken": {"hidden": [450], "n_in": 700, "T": [100, 400], "batch": [32], "recurrent": True,
               "cell_options": {"reset": "soft"}, "readout": "integrator", "spikes": 0.05,
               "rules": ["bptt", "osttp", "osttp-fact", "osttp-local", "osttp-centred", "eprop-rand", "eprop-fact",
                         "snntorch-bptt"]},
}
# A group's network and inputs, passed to the child processes as JSON.
NET_KEYS = ("hidden", "n_in", "recurrent", "cell_options", "readout", "spikes")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _inputs(T: int, batch: int, net: dict, device: str):
    import torch

    torch.manual_seed(0)
    xs = torch.rand(T, batch, net["n_in"], device=device)
    if net["spikes"] is not None:
        xs = (xs < net["spikes"]).to(xs.dtype)
    return xs, torch.randint(0, 10, (T, batch), device=device)


def _setup(rule: str, T: int, batch: int, net: dict, device: str):
    """(learner or None, a timed run of one sequence) for an osttp rule or the snnTorch peer."""
    import torch

    import osttp

    xs, ys = _inputs(T, batch, net, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if rule == peer_snntorch.NAME:
        return None, peer_snntorch.setup([net["n_in"], *net["hidden"], 10], xs, ys, sync)
    model = osttp.Network.from_sizes([net["n_in"], *net["hidden"], 10], cell="snu", seed=0, device=device,
                                     recurrent=net["recurrent"], cell_options=net["cell_options"],
                                     readout=net["readout"])
    learner = osttp.make_learner(rule, model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))

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


def time_group(rules: list[str], T: int, batch: int, net: dict, device: str, repeats: int) -> list[dict]:
    """Interleaved repeats of every rule in this process; ms/step medians and ratios to bptt."""
    runs = {rule: _setup(rule, T, batch, net, device) for rule in rules}
    for _, once in runs.values():
        once()  # warm-up (allocations, first-call paths)
    times: dict[str, list[float]] = {rule: [] for rule in rules}
    for _ in range(repeats):
        for rule, (_, once) in runs.items():
            times[rule].append(once())
    rows = []
    for rule in rules:
        ratios = [t / b for t, b in zip(times[rule], times["bptt"])]
        spread = (round(min(ratios), 3), round(max(ratios), 3))
        peer = {}
        if peer_snntorch.NAME in times:
            peer["ratio_to_peer"] = round(statistics.median(
                [t / b for t, b in zip(times[rule], times[peer_snntorch.NAME])]), 3)
        rows.append({"rule": rule, "T": T, "batch": batch, "hidden": net["hidden"], "n_in": net["n_in"],
                     "device": device, "ms_per_step": round(1000 * statistics.median(times[rule]) / T, 3),
                     "ratio_to_bptt": round(statistics.median(ratios), 3), "ratio_min_max": spread,
                     "ms_per_step_runs": [round(1000 * t / T, 3) for t in times[rule]], **peer})
    return rows


def memory_one(rule: str, T: int, batch: int, net: dict, device: str) -> dict:
    """Peak memory of one learned sequence in this (fresh) process."""
    import torch

    import osttp  # noqa: F401  (imported and warmed up before the baseline)

    torch.ones(8, 8) @ torch.ones(8, 8)
    base = _rss_mb()
    learner, once = _setup(rule, T, batch, net, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    once()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _rss_mb() - base
    if learner is None:  # the peer: no learner state to count
        return {"peak_mem_mb": round(peak, 1), "learner_state_mb": None, "trace_mb": None}
    traces = getattr(learner.stream, "traces", [])
    trace_bytes = sum(t.numel() * t.element_size() for tr in traces for t in tr.tensors())
    return {"peak_mem_mb": round(peak, 1), "learner_state_mb": round(learner.state_nbytes() / 2**20, 2),
            "trace_mb": round(trace_bytes / 2**20, 3)}


def _child(args: argparse.Namespace) -> None:
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    net = json.loads(args.net)
    T, batch = int(args.T), int(args.batch)
    if args.child == "time":
        out = time_group(args.rules.split(","), T, batch, net, args.device, args.repeats)
    else:
        out = memory_one(args.rules, T, batch, net, args.device)
    print(json.dumps(out))


def _run_child(kind: str, rules: str, T: int, batch: int, net: dict, args: argparse.Namespace):
    cmd = [sys.executable, __file__, "--child", kind, "--rules", rules, "--T", str(T), "--batch", str(batch),
           "--net", json.dumps(net), "--device", args.device,
           "--repeats", str(args.repeats), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _peer_available() -> bool:
    reason = peer_snntorch.available()
    if reason is not None:
        print(f"{peer_snntorch.NAME} left out: {reason}", flush=True)
    return reason is None


def _mb(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _row_line(group: str, row: dict) -> str:
    return (f"{group:>6} {row['rule']:>13}  T={row['T']:<4d} B={row['batch']:<3d} {row['ms_per_step']:8.3f} ms/step  "
            f"x{row['ratio_to_bptt']:5.2f} bptt {row['ratio_min_max']}  peak {row['peak_mem_mb']:7.1f} MB  "
            f"state {_mb(row['learner_state_mb'], 2):>7} MB  traces {_mb(row['trace_mb'], 3):>7} MB")


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
    p.add_argument("--net", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return
    rows = []
    for group in args.groups.split(","):
        g = GROUPS[group]
        net = {key: g[key] for key in NET_KEYS}
        rules = [r for r in g["rules"] if r != peer_snntorch.NAME or _peer_available()]
        for T in g["T"]:
            for batch in g["batch"]:
                timed = _run_child("time", ",".join(rules), T, batch, net, args)
                for row in timed:
                    row.update(_run_child("memory", row["rule"], T, batch, net, args))
                    row["group"] = group
                    rows.append(row)
                    print(_row_line(group, row), flush=True)
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
