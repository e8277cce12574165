"""Spike-digit tasks: 700 cochlea channels binned into T steps, one spoken digit per recording.

`shd` (Spiking Heidelberg Digits, 20 classes) and the FSDD spoken digits (`spoken-digits`,
`spoken-digits-official`: 10 classes, osttp.tasks.spoken_digits) read files in SHD's layout through
one reader (osttp.tasks.shd_file); a `SpikeDataset` says where a task's files are and how its
splits come from them, and its class count is checked against every label of the files.

Each recording's spikes are binned over [0, max_time): step k covers [k dt, (k+1) dt) with
dt = max_time / T; spikes at or after max_time are dropped. The input at (step, channel) is the
number of spikes in the bin ("count", default), 1 if there is any ("binary"), or log(1 + count)
("log": a pooled bin holds up to ~60 spikes, and the log keeps the quiet channels' few spikes
visible beside the loud ones without saturating the input layer).

`shift` > 0 augments the train split only: every sample of every batch is moved by a random whole
number of inputs in [-shift, shift] along the channel axis (spikes moved past either end are dropped),
drawn from the batch's seed and number, so a run stays reproducible. A shift along the cochlea is a
change of pitch and formants, the variation between speakers the training set is short of. `channels` < 700
pools adjacent cochlea channels into that many inputs (700 / channels each, summed; it must divide
700): the cochlea's neighbouring channels overlap strongly, and the network's input layer, the bulk of
its cost, shrinks by the same factor.

Splits of SHD: test = shd_test.h5. train and valid share shd_train.h5: a random valid_fraction of
its samples (default 10 %), drawn with `seed`, is valid and the rest train; both keep file order.
A dataset with a file per split (the spoken digits) reads each split from its own file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from osttp.tasks.base import (
    Batch,
    ClassTask,
    check_float,
    check_int,
    derive_seed,
    majority_fraction,
    parse_label,
    take_params,
)
from osttp.errors import OsttpError
from osttp.tasks.shd_file import N_CHANNELS, N_CLASSES, SHD_PARTS, SHDFile, load_spike_file

ENCODINGS = ("count", "binary", "log")


@dataclass(frozen=True)
class SpikeDataset:
    """A spike-digit task's files (split -> path under the data folder), its class count and its
    default window. carve_valid: valid is a seeded random part of the train file (SHD), so the task
    takes valid_fraction and seed; otherwise every split is its own file."""

    task: str
    files: Mapping[str, str]
    n_classes: int
    max_time: float
    carve_valid: bool = False

    def defaults(self) -> dict[str, Any]:
        base: dict[str, Any] = {"label": None, "T": 100, "max_time": self.max_time, "encoding": "count",
                                "channels": N_CHANNELS, "shift": 0}
        if self.carve_valid:
            base.update({"valid_fraction": 0.1, "seed": 0})
        return {**base, "limit": None}


# max_time 1.4 s: SHD recordings last up to about 1.4 s, so (almost) no spike is cut off, and the
# commonly used binning of the dataset covers the same window. T = 100 gives 14 ms bins.
SHD = SpikeDataset("shd", {"train": SHD_PARTS["train"], "valid": SHD_PARTS["train"], "test": SHD_PARTS["test"]},
                   N_CLASSES, 1.4, carve_valid=True)
DEFAULTS: dict[str, Any] = SHD.defaults()


def bin_spikes(times: np.ndarray, units: np.ndarray, T: int, max_time: float,
               channels: int = N_CHANNELS) -> np.ndarray:
    """Flat cell index step * channels + input of every spike, -1 for a spike at or after max_time;
    input = unit // (700 // channels), the group of adjacent cochlea channels the unit is pooled into.

    step = floor(t * T / max_time): multiply before dividing so that a spike exactly on a bin edge
    k * max_time / T lands in bin k rather than k - 1 through rounding of dt."""
    steps = np.floor(times * (T / max_time)).astype(np.int64)
    # t < max_time can still round to step T in floating point; such a spike belongs to the last bin
    keep = times < max_time
    steps = np.minimum(steps, T - 1)
    return np.where(keep, steps * channels + units // (N_CHANNELS // channels), -1)


def shift_inputs(cells: np.ndarray, n_in: int, move: int) -> np.ndarray:
    """Flat cells step * n_in + input moved to input + move, those that leave [0, n_in) dropped."""
    if move == 0:
        return cells
    inputs = cells % n_in + move
    keep = (inputs >= 0) & (inputs < n_in)
    return (cells - cells % n_in + inputs)[keep]


def split_indices(n: int, split: str, valid_fraction: float, seed: int) -> np.ndarray:
    """Sample indices of train or valid within the n samples of the training file, sorted.

    valid = the first round(valid_fraction * n) (at least 1) entries of a permutation drawn from
    seed; train = the rest. The draw depends only on (n, seed), not on T or the encoding."""
    n_valid = min(max(1, round(valid_fraction * n)), n - 1)
    perm = np.random.default_rng(derive_seed(seed, "shd-valid")).permutation(n)
    chosen = perm[:n_valid] if split == "valid" else perm[n_valid:]
    return np.sort(chosen)


def spread_subset(idx: np.ndarray, limit: int | None) -> np.ndarray:
    """`limit` of the indices, evenly spaced over their order (all of them when limit is None or
    larger): a file sorted by class or speaker keeps every class in a small subset."""
    if limit is None or limit >= idx.size:
        return idx
    return idx[np.floor(np.arange(limit) * (idx.size / limit)).astype(np.int64)]


class SpikeDigits(ClassTask):
    """One split of a spike-digit task. ys holds the digit at every step; the mask is 1 from step
    label_from on (default T // 2), so the last step, which the accuracy reads out, is always supervised."""

    def __init__(self, dataset: SpikeDataset, split: str, params: dict[str, Any],
                 root: str | os.PathLike[str] | None = None) -> None:
        name = dataset.task
        p = take_params(name, params, dataset.defaults())
        T = check_int(name, "T", p["T"], lo=1)
        max_time = check_float(name, "max_time", p["max_time"], lo=1e-6)
        self.label_from, label = parse_label(name, p["label"], T)
        encoding = p["encoding"]
        if encoding not in ENCODINGS:
            raise OsttpError(f"task {name!r}: encoding={encoding!r}; expected one of {', '.join(ENCODINGS)}")
        limit = None if p["limit"] is None else check_int(name, "limit", p["limit"], lo=1)
        channels = check_int(name, "channels", p["channels"], lo=1, hi=N_CHANNELS)
        if N_CHANNELS % channels:
            raise OsttpError(f"task {name!r}: channels={channels} must divide {N_CHANNELS} "
                             "(adjacent cochlea channels are pooled in equal groups)")

        self.name, self.split = name, split
        carve = _carve_params(name, p) if dataset.carve_valid else {}
        shift = check_int(name, "shift", p["shift"], lo=0, hi=channels - 1)
        self.params = {"label": label, "T": T, "max_time": max_time, "encoding": encoding, "channels": channels,
                       "shift": shift, **carve, "limit": limit}
        self.shift = shift if split == "train" else 0
        self.T, self.max_time, self.encoding = T, max_time, encoding
        self.n_in, self.n_out = channels, dataset.n_classes

        shd = load_spike_file(dataset.files[split], dataset.n_classes, root)
        idx = _carved_split(name, shd, split, **carve) if carve and split != "test" else np.arange(len(shd))
        idx = spread_subset(idx, limit)
        self.sample_ids = torch.from_numpy(idx.astype(np.int64))  # positions in the file
        self.keys = shd.keys
        self.speakers = None if shd.speakers is None else torch.from_numpy(shd.speakers[idx])
        self._events, self._offsets = _select_events(shd, idx, T, max_time, channels)
        self._labels = torch.from_numpy(shd.labels[idx].copy())
        self._mask = (torch.arange(T) >= self.label_from).to(torch.float32)
        self.chance = majority_fraction(self._labels.numpy(), dataset.n_classes)

    def __len__(self) -> int:
        return int(self._labels.numel())

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def _make_batch(self, idx: torch.Tensor, batch_no: int, seed: int, dtype: torch.dtype) -> Batch:
        ids = idx.tolist()
        B, cells = len(ids), self.T * self.n_in
        # Scatter every spike of the batch into one flat (B, T, n_in) histogram: sample j's cells
        # are offset by j * T * 700, so a single bincount counts them all.
        parts = [self._events[self._offsets[i]:self._offsets[i + 1]] for i in ids]
        if self.shift:
            g = np.random.default_rng(derive_seed(seed, "shift", batch_no))
            moves = g.integers(-self.shift, self.shift + 1, size=len(parts))
            parts = [shift_inputs(c, self.n_in, int(m)) for c, m in zip(parts, moves)]
        parts = [c + j * cells for j, c in enumerate(parts)]
        flat = torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0, dtype=torch.int64)
        counts = torch.bincount(flat, minlength=B * cells).view(B, self.T, self.n_in)
        if self.encoding == "binary":
            counts = counts.clamp_(max=1)
        xs = counts.transpose(0, 1).to(dtype).contiguous()
        if self.encoding == "log":
            xs = torch.log1p_(xs)
        ys = self._labels[idx].unsqueeze(0).expand(self.T, B).contiguous()
        mask = self._mask.to(dtype).unsqueeze(1).expand(self.T, B).contiguous()
        return Batch(xs, ys, mask)


