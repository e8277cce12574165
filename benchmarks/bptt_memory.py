"""How well BPTT's `learner.state_nbytes()` tracks the memory its stored graph really takes: RSS growth
of this process per stored step against the growth of the reported figure (docs/performance.md).

    OMP_NUM_THREADS=1 python benchmarks/bptt_memory.py

RSS also holds the allocator's fragmentation (freed temporaries between retained tensors), which the
estimate does not try to model: the ratio stays within a factor of two either way.
"""
from __future__ import annotations

import gc
import json
from pathlib import Path

import torch

from osttp.network import Network
from osttp.rules import make_learner

CASES = [(1, 5000, 12), (1, 5000, 100), (8, 3000, 64), (32, 2000, 256)]  # (B, T, hidden)


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def measure(batch: int, steps: int, hidden: int, warmup: int = 20) -> dict[str, float]:
    net = Network.from_sizes([10, hidden, 5], recurrent=True)
    learner = make_learner("bptt", net)
    learner.reset(batch)
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(steps, batch, 10, generator=g)
    ys = torch.randint(0, 5, (steps, batch), generator=g)
    mask = torch.ones(steps, batch)
    for t in range(warmup):
        learner.step(xs[t], ys[t], mask[t])
    gc.collect()
    rss0, rep0 = _rss(), learner.state_nbytes()
    for t in range(warmup, steps):
        learner.step(xs[t], ys[t], mask[t])
    gc.collect()
    n = steps - warmup
    rss_step, rep_step = (_rss() - rss0) / n, (learner.state_nbytes() - rep0) / n
    return {"B": batch, "T": steps, "hidden": hidden, "rss_bytes_per_step": round(rss_step),
            "reported_bytes_per_step": round(rep_step), "reported_over_rss": round(rep_step / rss_step, 3)}


def main() -> None:
    torch.set_num_threads(1)
    rows = [measure(*c) for c in CASES]
    for r in rows:
        print(json.dumps(r))
    out = Path(__file__).resolve().parents[1] / "results" / "bptt_memory.json"
    out.write_text(json.dumps({"command": "OMP_NUM_THREADS=1 python benchmarks/bptt_memory.py", "rows": rows},
                              indent=1) + "\n")


if __name__ == "__main__":
    main()
