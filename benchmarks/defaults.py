"""Which `Network.from_sizes` defaults learn: the README's Python loop on smnist-rows, beside the CLI.

Each variant trains the README's loop as written (Adam 1e-3, batches of 128, shuffled, rule osttp,
sequence-end) through the library only, changing one choice at a time: the readout kind (linear /
integrator, kappa 0.9), the firing calibration at init (none / 10 % on the first 256 training
sequences, as the CLI does) and the decision rule (last step / mean over the supervised steps, read
from the same trained network). The CLI rows are the shipped configs at the same budget
(--task-param limit=N --epochs E), run as subprocesses. Valid-split accuracy, one thread.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/defaults.py --limit 10000 --epochs 2 --seeds 0 \
        --out results/defaults.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import osttp
from osttp.calibration import calibrate_firing
from osttp.evaluation import evaluate_model

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    sizes: list[int]
    options: dict[str, Any]
    calibrate: bool           # 10 % firing at init on the first 256 training sequences
    rule: str = "osttp"
    rate_reg: float = 0.0     # RateRegulariser(rate_reg, 0.1) when > 0


LIF_REC = {"cell": "lif", "recurrent": True}
VARIANTS: dict[str, Variant] = {
    "old-readme (2x256 snu ff, linear, no calibration)": Variant([28, 256, 256, 10], {"cell": "snu"}, False),
    "2x256 snu ff, linear, calibrated": Variant([28, 256, 256, 10], {"cell": "snu"}, True),
    "lif-rec, linear, no calibration": Variant([28, 256, 10], {**LIF_REC, "readout": "linear"}, False),
    "lif-rec, linear, calibrated": Variant([28, 256, 10], {**LIF_REC, "readout": "linear"}, True),
    "lif-rec, integrator, no calibration": Variant([28, 256, 10], {**LIF_REC, "readout": "integrator"}, False),
    "lif-rec, integrator, calibrated": Variant([28, 256, 10], {**LIF_REC, "readout": "integrator"}, True),
    "lif-rec, linear, calibrated, osttp-centred + rate reg 0.3": Variant(
        [28, 256, 10], {**LIF_REC, "readout": "linear"}, True, "osttp-centred", 0.3),
    "lif-rec, integrator, calibrated, osttp-centred + rate reg 0.3": Variant(
        [28, 256, 10], {**LIF_REC, "readout": "integrator"}, True, "osttp-centred", 0.3),
}
CLI = {"cli configs/smnist_rows.toml --rule osttp": ["--config", "configs/smnist_rows.toml", "--rule", "osttp"],
       "cli configs/smnist_rows_osttp.toml (osttp-centred, rate reg)": ["--config", "configs/smnist_rows_osttp.toml"]}


def train_library(v: Variant, seed: int, limit: int, epochs: int) -> dict[str, Any]:
    """The README's loop as written, then the valid accuracy under both decision rules."""
    train = osttp.tasks.load("smnist-rows", "train", limit=limit)
    valid = osttp.tasks.load("smnist-rows", "valid", limit=limit)
    net = osttp.Network.from_sizes(v.sizes, seed=seed, **v.options)
    if v.calibrate:
        calibrate_firing(net, next(iter(train.batches(256))).xs, rate=0.1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    learner = osttp.make_learner(v.rule, net, optimizer=opt, schedule="sequence-end")
    learner.fit(train)  # the centred target projection's class prior; nothing for plain osttp
    if v.rate_reg > 0:
        learner.rate_regulariser = osttp.RateRegulariser(v.rate_reg, 0.1)
    start = time.perf_counter()
    for epoch in range(epochs):
        for batch in train.batches(128, shuffle=True, seed=seed * 1000 + epoch):
            learner.reset(batch.xs.shape[1])
            for x_t, y_t, m_t in zip(batch.xs, batch.ys, batch.mask):
                learner.step(x_t, y_t, m_t)
            learner.apply()
    seconds = time.perf_counter() - start
    acc = {d: evaluate_model(net, valid, batch_size=500, decision=d)["accuracy"] for d in ("last", "mean")}
    return {"valid_accuracy": acc, "train_s": seconds}


def train_cli(flags: list[str], seed: int, limit: int, epochs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "osttp", "train", *flags, "--task-param", f"limit={limit}", "--epochs",
               str(epochs), "--seed", str(seed), "--quiet", "--out", str(Path(tmp) / "run")]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        res = json.loads((Path(tmp) / "run" / "results.json").read_text())
    return {"valid_accuracy": {"config": res["last_valid_metric"]}, "train_s": res["train_s"]}


def table(rows: dict[str, Any]) -> str:
    """Markdown: per row, the valid accuracy (mean over seeds, and each seed) per decision rule."""
    lines = ["| network and recipe | decision | valid accuracy (mean) | per seed |", "|---|---|---|---|"]
    for name, seeds in rows.items():
        for decision in next(iter(seeds.values()))["valid_accuracy"]:
            accs = [seeds[s]["valid_accuracy"][decision] for s in sorted(seeds)]
            lines.append(f"| {name} | {decision} | {sum(accs) / len(accs):.3f} | "
                         f"{', '.join(f'{a:.3f}' for a in accs)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=10000, help="training (and valid) sequences")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", default="0", help="comma-separated")
    ap.add_argument("--only", default="", help="comma-separated substrings of the variant names to run")
    ap.add_argument("--out", default="results/defaults.json")
    ap.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(Path(args.out).read_text())["rows"]))
        return
    torch.set_num_threads(1)
    out = Path(args.out)
    rows: dict[str, Any] = json.loads(out.read_text())["rows"] if out.exists() else {}
    wanted = [s for s in args.only.split(",") if s]
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in [*VARIANTS, *CLI]:
            if wanted and not any(w in name for w in wanted):
                continue
            if name in VARIANTS:
                row = train_library(VARIANTS[name], seed=seed, limit=args.limit, epochs=args.epochs)
            else:
                row = train_cli(CLI[name], seed=seed, limit=args.limit, epochs=args.epochs)
            rows.setdefault(name, {})[str(seed)] = row
            print(f"{name} seed {seed}: {row}", flush=True)
            payload = {"command": "OMP_NUM_THREADS=1 nice -n 10 python " + " ".join(["benchmarks/defaults.py",
                                                                                       *sys.argv[1:]]),
                       "task": "smnist-rows", "limit": args.limit, "epochs": args.epochs, "rows": rows}
            out.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
