"""Streaming at batch 1: steps per second per rule against an inference-only step, and resident memory
over a long osttp stream (docs/streaming.md).

    python benchmarks/stream_speed.py [--steps 2000] [--repeats 5] [--rss-steps 1000000 --rss-seconds 300]
                                      [--out results/stream_speed.json]

Speed: the network of the smnist-rows stream of docs/streaming.md (28 inputs -> hidden recurrent SNU
-> 10, float32, Adam, one thread). Every rule learns at every step (per-step schedule; tbptt: window k,
an update every k steps; bptt: an update at every sequence end, T = 28), on random inputs and labels
prepared in advance, so only the learner is timed. "inference" is `Network.step` under no_grad with
the state carried: the same forward pass, no learning. The rules' repeats are interleaved (rule A,
rule B, ..., then again), so they are timed under the same machine load; the table gives the median
over repeats and its ratios.

Memory: osttp at B=1 in the full prequential loop (`osttp.streams.Prequential` on smnist-rows with a
new pixel-column permutation every 500 sequences: data stream, scoring, meter, records), the resident
set size (/proc/self/statm, not the peak) after 10^4 steps and at every decade after, until
--rss-steps or --rss-seconds, whichever comes first. Needs the MNIST files (OSTTP_DATA).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

import osttp

RULES = ["inference", "osttp", "eprop-rand", "ostl", "drtp", "tbptt", "bptt"]
# where osttp's time goes: the same rule with plain SGD, and with its update applied once per sequence
DIAGNOSTICS = ["osttp+sgd", "osttp/28"]
T_SEQUENCE = 28  # bptt updates at the end of each sequence of this length (smnist-rows)


def rss_mb() -> float:
    """Current resident set size (Linux), not the peak."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_net(hidden: list[int]) -> osttp.Network:
    return osttp.Network.from_sizes([28, *hidden, 10], cell="snu", recurrent=True, seed=0)


def make_runner(rule: str, hidden: list[int], steps: int, window: int) -> Callable[[], float]:
    """A function that times `steps` streaming steps of one rule at B=1 and returns seconds."""
    net = make_net(hidden)
    g = torch.Generator().manual_seed(0)
    xs = torch.rand(steps, 1, 28, generator=g)
    ys = torch.randint(0, 10, (steps, 1), generator=g)
    m = torch.ones(1)
    if rule == "inference":
        state = net.initial_state(1)

        def infer() -> float:
            nonlocal state
            t0 = time.perf_counter()
            with torch.no_grad():
                for t in range(steps):
                    _, state = net.step(xs[t], state)
            return time.perf_counter() - t0
        return infer
    opt: torch.optim.Optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    if rule == "osttp+sgd":
        learner = osttp.make_learner("osttp", net, optimizer=torch.optim.SGD(net.parameters(), lr=1e-3),
                                     schedule="per-step")
    elif rule == "osttp/28":
        learner = osttp.make_learner("osttp", net, optimizer=opt, schedule=f"every-{T_SEQUENCE}")
    elif rule == "tbptt":
        learner = osttp.make_learner("tbptt", net, optimizer=opt, window=window)
    elif rule == "bptt":
        learner = osttp.make_learner("bptt", net, optimizer=opt, schedule="sequence-end")
    else:
        learner = osttp.make_learner(rule, net, optimizer=opt, schedule="per-step")
    learner.reset(1)
    seq_end = rule == "bptt"

    def learn() -> float:
        t0 = time.perf_counter()
        for t in range(steps):
            learner.step(xs[t], ys[t], m)
            if seq_end and (learner.steps_since_reset % T_SEQUENCE == 0):
                learner.apply()
        if seq_end:
            learner.apply()
        return time.perf_counter() - t0
    return learn