def _carve_params(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """valid_fraction and seed of a task whose valid split is carved out of its train file, checked."""
    valid_fraction = check_float(name, "valid_fraction", p["valid_fraction"], lo=0.0, hi=0.5)
    if valid_fraction == 0.0:
        raise OsttpError(f"task {name!r}: parameter valid_fraction=0.0 must be > 0 (valid selects configurations)")
    return {"valid_fraction": valid_fraction, "seed": check_int(name, "seed", p["seed"], lo=0)}


def _carved_split(name: str, shd: SHDFile, split: str, valid_fraction: float, seed: int) -> np.ndarray:
    """train or valid as a seeded part of the train file."""
    if len(shd) < 2:
        raise OsttpError(f"task {name!r}: the training file has {len(shd)} sample; at least 2 are needed "
                         "to carve out a validation split")
    return split_indices(len(shd), split, valid_fraction, seed)


def _select_events(shd: SHDFile, idx: np.ndarray, T: int, max_time: float,
                   channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The binned spikes of samples idx (flat cells, spikes past max_time removed) and their offsets."""
    cells: list[np.ndarray] = []
    for i in idx.tolist():
        a, b = int(shd.offsets[i]), int(shd.offsets[i + 1])
        c = bin_spikes(shd.times[a:b], shd.units[a:b], T, max_time, channels)
        cells.append(c[c >= 0])
    lengths = np.array([c.size for c in cells], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    events = np.concatenate(cells) if cells else np.zeros(0, dtype=np.int64)
    return events.astype(np.int64), offsets
