"""What the diagonal kind's block length buys: osttp with DiagonalTrace(block=K) against BPTT, one process.

    python benchmarks/diagonal_blocks.py [--blocks 1,4,8,16,32] [--repeats 5] [--out results/diagonal_blocks.json]

block = 1 is the per-step reference form (a pass over eps at every step); K > 1 records K steps and
applies them in one pass (docs/math.md §4.1.2). Two shapes: the target network (28-256-256-10,
feed-forward, T = 28, B = 64) and the spoken-digit shape (700-450 recurrent soft-reset SNU,
integrator readout, T = 100, B = 32). Repeats interleave BPTT and every K (one thread); the ratio is
the median of the per-repeat ratios, with its spread and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

import osttp
from osttp.rules import OnlineLearner
from osttp.rules.traces import DiagonalTrace

SHAPES = {
    "target": {"sizes": [28, 256, 256, 10], "T": 28, "B": 64, "recurrent": False, "cell_options": None,
               "readout": "linear"},
    "spoken": {"sizes": [700, 450, 10], "T": 100, "B": 32, "recurrent": True, "cell_options": {"reset": "soft"},
               "readout": "integrator"},
}


def _timed(shape: dict, block: int):
    """A timed run of one sequence (reset, T steps, apply): BPTT for block 0, else osttp with that block."""
    net = osttp.Network.from_sizes(shape["sizes"], cell="snu", seed=0, recurrent=shape["recurrent"],
                                   cell_options=shape["cell_options"], readout=shape["readout"])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    learner = osttp.make_learner("bptt", net, optimizer=opt) if block == 0 else \
        OnlineLearner(net, DiagonalTrace(block=block), "target-projection", optimizer=opt)
    torch.manual_seed(0)
    T, B = shape["T"], shape["B"]
    xs, ys = torch.rand(T, B, shape["sizes"][0]), torch.randint(0, 10, (T, B))

    def once() -> float:
        t0 = time.perf_counter()
        learner.reset(B)
        learner.steps(xs, ys)
        learner.apply()
        return time.perf_counter() - t0

    return once


def measure(shape: dict, blocks: list[int], repeats: int) -> list[dict]:
    runs = {k: _timed(shape, k) for k in [0, *blocks]}
    for once in runs.values():
        once()
    times: dict[int, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for k, once in runs.items():
            times[k].append(once())
    rows = []
    for k in blocks:
        ratios = [t / b for t, b in zip(times[k], times[0])]
        rows.append({"block": k, "ms_per_step": round(1000 * statistics.median(times[k]) / shape["T"], 3),
                     "bptt_ms_per_step": round(1000 * statistics.median(times[0]) / shape["T"], 3),
                     "ratio_to_bptt": round(statistics.median(ratios), 3),
                     "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)]})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blocks", default="1,4,8,16,32")
    p.add_argument("--shapes", default="target,spoken")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="results/diagonal_blocks.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    blocks = [int(k) for k in args.blocks.split(",")]
    result = {"command": "python benchmarks/diagonal_blocks.py " + " ".join(sys.argv[1:]), "torch": torch.__version__,
              "load_average_before": os.getloadavg(), "shapes": {}}
    for name in args.shapes.split(","):
        result["shapes"][name] = {"shape": SHAPES[name], "rows": measure(SHAPES[name], blocks, args.repeats)}
        for row in result["shapes"][name]["rows"]:
            print(f"{name:>6} block {row['block']:>3}  {row['ms_per_step']:8.3f} ms/step  x{row['ratio_to_bptt']:5.2f} "
                  f"bptt {row['ratio_min_max']}", flush=True)
    result["load_average_after"] = os.getloadavg()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
