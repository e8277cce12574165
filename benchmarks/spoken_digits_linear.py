"""How much a linear reader gets from the spoken-digit spikes (docs/learning.md, "Spoken digits").

    python benchmarks/spoken_digits_linear.py [--out results/spoken_digits_linear.json] [--tasks T ...]

A softmax-linear classifier on log(1 + spike counts) of the task's own binning (T time bins x pooled
channels, through osttp.tasks), standardised with the training split's mean and std, fitted by Adam on
the full training split (200 full-batch steps, lr 1e-3). The weight decay is chosen on valid from
1e-3, 1e-2, 1e-1; test is read once, with that choice. One thread.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import osttp.tasks

GRID = [(10, 140), (20, 70)]  # (time bins over the first second, channels)
TASKS = ("spoken-digits-official", "spoken-digits", "spoken-digits-20")
DECAYS = (1e-3, 1e-2, 1e-1)


def features(task: str, split: str, T: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = osttp.tasks.load(task, split, T=T, max_time=1.0, channels=channels)
    xs = torch.cat([b.xs.transpose(0, 1).reshape(b.xs.shape[1], -1) for b in t.batches(500)])
    return torch.log1p(xs.double()), t.labels


def fit(x: torch.Tensor, y: torch.Tensor, decay: float, seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], int(y.max()) + 1).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=decay)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def accuracy(model: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="results/spoken_digits_linear.json")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for task in args.tasks:
        for T, channels in GRID:
            start = time.monotonic()
            (xtr, ytr), (xva, yva), (xte, yte) = (features(task, s, T, channels) for s in ("train", "valid", "test"))
            mu, sd = xtr.mean(0), xtr.std(0) + 1e-3
            xtr, xva, xte = ((x - mu) / sd for x in (xtr, xva, xte))
            valid = {d: accuracy(m, xva, yva) for d, m in ((d, fit(xtr, ytr, d)) for d in DECAYS)}
            best = max(valid, key=valid.get)
            test = accuracy(fit(xtr, ytr, best), xte, yte)
            rows.append({"task": task, "T": T, "channels": channels, "valid_by_decay": valid, "decay": best,
                         "valid": valid[best], "test": test, "wall_s": round(time.monotonic() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
    command = " ".join(["python benchmarks/spoken_digits_linear.py",
                        *(["--out", args.out] if args.out != p.get_default("out") else []),
                        *(["--tasks", *args.tasks] if args.tasks != list(TASKS) else [])])
    Path(args.out).write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
