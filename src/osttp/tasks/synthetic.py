"""Synthetic memory tasks, generated from a seed (no files): delayed-xor, store-recall,
cue-accumulation.

Each is learnable (the label is a function of the noise-free inputs) but impossible without
memory: the steps where the answer is read out show only a cue that is the same for every class.
The whole split is generated at load time from (seed, task name, split) with numpy's PCG64, so
splits never share a stream and the same parameters always give the same data. Labels are exactly
balanced when n is a multiple of the number of classes (labels are a shuffled cycle 0, 1, .., K-1).
ys holds the label at every step; the mask is 1 only at the answer steps. Gaussian noise of std
`noise` is added to every input channel at every step (fixed per sample, drawn at generation).
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch

from osttp import checks
from osttp.registry import Registry
from osttp.tasks.base import SPLIT_CODE, TensorClassTask, check_float, check_int, take_params

COMMON: dict[str, Any] = {"seed": 0, "n_train": 4096, "n_valid": 512, "n_test": 512, "noise": 0.05}

XOR_DEFAULTS: dict[str, Any] = {**COMMON, "delay": 5, "lead": 1, "cue_delay": 2, "answer_steps": 2}
STORE_DEFAULTS: dict[str, Any] = {**COMMON, "bits": 2, "delay": 8, "lead": 1, "answer_steps": 2,
                                  "distractor_p": 0.25}
CUE_DEFAULTS: dict[str, Any] = {**COMMON, "n_cues": 7, "cue_len": 2, "gap": 1, "delay": 10, "lead": 1,
                                "answer_steps": 2}

Generated = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # xs (N,T,C) float32, labels (N,), mask (T,), K


def split_rng(name: str, seed: int, split: str) -> np.random.Generator:
    """The generator for one split: its own SeedSequence entropy (seed, task, split)."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode()), SPLIT_CODE[split]]))


def balanced_labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.permutation(np.arange(n, dtype=np.int64) % k)


def _add_noise(rng: np.random.Generator, xs: np.ndarray, noise: float) -> np.ndarray:
    if noise > 0:
        xs += rng.normal(0.0, noise, size=xs.shape).astype(np.float32)
    return xs


def delayed_xor(rng: np.random.Generator, n: int, p: dict[str, Any]) -> Generated:
    """Channels: 0 = "bit is 0" pulse, 1 = "bit is 1" pulse, 2 = answer cue.

    Bit a at step lead, bit b `delay` empty steps later, `cue_delay` empty steps, then the cue is on
    for `answer_steps` steps, which are the supervised ones. Label = a XOR b (2 classes)."""
    lead, delay, cue_delay, ans = p["lead"], p["delay"], p["cue_delay"], p["answer_steps"]
    T = lead + 2 + delay + cue_delay + ans
    combo = balanced_labels(rng, n, 4)  # the four (a, b) pairs equally often, so XOR is balanced too
    a, b = combo >> 1, combo & 1
    rows = np.arange(n)
    t1 = lead
    t2 = t1 + 1 + delay
    tc = t2 + 1 + cue_delay
    xs = np.zeros((n, T, 3), dtype=np.float32)
    xs[rows, t1, a] = 1.0
    xs[rows, t2, b] = 1.0
    xs[:, tc:, 2] = 1.0
    mask = np.zeros(T, dtype=np.float32)
    mask[tc:] = 1.0
    return _add_noise(rng, xs, p["noise"]), (a ^ b).astype(np.int64), mask, 2


def store_recall(rng: np.random.Generator, n: int, p: dict[str, Any]) -> Generated:
    """Channels: 0..bits-1 = pattern, bits = store cue, bits+1 = recall cue.

    At step lead the pattern is shown with the store cue; then `delay` distractor steps in which
    each pattern channel is on with probability distractor_p (no store cue: to be ignored); then
    the recall cue for `answer_steps` supervised steps. Target: the stored pattern as a class,
    label = sum_i bit_i * 2**i, so n_out = 2**bits."""
    bits, lead, delay, ans = p["bits"], p["lead"], p["delay"], p["answer_steps"]
    K = 2**bits
    T = lead + 1 + delay + ans
    labels = balanced_labels(rng, n, K)
    pattern = ((labels[:, None] >> np.arange(bits)[None, :]) & 1).astype(np.float32)
    xs = np.zeros((n, T, bits + 2), dtype=np.float32)
    xs[:, lead, :bits] = pattern
    xs[:, lead, bits] = 1.0
    if delay > 0 and p["distractor_p"] > 0:
        xs[:, lead + 1 : lead + 1 + delay, :bits] = rng.random((n, delay, bits)) < p["distractor_p"]
    tr = lead + 1 + delay
    xs[:, tr:, bits + 1] = 1.0
    mask = np.zeros(T, dtype=np.float32)
    mask[tr:] = 1.0
    return _add_noise(rng, xs, p["noise"]), labels, mask, K


