"""The task interface shared by every task: Batch, Task, metrics, label timing and seeding.

Layout everywhere is time-major: xs (T, B, n_in), ys (T, B) int64 class labels or (T, B, C) float
multi-hot targets, mask (T, B) float with 1 where a step is supervised.
"""
from __future__ import annotations

import zlib
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from osttp import checks
from osttp.errors import OsttpError
from osttp.tasks.batch import Batch
from osttp.tasks.metrics import ClassificationMetric, Metric, MultilabelMetric


SPLITS: tuple[str, ...] = ("train", "valid", "test")
# Fixed small integers so that derived seeds never depend on dict order or hashing salts.
SPLIT_CODE: dict[str, int] = {"train": 0, "valid": 1, "test": 2}


# ---------------------------------------------------------------------------------------------
# seeds and parameter checking


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from integers and names (order matters).

    Uses numpy's SeedSequence (documented stable across versions) and crc32 for names, never
    Python's salted hash(), so the same inputs give the same seed on every machine and run."""
    words: list[int] = []
    for p in parts:
        if isinstance(p, str):
            words.append(zlib.crc32(p.encode("utf-8")))
        else:
            words.append(int(p) % (1 << 64))  # SeedSequence refuses negatives; caller seeds may be any int
    state = np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0]
    return int(state) & ((1 << 63) - 1)  # torch.Generator.manual_seed wants a non-negative int64


def torch_generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def take_params(task: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Merge given params over defaults; an unknown name is an error rather than silently ignored."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise OsttpError(
            f"task {task!r}: unknown parameter(s) {', '.join(unknown)}; expected some of {', '.join(sorted(defaults))}"
        )
    out = dict(defaults)
    out.update(given)
    return out


