"""How much non-spiking recurrent/convolutional readers get from the spoken-digit spikes: the ceiling a
spiking network of this size can hope for on this input and this much data (docs/learning.md,
"Spoken digits", second round).

    python benchmarks/spoken_digits_readers.py [--task spoken-digits-official] [--epochs 15]
        [--out results/spoken_digits_readers.json]

Input: the task's own binning through osttp.tasks (`encoding = "log"`, i.e. log(1 + count)). Readers,
trained with autograd, Adam 3e-3, batches of 32, cross-entropy on one decision per sequence, one seed:
- gru: GRU of 128 units on 50 x 70 cells, class from the mean of the per-step logits;
- cnn: two 1-D convolutions over time (128 channels, width 5, ReLU) on 100 x 140 cells, max over time.
Only the **valid** split is read (best and last epoch): these are probes, not table rows. One thread.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

import osttp.tasks

READERS = {"gru": (50, 70), "cnn": (100, 140)}  # reader -> (time bins over the first second, channels)


class GRUReader(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.gru, self.out = nn.GRU(n_in, 128, batch_first=True), nn.Linear(128, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, n_out)
        return self.out(self.gru(x)[0]).mean(1)


class CNNReader(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(n_in, 128, 5, padding=2), nn.ReLU(),
                                  nn.Conv1d(128, 128, 5, padding=2), nn.ReLU())
        self.out = nn.Linear(128, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x.transpose(1, 2)).amax(2))


def dense(task: str, split: str, T: int, channels: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    t = osttp.tasks.load(task, split, T=T, max_time=1.0, channels=channels, encoding="log")
    xs = torch.cat([b.xs for b in t.batches(500)], 1).transpose(0, 1).contiguous()  # (N, T, C)
    return xs, t.labels, t.n_out


def accuracy(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(xs).argmax(1) == ys).double().mean())


def run(task: str, reader: str, epochs: int, seed: int) -> dict[str, object]:
    T, channels = READERS[reader]
    x_tr, y_tr, n_out = dense(task, "train", T, channels)
    x_va, y_va, _ = dense(task, "valid", T, channels)
    torch.manual_seed(seed)
    model = (GRUReader if reader == "gru" else CNNReader)(channels, n_out)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    start, curve = time.perf_counter(), []
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y_tr)).split(32):
            loss = nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        curve.append({"train": accuracy(model, x_tr, y_tr), "valid": accuracy(model, x_va, y_va)})
    valid = [c["valid"] for c in curve]
    return {"task": task, "reader": reader, "T": T, "channels": channels, "epochs": epochs, "seed": seed,
            "valid_best": max(valid), "valid_best_epoch": valid.index(max(valid)) + 1, "valid_last": valid[-1],
            "train_last": curve[-1]["train"], "curve": curve, "wall_s": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="spoken-digits-official")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/spoken_digits_readers.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for reader in READERS:
        r = run(args.task, reader, args.epochs, args.seed)
        print(f"{reader}: valid best {r['valid_best']:.3f} (epoch {r['valid_best_epoch']}), "
              f"last {r['valid_last']:.3f}, train {r['train_last']:.3f}, {r['wall_s']:.0f} s", flush=True)
        rows.append(r)
    command = ("python benchmarks/spoken_digits_readers.py --task " + args.task + f" --epochs {args.epochs}"
               + f" --seed {args.seed}")
    Path(args.out).write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
