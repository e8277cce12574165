"""One JSB training epoch through the CLI (`osttp train --rule R`) against the loops a user would write
instead, over the same network and data (issue 23: the overhead of the training driver).

    python benchmarks/jsb_epoch.py [--rules bptt,osttp] [--repeats 5] [--out results/jsb_epoch.json]
                                   [--src DIR]

Three kinds of epoch, each timed in a fresh process with one thread (so every one pays the same
start-up and warm-up), 229 chorales one at a time in file order, plain SGD lr 5e-4:

- `plain-bptt`: a plain PyTorch loop -- `Network.forward` under autograd, the summed BCE over the
  unmasked steps, backward, an SGD step;
- `library-R`: the library loop for rule R -- `learner.reset(1)`, `learner.steps(xs, ys, mask)`,
  `learner.apply()`; for BPTT the same work as the plain loop, for an online rule the only plain
  loop there is (the rule's work is the library's);
- `R`: `osttp train --rule R` on configs/jsb_ostl_reference.toml with --epochs 1; its training time
  is results.json's `train_s` (validation, test and checkpoints excluded).

Repeats interleave every kind; each ratio is the median of the per-repeat ratios (kinds timed
seconds apart under the same load), with every repeat kept. `cli_over_plain` is the issue's
number (the CLI against the plain BPTT loop); `cli_over_library` is the driver's own overhead (the
same rule's work on both sides); `library_over_plain` the rule's cost against autograd BPTT.
--src DIR runs another source tree (e.g. an older commit's src/, for a before/after in one run).
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
CONFIG = "configs/jsb_ostl_reference.toml"


def _env(src: str | None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def cli_epoch(rule: str, src: str | None = None) -> float:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "run"
        subprocess.run([sys.executable, "-m", "osttp", "train", "--config", CONFIG, "--rule", rule, "--epochs", "1",
                        "--threads", "1", "--quiet", "--max-test-batches", "1", "--max-valid-batches", "1",
                        "--out", str(out)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=_env(src))
        return float(json.loads((out / "results.json").read_text())["train_s"])


def loop_epoch(kind: str, src: str | None = None) -> float:
    """`plain-bptt` or `library-R`, timed in a fresh process (this script with --one)."""
    r = subprocess.run([sys.executable, __file__, "--one", kind], cwd=ROOT, check=True, capture_output=True,
                       text=True, env=_env(src))
    return float(r.stdout.strip().splitlines()[-1])


def _jsb_network():  # type: ignore[no-untyped-def]
    import torch

    import osttp
    import osttp.tasks

    torch.set_num_threads(1)
    train = osttp.tasks.load("jsb", "train")
    net = osttp.Network.from_sizes([88, 150, 88], cell="ssnu", recurrent=True, seed=0,
                                   cell_options={"g": "identity", "d": 0.4})
    return net, torch.optim.SGD(net.parameters(), lr=5e-4), list(train.batches(1, shuffle=False))


def plain_epoch() -> float:
    import torch

    net, opt, batches = _jsb_network()
    t0 = time.perf_counter()
    for b in batches:
        opt.zero_grad()
        out = net(b.xs)
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(out, b.ys, reduction="none").sum(-1)
                * b.mask).sum()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def library_epoch(rule: str) -> float:
    import osttp

    net, opt, batches = _jsb_network()
    learner = osttp.make_learner(rule, net, optimizer=opt, loss="bce")
    t0 = time.perf_counter()
    for b in batches:
        learner.reset(1)
        learner.steps(b.xs, b.ys, b.mask)
        learner.apply()
    return time.perf_counter() - t0


def _median_ratio(times: dict[str, list[float]], num: str, den: str) -> tuple[float, list[float]]:
    per_repeat = [a / b for a, b in zip(times[num], times[den])]
    return statistics.median(per_repeat), per_repeat


def summary(times: dict[str, list[float]], rules: list[str]) -> dict[str, dict[str, object]]:
    """Per rule: the median per-repeat ratio (and every repeat) of the CLI over the plain loop, of the
    CLI over the library loop, and of the library loop over the plain loop."""
    out: dict[str, dict[str, object]] = {"cli_over_plain": {}, "cli_over_library": {}, "library_over_plain": {}}
    for r in rules:
        for key, (num, den) in {"cli_over_plain": (r, "plain-bptt"), "cli_over_library": (r, f"library-{r}"),
                                "library_over_plain": (f"library-{r}", "plain-bptt")}.items():
            med, runs = _median_ratio(times, num, den)
            out[key][r] = {"median": med, "per_repeat": runs}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rules", default="bptt,osttp")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="results/jsb_epoch.json")
    p.add_argument("--src", default=None, help="a source tree to import osttp from (default: the installed one)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: time one loop, print seconds
    args = p.parse_args()
    if args.one is not None:
        print(plain_epoch() if args.one == "plain-bptt" else library_epoch(args.one.removeprefix("library-")))
        return 0
    rules = args.rules.split(",")
    kinds = ["plain-bptt"] + [k for r in rules for k in (f"library-{r}", r)]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for k in kinds:
            times[k].append(loop_epoch(k, args.src) if k.startswith(("plain-", "library-")) else cli_epoch(k, args.src))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = summary(times, rules)
    res = {"command": "python benchmarks/jsb_epoch.py " + " ".join(sys.argv[1:]), "seconds": times,
           "median_s": med, **ratios, "load_avg_1min": os.getloadavg()[0]}
    (ROOT / args.out).write_text(json.dumps(res, indent=1))
    for k, v in med.items():
        line = f"{k:14s} {v:7.2f} s per epoch"
        if k in rules:
            line += (f"  CLI/plain {ratios['cli_over_plain'][k]['median']:.2f}x, CLI/library "
                     f"{ratios['cli_over_library'][k]['median']:.2f}x (medians of the per-repeat ratios)")
        print(line)
    print(f"load average (1 min) at the end: {res['load_avg_1min']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
