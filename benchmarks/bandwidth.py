"""This machine's memory bandwidth as one torch thread sees it: the bound of a memory-bound step.

    python benchmarks/bandwidth.py [--mb 16,1024] [--repeats 15] [--out results/bandwidth_cpu.json]

Three kernels over float32 buffers of each size (default 16 MB: the diagonal trace of the target
network's second layer at B = 64, which sits in this machine's large L3; and 1 GB, beyond every
cache): `copy_` (read one
buffer, write another), `mul_` in place (read and write one buffer: the update eps <- D eps), and
`sum` (read only). Bytes moved = what the kernel must read plus what it must write; GB/s is
their ratio to the median time over `repeats` (the machine is shared: the spread is reported too).
docs/performance.md divides the diagonal trace's bytes per step by these rates.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch


def rates(mb: int, repeats: int) -> dict[str, dict[str, float]]:
    """GB/s (median, min, max over repeats) of copy_, in-place mul_ and sum over `mb` MB."""
    n = mb * 2**20 // 4
    a, b = torch.rand(n), torch.empty(n)
    kernels = {"copy": (lambda: b.copy_(a), 2 * 4 * n), "mul_inplace": (lambda: a.mul_(1.0000001), 2 * 4 * n),
               "sum": (lambda: a.sum(), 4 * n)}
    out = {}
    for name, (fn, nbytes) in kernels.items():
        fn()  # first touch: page faults are not bandwidth
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        gbs = [nbytes / t / 1e9 for t in times]
        out[name] = {"gb_per_s": round(statistics.median(gbs), 2), "min": round(min(gbs), 2),
                     "max": round(max(gbs), 2)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", default="16,1024", help="buffer sizes in MB, comma-separated")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/bandwidth_cpu.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {"command": "python " + " ".join(sys.argv), "torch": torch.__version__, "threads": args.threads,
              "load_average_before": os.getloadavg(),
              "rates_by_mb": {mb: rates(int(mb), args.repeats) for mb in args.mb.split(",")}}
    result["load_average_after"] = os.getloadavg()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result["rates_by_mb"]), f"load {result['load_average_after']}")


if __name__ == "__main__":
    main()