def check_int(task: str, name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """A task parameter that must be an integer in [lo, hi] (osttp.checks wording)."""
    return checks.integer(f"task {task!r} parameter {name}", value, ge=lo, le=hi)


def check_float(task: str, name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    """A task parameter that must be a finite number in [lo, hi] (osttp.checks wording)."""
    return checks.number(f"task {task!r} parameter {name}", value, ge=lo, le=hi)


def check_split(split: Any) -> str:
    if split not in SPLITS:
        raise OsttpError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return str(split)


def parse_label(task: str, spec: Any, T: int) -> tuple[int, str]:
    """Label timing -> (first supervised step k, canonical spec). Steps t >= k are supervised.

    Accepted: None (default: k = T // 2), "last" (k = T-1), "every" (k = 0), "from:k" or int k."""
    if spec is None:
        k = T // 2
    elif isinstance(spec, str):
        s = spec.strip()
        if s == "last":
            return T - 1, "last"
        if s == "every":
            return 0, "every"
        if s.startswith("from:"):
            try:
                k = int(s[5:])
            except ValueError:
                raise OsttpError(
                    f"task {task!r}: label={spec!r} is not understood; expected 'last', 'every', 'from:k' or an integer k"
                ) from None
        else:
            raise OsttpError(
                f"task {task!r}: label={spec!r} is not understood; expected 'last', 'every', 'from:k' or an integer k"
            )
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        k = int(spec)
    else:
        raise OsttpError(
            f"task {task!r}: label={spec!r} is not understood; expected 'last', 'every', 'from:k' or an integer k"
        )
    if not 0 <= k < T:
        raise OsttpError(f"task {task!r}: label from step {k} is outside the sequence; expected 0 <= k < {T}")
    return k, f"from:{k}"


def majority_fraction(labels: np.ndarray, n_classes: int) -> float:
    """Accuracy of the best constant guess: the frequency of the most common label."""
    if labels.size == 0:
        return float("nan")
    return float(np.bincount(labels.astype(np.int64), minlength=n_classes).max() / labels.size)


# ---------------------------------------------------------------------------------------------
# the task base class


class Task:
    """A split of a task: a fixed, indexable set of sequences served in batches.

    Subclasses set the attributes below in __init__ and implement __len__ and _make_batch."""

    name: str
    split: str
    params: dict[str, Any]
    n_in: int
    n_out: int
    target_kind: str  # "class" or "multilabel"
    loss: str  # "ce" or "bce"
    metric_name: str
    higher_is_better: bool
    chance: float

    def __len__(self) -> int:
        raise NotImplementedError

    def _make_batch(self, idx: torch.Tensor, batch_no: int, seed: int, dtype: torch.dtype) -> Batch:
        """Build the batch of sequences idx (int64, (B,)); batch_no and seed feed per-batch randomness."""
        raise NotImplementedError

    def new_metric(self, decision: str = "last") -> Metric:
        """The task's metric; `decision` (classification only) says how a sequence's class is read."""
        if self.target_kind == "class":
            return ClassificationMetric(self.n_out, decision)
        return MultilabelMetric(self.n_out)

    def target_prior(self) -> torch.Tensor:
        """The mean target per class over every supervised step of this split (C,), float64: class
        frequencies, or per-key note frequencies for multi-label tasks."""
        total = torch.zeros(self.n_out, dtype=torch.float64)
        weight = torch.zeros((), dtype=torch.float64)
        for b in self.batches(512, shuffle=False, dtype=torch.float64):
            y = b.ys if self.target_kind != "class" else torch.nn.functional.one_hot(b.ys, self.n_out).to(torch.float64)
            total += (b.mask.unsqueeze(-1) * y).sum((0, 1))
            weight += b.mask.sum()
        if weight <= 0:
            raise OsttpError(f"task {self.name!r} ({self.split}): no supervised step to take a target prior from")
        return total / weight

    def num_batches(self, batch_size: int) -> int:
        b = check_int(self.name, "batch_size", batch_size, lo=1)
        return (len(self) + b - 1) // b

    def order(self, shuffle: bool, seed: int) -> torch.Tensor:
        """The sequence order of one pass: file/generation order, or a permutation drawn from seed."""
        n = len(self)
        if shuffle:
            return torch.randperm(n, generator=torch_generator(derive_seed(seed, "order", self.name)))
        return torch.arange(n)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        start: int = 0,
    ) -> Iterator[Batch]:
        """Yield batches; the last one may be smaller. start skips that many batches without building them."""
        nb = self.num_batches(batch_size)
        start = check_int(self.name, "start", start, lo=0, hi=nb)
        check_int(self.name, "seed", seed)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise OsttpError(f"task {self.name!r}: dtype={dtype!r} must be a torch floating-point dtype")
        order = self.order(bool(shuffle), seed)
        # Checks above run at call time; only the batch building is lazy.
        return self._iterate(order, int(batch_size), start, nb, int(seed), dtype)

    def _iterate(self, order: torch.Tensor, batch_size: int, start: int, nb: int, seed: int,
                 dtype: torch.dtype) -> Iterator[Batch]:
        for b in range(start, nb):
            yield self._make_batch(order[b * batch_size : (b + 1) * batch_size], b, seed, dtype)

    def describe(self) -> str:
        return (
            f"{self.name}/{self.split}: {len(self)} sequences, n_in={self.n_in}, n_out={self.n_out}, "
            f"{self.metric_name} at chance {self.chance:.4g}"
        )

    def __repr__(self) -> str:
        return f"<Task {self.describe()}>"


class ClassTask(Task):
    """Classification: ys are int64 labels, loss cross-entropy, primary metric accuracy."""

    target_kind = "class"
    loss = "ce"
    metric_name = "accuracy"
    higher_is_better = True


class TensorClassTask(ClassTask):
    """A classification task whose inputs are all in memory: xs (N, T, n_in), labels (N,), mask (T,).

    Batches index these tensors, so a pass copies only one batch at a time."""

    def __init__(self, name: str, split: str, params: dict[str, Any], xs: torch.Tensor, labels: torch.Tensor,
                 mask: torch.Tensor, n_out: int) -> None:
        self.name, self.split, self.params = name, split, params
        self._xs = xs
        self._labels = labels
        self._mask = mask
        self.n_in = int(xs.shape[2])
        self.n_out = int(n_out)
        self.T = int(xs.shape[1])
        self.chance = majority_fraction(labels.numpy(), self.n_out)

    def __len__(self) -> int:
        return int(self._xs.shape[0])

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def _make_batch(self, idx: torch.Tensor, batch_no: int, seed: int, dtype: torch.dtype) -> Batch:
        B = int(idx.numel())
        xs = self._xs[idx].transpose(0, 1).to(dtype).contiguous()
        ys = self._labels[idx].unsqueeze(0).expand(self.T, B).contiguous()
        mask = self._mask.to(dtype).unsqueeze(1).expand(self.T, B).contiguous()
        return Batch(xs, ys, mask)