def cue_accumulation(rng: np.random.Generator, n: int, p: dict[str, Any]) -> Generated:
    """Channels: 0 = left cue, 1 = right cue, 2 = decision cue (the e-prop evidence-accumulation task,
    Bellec et al. 2020, with one channel per population).

    After `lead` empty steps, n_cues cues, each on one side for cue_len steps followed by `gap`
    empty steps; then `delay` empty steps; then the decision cue for `answer_steps` supervised
    steps. Label: 0 if more cues were on the left, 1 if more on the right (n_cues is odd: no ties).
    Each cue's side is a fair coin; the labels are balanced by mirroring left/right of a sample
    whose majority disagrees with its drawn label, which keeps the cue statistics symmetric."""
    nc, cl, gap, delay, lead, ans = p["n_cues"], p["cue_len"], p["gap"], p["delay"], p["lead"], p["answer_steps"]
    T = lead + nc * (cl + gap) + delay + ans
    labels = balanced_labels(rng, n, 2)
    right = rng.random((n, nc)) < 0.5
    flip = (right.sum(axis=1) * 2 > nc) != (labels == 1)
    right[flip] = ~right[flip]
    xs = np.zeros((n, T, 3), dtype=np.float32)
    rows = np.arange(n)[:, None]
    for c in range(nc):
        t0 = lead + c * (cl + gap)
        xs[rows, np.arange(t0, t0 + cl)[None, :], right[:, c].astype(np.int64)[:, None]] = 1.0
    td = lead + nc * (cl + gap) + delay
    xs[:, td:, 2] = 1.0
    mask = np.zeros(T, dtype=np.float32)
    mask[td:] = 1.0
    return _add_noise(rng, xs, p["noise"]), labels, mask, 2


# Every parameter's bounds, declared once: name -> (kind, lo, hi); checked by osttp.checks.
Bounds = dict[str, tuple[str, float | None, float | None]]
MAX_STEPS = 1_000_000  # per parameter; far beyond any sequence these tasks are meant for
_STEPS: Bounds = {"delay": ("int", 0, MAX_STEPS), "lead": ("int", 0, MAX_STEPS), "answer_steps": ("int", 1, MAX_STEPS)}
MAX_VALUES = 2**31  # input values of one split (8 GiB in float32): checked before anything is allocated
COMMON_BOUNDS: Bounds = {"seed": ("int", 0, None), "n_train": ("int", 1, None), "n_valid": ("int", 1, None),
                         "n_test": ("int", 1, None), "noise": ("float", 0.0, None)}
XOR_BOUNDS: Bounds = {**_STEPS, "cue_delay": ("int", 0, MAX_STEPS)}
STORE_BOUNDS: Bounds = {"bits": ("int", 1, 8), **_STEPS, "distractor_p": ("float", 0.0, 1.0)}
CUE_BOUNDS: Bounds = {"n_cues": ("int", 1, 10_000), "cue_len": ("int", 1, MAX_STEPS), "gap": ("int", 0, MAX_STEPS),
                      **_STEPS}


def _check_bounds(name: str, p: dict[str, Any], bounds: Bounds) -> dict[str, Any]:
    out = dict(p)
    for k, (kind, lo, hi) in bounds.items():
        if kind == "int":
            out[k] = check_int(name, k, p[k], lo=None if lo is None else int(lo), hi=None if hi is None else int(hi))
        else:
            out[k] = check_float(name, k, p[k], lo=lo, hi=hi)
    return out


def _check_xor(p: dict[str, Any]) -> dict[str, Any]:
    return _check_bounds("delayed-xor", p, XOR_BOUNDS)


def _check_store(p: dict[str, Any]) -> dict[str, Any]:
    return _check_bounds("store-recall", p, STORE_BOUNDS)


def _check_cue(p: dict[str, Any]) -> dict[str, Any]:
    n = "cue-accumulation"
    p = _check_bounds(n, p, CUE_BOUNDS)
    if p["n_cues"] % 2 == 0:
        raise checks.fail(f"task {n!r} parameter n_cues", p["n_cues"], "an odd integer (an even count can tie)")
    return p


# A factory generates a split: (rng, n, params) -> (xs, labels, mask, classes). meta: defaults -- every
# parameter with its default (the order config files state them in); check -- params -> params, checked.
SYNTHETIC: Registry[Generated] = Registry("synthetic task")
SYNTHETIC.register("delayed-xor", delayed_xor, defaults=XOR_DEFAULTS, check=_check_xor,
                   help="a XOR b of two bits `delay` steps apart, answered on a cue: 2 classes, accuracy")
SYNTHETIC.register("store-recall", store_recall, defaults=STORE_DEFAULTS, check=_check_store,
                   help="store a bit pattern, recall it on cue after distractors: 2**bits classes, accuracy")
SYNTHETIC.register("cue-accumulation", cue_accumulation, defaults=CUE_DEFAULTS, check=_check_cue,
                   help="evidence accumulation: which side had more cues, answered after a delay: 2 classes, accuracy")


def load_synthetic(name: str, split: str, params: dict[str, Any]) -> TensorClassTask:
    entry = SYNTHETIC.get(name)
    defaults, check, generate = entry.meta["defaults"], entry.meta["check"], entry.factory
    p = check(_check_bounds(name, take_params(name, params, defaults), COMMON_BOUNDS))
    n = p[f"n_{split}"]
    shape = generate(np.random.default_rng(0), 0, p)[0].shape[1:]  # (T, channels), nothing allocated
    if n * shape[0] * shape[1] > MAX_VALUES:
        raise checks.fail(f"task {name!r} parameter n_{split}", n,
                          f"at most {MAX_VALUES // (shape[0] * shape[1])} sequences of {shape[0]} steps x "
                          f"{shape[1]} channels (the split's inputs must stay under {MAX_VALUES} values)")
    rng = split_rng(name, p["seed"], split)
    xs, labels, mask, k = generate(rng, n, p)
    resolved = {key: p[key] for key in defaults}  # defaults' order: stable config files
    return TensorClassTask(name, split, resolved, torch.from_numpy(xs), torch.from_numpy(labels),
                           torch.from_numpy(mask), k)
