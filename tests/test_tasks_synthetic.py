"""Synthetic tasks: determinism, balance, and that the answer needs memory."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import osttp.tasks as tasks
from osttp.errors import OsttpError

SYNTH = ["delayed-xor", "store-recall", "cue-accumulation"]


def _all(task: tasks.Task) -> tasks.Batch:
    return next(task.batches(len(task)))


@pytest.mark.parametrize("name", SYNTH)
def test_determinism_and_splits(name: str) -> None:
    a = _all(tasks.load(name, "train", n_train=64))
    b = _all(tasks.load(name, "train", n_train=64))
    c = _all(tasks.load(name, "train", n_train=64, seed=1))
    assert torch.equal(a.xs, b.xs) and torch.equal(a.ys, b.ys)
    assert not torch.equal(a.xs, c.xs)
    t = _all(tasks.load(name, "test", n_test=64))
    assert not torch.equal(a.xs, t.xs)  # splits draw from different derived seeds


@pytest.mark.parametrize("name", SYNTH)
def test_interface_and_balance(name: str) -> None:
    task = tasks.load(name, "valid", n_valid=96)
    assert len(task) == 96 and task.target_kind == "class" and task.loss == "ce"
    assert task.metric_name == "accuracy" and task.higher_is_better
    assert set(task.params) >= {"seed", "n_train", "n_valid", "n_test", "noise"}
    counts = np.bincount(task.labels.numpy(), minlength=task.n_out)
    assert (counts == 96 // task.n_out).all()
    assert task.chance == pytest.approx(1 / task.n_out)
    b = _all(task)
    assert b.xs.shape == (task.T, 96, task.n_in) and b.ys.dtype == torch.int64
    # reloading with the resolved params reproduces the split (what a config file relies on)
    again = _all(tasks.load(name, "valid", **task.params))
    assert torch.equal(again.xs, b.xs)


def _answer_inputs_identical(b: tasks.Batch) -> None:
    m = b.mask[:, 0] > 0
    assert (b.mask == b.mask[:, :1]).all()
    ans = b.xs[m]  # (steps, B, n_in)
    assert torch.equal(ans, ans[:, :1].expand_as(ans))  # the same for every sample: no label information


def test_delayed_xor_needs_memory() -> None:
    task = tasks.load("delayed-xor", "train", n_train=400, noise=0.0, delay=3)
    b = _all(task)
    assert task.T == 1 + 2 + 3 + 2 + 2 and task.n_in == 3 and task.n_out == 2
    _answer_inputs_identical(b)
    assert b.mask[:, 0].tolist() == [0.0] * 8 + [1.0] * 2
    bit_a = b.xs[1, :, 1].long()  # channel 1 = "bit is 1"
    bit_b = b.xs[5, :, 1].long()  # `delay` = 3 empty steps after the first bit
    assert (b.xs[1, :, :2].sum(-1) == 1).all() and (b.xs[5, :, :2].sum(-1) == 1).all()
    label = b.ys[-1]
    assert torch.equal(label, bit_a ^ bit_b)  # learnable from the inputs
    for bit in (bit_a, bit_b):  # either bit alone says nothing about the label
        for v in (0, 1):
            assert label[bit == v].float().mean() == 0.5
    noisy = _all(tasks.load("delayed-xor", "train", n_train=400, noise=0.1, delay=3))
    assert 0.08 < float((noisy.xs - b.xs).std()) < 0.12 and torch.equal(noisy.ys, b.ys)


def test_store_recall_needs_memory() -> None:
    task = tasks.load("store-recall", "test", n_test=256, noise=0.0, bits=3, delay=6, distractor_p=0.5)
    b = _all(task)
    assert task.n_out == 8 and task.n_in == 5 and task.T == 1 + 1 + 6 + 2
    _answer_inputs_identical(b)
    store = b.xs[1]
    assert (store[:, 3] == 1).all() and b.xs[:, :, 3].sum() == 256  # store cue only at the store step
    decoded = (store[:, :3].long() * torch.tensor([1, 2, 4])).sum(-1)
    assert torch.equal(decoded, b.ys[-1])
    distract = b.xs[2:8, :, :3]
    assert 0.4 < float(distract.mean()) < 0.6  # distractors present, without the store cue
    assert (b.xs[8:, :, 4] == 1).all() and b.xs[:8, :, 4].sum() == 0


def test_cue_accumulation_needs_memory() -> None:
    task = tasks.load("cue-accumulation", "train", n_train=300, noise=0.0, n_cues=5, cue_len=2, gap=1, delay=4)
    b = _all(task)
    assert task.T == 1 + 5 * 3 + 4 + 2
    _answer_inputs_identical(b)
    left, right = b.xs[:, :, 0].sum(0) / 2, b.xs[:, :, 1].sum(0) / 2
    assert ((left + right) == 5).all()
    assert torch.equal((right > left).long(), b.ys[-1])
    # each cue occupies cue_len steps on exactly one side
    for c in range(5):
        t0 = 1 + 3 * c
        on = b.xs[t0 : t0 + 2, :, :2]
        assert (on.sum(-1) == 1).all() and torch.equal(on[0], on[1]) and b.xs[t0 + 2, :, :2].sum() == 0
    # the last cue alone is not the answer
    last_right = b.xs[13, :, 1].long()
    agree = float((last_right == b.ys[-1]).float().mean())
    assert agree < 0.9


def test_bad_params() -> None:
    with pytest.raises(OsttpError, match="delay = -1"):
        tasks.load("delayed-xor", "train", delay=-1)
    with pytest.raises(OsttpError, match="n_cues = 4"):
        tasks.load("cue-accumulation", "train", n_cues=4)
    with pytest.raises(OsttpError, match="unknown parameter"):
        tasks.load("store-recall", "train", dealy=3)
    with pytest.raises(OsttpError, match="bits = 9"):
        tasks.load("store-recall", "train", bits=9)
    with pytest.raises(OsttpError, match="noise"):
        tasks.load("delayed-xor", "train", noise="loud")
    with pytest.raises(OsttpError, match="distractor_p"):
        tasks.load("store-recall", "train", distractor_p=1.5)


@pytest.mark.parametrize("params,needle", [
    ({"delay": 18446744073709551616}, "<= 1000000"),  # beyond numpy's dimension limit
    ({"n_train": 100_000_000}, "at most 59652323 sequences"),
    ({"delay": 1_000_000, "n_train": 4096}, "at most 715 sequences of 1000007 steps"),
])
def test_sizes_beyond_memory_are_refused_before_allocating(params, needle) -> None:
    with pytest.raises(OsttpError, match=needle):
        tasks.load("delayed-xor", "train", **params)
