"""The GPU run, one short script: the step-time table and a spoken-digit-shape epoch, eager and CUDA graphs.

    python benchmarks/gpu.py [--device cuda] [--repeats 5] [--batches 60] [--out results/step_time_gpu.json]

1. Step-time table (benchmarks/step_time.py's `time_group`, interleaved repeats, ratio to BPTT) for
   the target network (256,256, T = 28, B = 64) and the spoken-digit shape (700-450 recurrent,
   T = 100, B = 32), eager.
2. A spoken-digit-shape epoch: `--batches` batches of B = 32 synthetic utterances (700 input
   channels of Bernoulli spikes at 5 %, T = 100, a label per utterance at every step; about the
   2000-utterance training split of spoken digits at the default 60 batches), one update per batch,
   per rule: eager (`Learner.steps` + `apply`) and with the sequence captured as one CUDA graph
   (`SequenceGraph`: reset, T steps and the flush of deferred work recorded once, replayed per
   batch into static input tensors; the optimizer step stays eager).

On a machine without CUDA everything but the capture runs with --device cpu (tests/test_benchmarks.py);
the CUDA-graph rows are then left out with the reason.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import step_time  # noqa: E402  (benchmarks/ is not a package)

import osttp  # noqa: E402
from osttp.rules.inputs import check_inputs, check_targets  # noqa: E402

EPOCH_RULES = ["bptt", "osttp", "osttp-fact", "osttp-local", "eprop-rand"]


def spoken_learner(rule: str, device: str) -> osttp.Learner:
    g = step_time.GROUPS["spoken"]
    net = osttp.Network.from_sizes([g["n_in"], *g["hidden"], 10], cell="snu", seed=0, device=device,
                                   recurrent=g["recurrent"], cell_options=g["cell_options"], readout=g["readout"])
    return osttp.make_learner(rule, net, optimizer=torch.optim.Adam(net.parameters(), lr=1e-3))


def synthetic_batches(n: int, T: int, batch: int, n_in: int, device: str, seed: int = 0
                      ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n batches of Bernoulli(5 %) spikes (T, B, n_in) and one label per utterance repeated over T."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        xs = (torch.rand(T, batch, n_in, generator=g) < 0.05).float()
        ys = torch.randint(0, 10, (batch,), generator=g).expand(T, batch).contiguous()
        out.append((xs.to(device), ys.to(device)))
    return out


def _apply_accumulated(learner: osttp.Learner) -> None:
    """What `apply` does after a replayed sequence (whose step counters the replay does not advance)."""
    learner.write_grads()
    if learner.optimizer is not None:
        learner.optimizer.step()
    for a in learner.stream.acc.values():
        a.zero_()


class SequenceGraph:
    """One sequence of a learner -- reset, T steps, the flush of deferred work -- run from static input
    tensors, so that it can be captured as a CUDA graph and replayed per batch.

    `run()` executes it eagerly (any device: it is what the graph records, tested on the CPU against
    `Learner.steps`); `capture()` records it (CUDA only) and `replay()` reruns the recording. Inputs
    are checked once, when copied in (`load`); the steps run through the learner's unchecked path,
    because a value check is a host sync, which a capture forbids."""

    def __init__(self, learner: osttp.Learner, T: int, batch: int, n_in: int, device: str) -> None:
        self.learner, self.T, self.batch = learner, T, batch
        net = learner.net
        self.xs = torch.zeros(T, batch, n_in, dtype=net.dtype, device=device)
        self.targets = torch.zeros(T, batch, net.n_out, dtype=net.dtype, device=device)
        self.masks = torch.ones(T, batch, dtype=net.dtype, device=device)
        self.loss = learner._loss_for(True)
        self.graph: "torch.cuda.CUDAGraph | None" = None

    def load(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        """Copy a batch into the static inputs, checked as `Learner.steps` checks it."""
        net = self.learner.net
        xs = check_inputs("xs", xs, (self.T, self.batch, net.n_in), net.dtype, net.device)
        targets, _ = check_targets("ys", ys, (self.T, self.batch), net.n_out, net.dtype)
        self.xs.copy_(xs)
        self.targets.copy_(targets)

    def run(self) -> None:
        learner = self.learner
        learner.reset(self.batch)
        for t in range(self.T):
            learner._checked_step(self.xs[t], self.targets[t], self.masks[t], self.loss)
        learner._flush()

    def capture(self, warmup: int = 3) -> None:
        if not torch.cuda.is_available() or self.xs.device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture: lazy initialisation, allocator pools
            for _ in range(warmup):
                self.run()
                for a in self.learner.stream.acc.values():
                    a.zero_()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.run()

    def replay(self) -> None:
        assert self.graph is not None, "capture() first"
        self.graph.replay()


def epoch_seconds(learner: osttp.Learner, batches: list, mode: str, sync: Callable[[], None]) -> float:
    """One pass over `batches`, one update per batch: mode "eager" or "graph" (replays)."""
    T, B, n_in = batches[0][0].shape
    if mode == "graph":
        seq = SequenceGraph(learner, T, B, n_in, str(batches[0][0].device))
        seq.load(*batches[0])
        seq.capture()
        for a in learner.stream.acc.values():
            a.zero_()
    sync()
    t0 = time.perf_counter()
    for xs, ys in batches:
        if mode == "graph":
            seq.load(xs, ys)
            seq.replay()
            _apply_accumulated(learner)
        else:
            learner.reset(B)
            learner.steps(xs, ys)
            learner.apply()
    sync()
    return time.perf_counter() - t0


def epoch_rows(rules: list[str], n_batches: int, T: int, device: str, repeats: int) -> list[dict]:
    g = step_time.GROUPS["spoken"]
    batches = synthetic_batches(n_batches, T, g["batch"][0], g["n_in"], device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    modes = ["eager"] + (["graph"] if device == "cuda" else [])
    rows = []
    for rule in rules:
        for mode in modes:
            learner = spoken_learner(rule, device)
            times = [epoch_seconds(learner, batches, mode, sync) for _ in range(repeats)]
            rows.append({"rule": rule, "mode": mode, "batches": n_batches, "epoch_s": round(statistics.median(times), 3),
                         "epoch_s_runs": [round(t, 3) for t in times]})
            print(f"epoch {rule:>11} {mode:>5}  {rows[-1]['epoch_s']:8.3f} s ({n_batches} batches)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batches", type=int, default=60, help="batches of the spoken-digit-shape epoch")
    p.add_argument("--T", type=int, default=None, help="override T of the table and the epoch (a quick check)")
    p.add_argument("--out", default="results/step_time_gpu.json")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu.py: no CUDA device here (torch.cuda.is_available() is False); expected a machine with one, "
              "or --device cpu for a check of everything but the device", file=sys.stderr)
        return 2
    table = []
    for group, T, batch in (("target", 28, 64), ("spoken", 100, 32)):
        g = step_time.GROUPS[group]
        rules = [r for r in g["rules"] if r != step_time.peer_snntorch.NAME or step_time.peer_snntorch.available() is None]
        net = {key: g[key] for key in step_time.NET_KEYS}
        for row in step_time.time_group(rules, args.T or T, batch, net, args.device, args.repeats):
            row["group"] = group
            table.append(row)
            print(f"{group:>6} {row['rule']:>13} B={batch:<3d} {row['ms_per_step']:8.3f} ms/step "
                  f"x{row['ratio_to_bptt']:5.2f} bptt", flush=True)
    graph_note = None if args.device == "cuda" else f"CUDA graphs left out: device {args.device} is not CUDA"
    epochs = epoch_rows(EPOCH_RULES, args.batches, args.T or step_time.GROUPS["spoken"]["T"][0], args.device,
                        max(1, min(args.repeats, 3)))
    result = {"command": "python benchmarks/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "torch": torch.__version__, "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device == "cuda" else None,
              "table": table, "epochs": epochs, "graphs": graph_note}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}" + (f" ({graph_note})" if graph_note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
