"""JSB Chorales next-step prediction (docs/math.md §5): 88-key piano roll in, the roll one step later out.

A chorale of L steps gives T = L - 1 predicted steps: xs[t] = roll[t], ys[t] = roll[t + 1] for
t = 0..L-2. A batch is padded to its longest chorale; padded steps have mask 0 and zero inputs.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from osttp.tasks.base import Batch, Task, check_int, take_params
from osttp.tasks.data import NOTE_MIN, load_jsb

N_KEYS = 88
DEFAULTS: dict[str, Any] = {"limit": None}


def piano_roll(chorales: list[list[list[int]]]) -> tuple[np.ndarray, np.ndarray]:
    """All chorales as one stacked roll (sum of lengths, 88) uint8 plus offsets (n + 1,): chorale i
    is rows offsets[i]:offsets[i+1]. Key k is MIDI note 21 + k; repeated notes in a step count once."""
    lengths = np.array([len(c) for c in chorales], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows: list[int] = []
    keys: list[int] = []
    r = 0
    for chorale in chorales:
        for step in chorale:
            rows.extend([r] * len(step))
            keys.extend(step)
            r += 1
    roll = np.zeros((int(offsets[-1]), N_KEYS), dtype=np.uint8)
    if rows:
        roll[np.asarray(rows, dtype=np.int64), np.asarray(keys, dtype=np.int64) - NOTE_MIN] = 1
    return roll, offsets


def constant_predictor_nll(roll: np.ndarray, offsets: np.ndarray) -> float:
    """NLL per step of the best input-independent predictor on these targets: each key predicted
    with its own frequency p_k among the predicted steps, giving sum_k H(p_k) (binary entropy, nats)."""
    targets = np.concatenate([roll[offsets[i] + 1 : offsets[i + 1]] for i in range(len(offsets) - 1)])
    p = targets.astype(np.float64).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log(p), 0.0) + np.where(p < 1, (1 - p) * np.log1p(-p), 0.0))
    return float(h.sum())


class JSBChorales(Task):
    """One split of JSB Chorales. Default batches are in file order (shuffle=False); batch size 1
    gives the one-chorale-at-a-time regime of docs/math.md §5."""

    target_kind = "multilabel"
    loss = "bce"
    metric_name = "nll"
    higher_is_better = False

    def __init__(self, split: str, params: dict[str, Any], root: str | os.PathLike[str] | None = None) -> None:
        p = take_params("jsb", params, DEFAULTS)
        limit = None if p["limit"] is None else check_int("jsb", "limit", p["limit"], lo=1)
        self.name, self.split = "jsb", split
        self.params = {"limit": limit}
        self.n_in = self.n_out = N_KEYS
        chorales = load_jsb(root)[split]
        if limit is not None:
            chorales = chorales[:limit]
        roll, offsets = piano_roll(chorales)
        self._roll = torch.from_numpy(roll)
        self._offsets = offsets.tolist()
        self.lengths = [b - a for a, b in zip(self._offsets[:-1], self._offsets[1:])]
        self.n_steps = sum(L - 1 for L in self.lengths)  # predicted steps in the split
        self.chance = constant_predictor_nll(roll, offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    def _make_batch(self, idx: torch.Tensor, batch_no: int, seed: int, dtype: torch.dtype) -> Batch:
        ids = idx.tolist()
        B = len(ids)
        T = max(self.lengths[i] for i in ids) - 1
        xs = torch.zeros(T, B, N_KEYS, dtype=dtype)
        ys = torch.zeros(T, B, N_KEYS, dtype=dtype)
        mask = torch.zeros(T, B, dtype=dtype)
        for j, i in enumerate(ids):
            a, L = self._offsets[i], self.lengths[i]
            xs[: L - 1, j] = self._roll[a : a + L - 1]
            ys[: L - 1, j] = self._roll[a + 1 : a + L]
            mask[: L - 1, j] = 1.0
        return Batch(xs, ys, mask)
