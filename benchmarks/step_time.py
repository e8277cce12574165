"""Milliseconds per time step and peak memory of learners (issue: core performance).

    python benchmarks/step_time.py [--rules bptt,osttp] [--batch 64] [--hidden 256,256] [--T 28,784]
        [--device cpu|cuda] [--threads N] [--out results/step_time_<device>.json]

Each configuration runs in a fresh subprocess so peak memory (CPU: ru_maxrss growth over the
process baseline; CUDA: torch.cuda.max_memory_allocated) belongs to that run alone. One sequence
is learned (reset, T steps, apply with Adam); the time per step is the median of `--repeats` runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(rule: str, T: int, batch: int, hidden: list[int], n_in: int, device: str, repeats: int,
            threads: int) -> dict:
    import torch

    import osttp

    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = osttp.Network.from_sizes([n_in, *hidden, 10], cell="snu", seed=0, device=device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    learner = osttp.make_learner(rule, net, optimizer=opt)
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

    base_rss = _rss_mb()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    once()  # warm-up (allocations, kernels)
    times = sorted(once() for _ in range(repeats))
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _rss_mb() - base_rss)
    return {"rule": rule, "T": T, "batch": batch, "hidden": hidden, "n_in": n_in, "device": device,
            "ms_per_step": 1000 * times[len(times) // 2] / T, "peak_mem_mb": round(peak, 1),
            "learner_state_mb": round(learner.state_nbytes() / 2**20, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rules", default="bptt,osttp")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", default="256,256")
    p.add_argument("--n-in", type=int, default=28)
    p.add_argument("--T", default="28,784")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default=None)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    hidden = [int(h) for h in args.hidden.split(",")]
    if args.one:
        (rule,), (T,) = args.rules.split(","), [int(t) for t in args.T.split(",")]
        print(json.dumps(run_one(rule, T, args.batch, hidden, args.n_in, args.device, args.repeats, args.threads)))
        return
    rows = []
    for T in (int(t) for t in args.T.split(",")):
        for rule in args.rules.split(","):
            cmd = [sys.executable, __file__, "--one", "--rules", rule, "--T", str(T), "--batch", str(args.batch),
                   "--hidden", args.hidden, "--n-in", str(args.n_in), "--device", args.device,
                   "--repeats", str(args.repeats), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(f"{rule:>12}  T={T:<4d} B={args.batch}  {row['ms_per_step']:8.2f} ms/step  "
                  f"peak {row['peak_mem_mb']:8.1f} MB  learner state {row['learner_state_mb']:8.2f} MB", flush=True)
    import torch
    result = {"command": "python " + " ".join(sys.argv), "torch": torch.__version__,
              "threads": args.threads or torch.get_num_threads(),
              "load_average": os.getloadavg(), "machine": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "rows": rows}
    out_path = args.out or f"results/step_time_{args.device}.json"
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
