"""Sequential MNIST: smnist-rows (28 steps x 28 pixels), smnist-pixels (784 x 1), psmnist (784 x 1
under one fixed permutation drawn from `seed`).

Splits: train = images 0..54999 of the official training file, valid = images 55000..59999 of
that file (its last 5000), test = the 10000 official test images. Pixels are scaled by 1/255.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from osttp.errors import OsttpError
from osttp.tasks.base import (
    SPLIT_CODE,
    Batch,
    ClassTask,
    check_float,
    check_int,
    derive_seed,
    majority_fraction,
    parse_label,
    take_params,
    torch_generator,
)
from osttp.tasks.data import load_mnist

N_VALID = 5000  # the last N_VALID images of the training file form the validation split
N_TRAIN_FILE = 60000
ENCODINGS = ("none", "rate", "delta")
# name -> (steps T, values per step, pixels in a seeded permutation)
SHAPES: dict[str, tuple[int, int, bool]] = {"smnist-rows": (28, 28, False), "smnist-pixels": (784, 1, False),
                                            "psmnist": (784, 1, True)}
DEFAULTS: dict[str, Any] = {"label": None, "encoding": "none", "threshold": 0.5, "seed": 0, "limit": None}


def permutation(seed: int) -> np.ndarray:
    """The psmnist pixel order for a seed: step t shows pixel permutation(seed)[t] (row-major index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, 784])).permutation(784)


def delta_encode(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Level-crossing spikes of x (T, B, n) over time -> (T, B, 2n): [up channels, down channels].

    The signal is quantised to levels q_t = floor(x_t / threshold), with q_{-1} = 0 (the signal
    starts from 0). An up spike (1.0) is emitted at t when q_t > q_{t-1} (one or more levels crossed
    upwards), a down spike when q_t < q_{t-1}. Binary spikes: the number of levels crossed in one
    step is not encoded."""
    q = torch.floor(x / threshold)
    prev = torch.cat([torch.zeros_like(q[:1]), q[:-1]], dim=0)
    return torch.cat([(q > prev), (q < prev)], dim=-1).to(x.dtype)


class SequentialMNIST(ClassTask):
    """One split of smnist-rows, smnist-pixels or psmnist.

    ys holds the digit at every step; the mask is 1 from step label_from on (default T // 2),
    so the last step, which the accuracy reads out, is always supervised."""

    def __init__(self, name: str, split: str, params: dict[str, Any],
                 root: str | os.PathLike[str] | None = None) -> None:
        if name not in SHAPES:
            raise OsttpError(f"unknown MNIST task {name!r}; expected one of {', '.join(SHAPES)}")
        p = take_params(name, params, DEFAULTS)
        T, width, permuted = SHAPES[name]
        self.label_from, label = parse_label(name, p["label"], T)
        encoding = p["encoding"]
        if encoding not in ENCODINGS:
            raise OsttpError(f"task {name!r}: encoding={encoding!r}; expected one of {', '.join(ENCODINGS)}")
        threshold = check_float(name, "threshold", p["threshold"], lo=1e-6, hi=1.0)
        seed = check_int(name, "seed", p["seed"], lo=0)
        limit = None if p["limit"] is None else check_int(name, "limit", p["limit"], lo=1)

        self.name, self.split = name, split
        self.params = {"label": label, "encoding": encoding, "threshold": threshold, "seed": seed, "limit": limit}
        self.T, self.width, self.encoding, self.threshold, self.seed = T, width, encoding, threshold, seed
        self.n_in = width * (2 if encoding == "delta" else 1)
        self.n_out = 10

        images, labels = load_mnist("test" if split == "test" else "train", root)
        if split == "train":
            sl = slice(0, N_TRAIN_FILE - N_VALID)
        elif split == "valid":
            sl = slice(N_TRAIN_FILE - N_VALID, N_TRAIN_FILE)
        else:
            sl = slice(0, len(images))
        flat = images.reshape(len(images), 784)[sl]
        labs = labels[sl]
        if limit is not None:
            flat, labs = flat[:limit], labs[:limit]
        self.permutation: torch.Tensor | None = None
        if permuted:
            perm = permutation(seed)
            self.permutation = torch.from_numpy(perm)
            flat = flat[:, perm]  # permute once here, not per batch (fancy indexing copies)
        # uint8 in memory (a quarter of float32); copied once from the shared, read-only cache
        self._images = torch.from_numpy(np.array(flat, dtype=np.uint8))
        self._labels = torch.from_numpy(np.array(labs, dtype=np.int64))
        self._mask = (torch.arange(T) >= self.label_from).to(torch.float32)
        self.chance = majority_fraction(self._labels.numpy(), 10)

    def __len__(self) -> int:
        return int(self._labels.numel())

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def _make_batch(self, idx: torch.Tensor, batch_no: int, seed: int, dtype: torch.dtype) -> Batch:
        B = int(idx.numel())
        x = self._images[idx].to(torch.float32).div_(255.0)  # (B, 784)
        if self.width == 28:
            x = x.view(B, 28, 28).transpose(0, 1)  # step t = image row t
        else:
            x = x.t().unsqueeze(-1)  # step t = pixel t (after the psmnist permutation)
        if self.encoding == "rate":
            # Spikes depend on (task seed, pass seed, batch number): reproducible, fresh each pass,
            # and batch b can be built without drawing batches 0..b-1.
            g = torch_generator(derive_seed(self.seed, seed, batch_no, "rate", SPLIT_CODE[self.split]))
            x = (torch.rand(x.shape, generator=g) < x).to(torch.float32)
        elif self.encoding == "delta":
            x = delta_encode(x, self.threshold)
        xs = x.to(dtype).contiguous()
        ys = self._labels[idx].unsqueeze(0).expand(self.T, B).contiguous()
        mask = self._mask.to(dtype).unsqueeze(1).expand(self.T, B).contiguous()
        return Batch(xs, ys, mask)