def speed(hidden: list[int], steps: int, repeats: int, window: int) -> dict[str, Any]:
    runners = {r: make_runner(r, hidden, steps, window) for r in RULES + DIAGNOSTICS}
    for run in runners.values():  # warm-up: allocator, first-call overheads
        run()
    times: dict[str, list[float]] = {r: [] for r in runners}
    for _ in range(repeats):
        for r, run in runners.items():
            times[r].append(run())
    per_step = {r: statistics.median(v) / steps for r, v in times.items()}
    name = {"tbptt": f"tbptt-{window}", "bptt": f"bptt (sequence-end, T={T_SEQUENCE})",
            "osttp+sgd": "osttp, SGD (diagnostic)", "osttp/28": f"osttp, update every {T_SEQUENCE} (diagnostic)"}
    rows = []
    for r in runners:
        rows.append({"rule": name.get(r, r), "us_per_step": 1e6 * per_step[r], "steps_per_s": 1.0 / per_step[r],
                     "x_inference": per_step[r] / per_step["inference"],
                     "x_tbptt": per_step[r] / per_step["tbptt"],
                     "repeats_s": times[r]})
    return {"hidden": hidden, "recurrent": True, "cell": "snu", "n_in": 28, "n_out": 10, "batch": 1,
            "steps_per_repeat": steps, "repeats": repeats, "rows": rows}


def memory(hidden: list[int], max_steps: int, max_seconds: float) -> dict[str, Any]:
    import osttp.tasks
    from osttp.streams import DataStream, Prequential, TaskSource, with_drift

    task = osttp.tasks.load("smnist-rows", "train")
    net = make_net(hidden)
    learner = osttp.make_learner("osttp", net, optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
                                 schedule="per-step")
    src = with_drift(TaskSource(task, seed=0), "permute", 500, 0)
    run = Prequential(learner, DataStream(src, 1), window=1000, record_every=1000)
    marks = [m for m in (10**4, 3 * 10**4, 10**5, 3 * 10**5, 10**6, 3 * 10**6, 10**7) if m <= max_steps]
    if not marks or marks[-1] != max_steps:
        marks.append(max_steps)
    points, t0 = [], time.perf_counter()
    for mark in marks:
        chunk = 10**4
        while run.steps < mark:
            run.run(min(chunk, mark - run.steps))
            if time.perf_counter() - t0 > max_seconds:
                break
        points.append({"steps": run.steps, "rss_mb": rss_mb(), "seconds": time.perf_counter() - t0,
                       "learner_state_kb": learner.state_nbytes() / 1024})
        print(f"  {run.steps} steps: RSS {points[-1]['rss_mb']:.1f} MB ({points[-1]['seconds']:.0f} s)", flush=True)
        if time.perf_counter() - t0 > max_seconds:
            break
    first = next(p for p in points if p["steps"] >= 10**4) if points[0]["steps"] >= 10**4 else points[0]
    last = points[-1]
    return {"rule": "osttp", "hidden": hidden, "batch": 1, "points": points, "steps_done": last["steps"],
            "target_steps": max_steps, "stopped_by_time": last["steps"] < max_steps,
            "rss_growth_pct_from_1e4": 100.0 * (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"],
            "summary": run.summary() | {"source": None}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", default="128", help="hidden sizes, comma-separated (default 128)")
    p.add_argument("--steps", type=int, default=2000, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--window", type=int, default=10, help="tbptt window k")
    p.add_argument("--rss-steps", type=int, default=10**6, help="steps of the memory check (0: skip)")
    p.add_argument("--rss-seconds", type=float, default=300.0, help="time limit of the memory check")
    p.add_argument("--out", default="results/stream_speed.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    hidden = [int(h) for h in args.hidden.split(",")]
    out: dict[str, Any] = {"command": "python benchmarks/stream_speed.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()), "torch": torch.__version__,
        "threads": 1, "machine": platform.machine(), "processor": platform.processor() or None}
    out["speed"] = speed(hidden, args.steps, args.repeats, args.window)
    print(f"B=1, hidden {hidden} recurrent SNU, {args.steps} steps x {args.repeats} repeats (median):")
    for r in out["speed"]["rows"]:
        print(f"  {r['rule']:<34} {r['us_per_step']:8.1f} us/step  {r['steps_per_s']:8.0f} steps/s  "
              f"{r['x_inference']:5.2f}x inference  {r['x_tbptt']:5.2f}x tbptt", flush=True)
    if args.rss_steps > 0:
        print("memory (osttp, prequential loop on smnist-rows with permutation drift):", flush=True)
        out["memory"] = memory(hidden, args.rss_steps, args.rss_seconds)
        m = out["memory"]
        print(f"  RSS growth from 10^4 steps to {m['steps_done']} steps: {m['rss_growth_pct_from_1e4']:.2f} %")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
