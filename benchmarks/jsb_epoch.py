"""One JSB training epoch through the CLI (`osttp train --rule R`) against a plain PyTorch loop over the
same network and data (issue 11: the overhead of the step loop and the training loop around it).

    python benchmarks/jsb_epoch.py [--rules bptt,osttp] [--repeats 2] [--out results/jsb_epoch.json]

The CLI run is configs/jsb_ostl_reference.toml with --epochs 1 (one thread); its training time is
results.json's `train_s` (validation and test excluded). The plain loop runs `Network.forward` under
autograd, the summed BCE over the unmasked steps, backward and an SGD step, one chorale at a time in
file order, in this process with one thread. Repeats interleave the two; the ratio is the median of
the per-repeat ratios (each CLI epoch over the plain epoch timed just before it), with every repeat.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli_epoch(rule: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "run"
        subprocess.run([sys.executable, "-m", "osttp", "train", "--config", "configs/jsb_ostl_reference.toml",
                        "--rule", rule, "--epochs", "1", "--threads", "1", "--quiet", "--max-test-batches", "1",
                        "--max-valid-batches", "1", "--out", str(out)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return float(json.loads((out / "results.json").read_text())["train_s"])


def plain_epoch() -> float:
    import torch

    import osttp
    import osttp.tasks

    torch.set_num_threads(1)
    train = osttp.tasks.load("jsb", "train")
    net = osttp.Network.from_sizes([88, 150, 88], cell="ssnu", recurrent=True, seed=0,
                                   cell_options={"g": "identity", "d": 0.4})
    opt = torch.optim.SGD(net.parameters(), lr=5e-4)
    batches = list(train.batches(1, shuffle=False))
    t0 = time.perf_counter()
    for b in batches:
        opt.zero_grad()
        out = net(b.xs)
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(out, b.ys, reduction="none").sum(-1)
                * b.mask).sum()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rules", default="bptt,osttp")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default="results/jsb_epoch.json")
    args = p.parse_args()
    rules = args.rules.split(",")
    times: dict[str, list[float]] = {"plain-bptt": [], **{r: [] for r in rules}}
    for _ in range(args.repeats):
        times["plain-bptt"].append(plain_epoch())
        for r in rules:
            times[r].append(cli_epoch(r))
    med = {k: statistics.median(v) for k, v in times.items()}
    # per repeat: the CLI epoch over the plain one timed just before it (same load), then their median
    per_repeat = {r: [t / p for t, p in zip(times[r], times["plain-bptt"])] for r in rules}
    res = {"command": "python benchmarks/jsb_epoch.py " + " ".join(sys.argv[1:]), "seconds": times,
           "median_s": med, "ratio_to_plain": {r: statistics.median(v) for r, v in per_repeat.items()},
           "ratio_per_repeat": per_repeat, "ratio_of_medians": {r: med[r] / med["plain-bptt"] for r in rules},
           "load_avg_1min": os.getloadavg()[0]}
    (ROOT / args.out).write_text(json.dumps(res, indent=1))
    for k, v in med.items():
        print(f"{k:12s} {v:7.2f} s per epoch" + (f"  ({res['ratio_to_plain'][k]:.2f}x plain, median of the "
                                                  f"per-repeat ratios)" if k in rules else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
