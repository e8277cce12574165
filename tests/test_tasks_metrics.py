"""Metrics computed by hand, and the batch iterator's determinism, resume and errors."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

import osttp.tasks as tasks
from osttp.errors import OsttpError
from osttp.tasks import Batch, ClassificationMetric, MultilabelMetric, multilabel_nll


def _bce(z: float, y: float) -> float:
    p = 1.0 / (1.0 + math.exp(-z))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_multilabel_nll_by_hand_three_keys() -> None:
    z = [[2.0, -1.0, 0.5], [-0.3, 1.5, -2.0]]
    y = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    # step sums of per-key BCE, averaged over the two steps
    expect = sum(_bce(z[t][k], y[t][k]) for t in range(2) for k in range(3)) / 2
    logits = torch.tensor(z, dtype=torch.float64).view(2, 1, 3)  # float64: 0.3 is not exact in float32
    targets = torch.tensor(y, dtype=torch.float64).view(2, 1, 3)
    assert multilabel_nll(logits, targets) == pytest.approx(expect, rel=1e-12)
    # the same through the metric object, with a padded third step that must not count
    pad_logits = torch.cat([logits, torch.full((1, 1, 3), 9.0)])
    pad_targets = torch.cat([targets, torch.zeros(1, 1, 3)])
    m = MultilabelMetric(n_keys=3)
    m.update(pad_logits, Batch(pad_targets.clone(), pad_targets, torch.tensor([[1.0], [1.0], [0.0]])))
    out = m.compute()
    assert out["nll"] == pytest.approx(expect, rel=1e-12) and out["loss"] == out["nll"]
    # frame accuracy: predictions (z > 0) 1 0 1 / 0 1 0 against 1 0 0 / 0 1 1: TP 2, FP 1, FN 1
    assert out["frame_accuracy"] == pytest.approx(2 / 4)
    assert out["n_steps"] == 2


def test_multilabel_average_is_over_steps_not_sequences() -> None:
    # sequence A: 1 step, sequence B: 3 steps; the split NLL is (total) / 4, not a mean of means
    torch.manual_seed(0)
    za, zb = torch.randn(1, 1, 3), torch.randn(3, 1, 3)
    ya, yb = (torch.rand(1, 1, 3) > 0.5).float(), (torch.rand(3, 1, 3) > 0.5).float()
    m = MultilabelMetric(3)
    m.update(za, Batch(ya, ya, torch.ones(1, 1)))
    m.update(zb, Batch(yb, yb, torch.ones(3, 1)))
    total = multilabel_nll(za, ya) * 1 + multilabel_nll(zb, yb) * 3
    assert m.compute()["nll"] == pytest.approx(total / 4, rel=1e-12)


def test_classification_metric_reads_last_supervised_step() -> None:
    T, B, C = 4, 3, 2
    out = torch.zeros(T, B, C)
    ys = torch.tensor([[0, 1, 1]]).expand(T, B).contiguous()
    mask = torch.tensor([[0, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float32)
    # last supervised steps: seq 0 -> t=2, seq 1 -> t=1, seq 2 -> t=3
    out[2, 0] = torch.tensor([3.0, 0.0])  # right
    out[1, 1] = torch.tensor([2.0, 0.0])  # wrong
    out[3, 2] = torch.tensor([0.0, 1.0])  # right
    out[3, 0] = torch.tensor([0.0, 9.0])  # unsupervised: ignored
    m = ClassificationMetric(C)
    m.update(out, Batch(torch.zeros(T, B, 1), ys, mask))
    r = m.compute()
    assert r["accuracy"] == pytest.approx(2 / 3)
    ce = torch.nn.functional.cross_entropy(out[mask > 0], ys[mask > 0], reduction="mean")
    assert r["loss"] == pytest.approx(float(ce)) and r["n_steps"] == 4
    with pytest.raises(OsttpError, match="shape"):
        m.update(torch.zeros(T, B, 3), Batch(torch.zeros(T, B, 1), ys, mask))


def test_batches_resume_shuffle_and_errors() -> None:
    task = tasks.load("delayed-xor", "train", n_train=50)
    assert task.num_batches(8) == 7
    full = list(task.batches(8, shuffle=True, seed=5))
    assert [b.xs.shape[1] for b in full] == [8] * 6 + [2]
    tail = list(task.batches(8, shuffle=True, seed=5, start=4))
    assert len(tail) == 3 and all(torch.equal(a.xs, b.xs) for a, b in zip(full[4:], tail))
    other = list(task.batches(8, shuffle=True, seed=6))
    assert not torch.equal(full[0].xs, other[0].xs)
    ordered = torch.cat([b.ys[-1] for b in task.batches(8)])
    assert torch.equal(ordered, task.labels)  # shuffle=False: generation order
    assert list(task.batches(8, start=7)) == []
    for kw in ({"batch_size": 0}, {"batch_size": 8, "start": 8}, {"batch_size": 8, "dtype": torch.int64}):
        with pytest.raises(OsttpError):
            task.batches(**kw)  # raised at call time, before iterating


def test_end_to_end_metric_with_task() -> None:
    task = tasks.load("cue-accumulation", "test", n_test=64)
    metric = task.new_metric()
    for b in task.batches(16):
        metric.update(torch.zeros(b.xs.shape[0], b.xs.shape[1], task.n_out), b)
    r = metric.compute()
    assert r["loss"] == pytest.approx(math.log(2)) and r["n_sequences"] == 64
    assert set(r) >= {task.metric_name, "loss"}


DATA = os.environ.get("OSTTP_DATA", "")


@pytest.mark.skipif(not (DATA and (Path(DATA) / "jsb/jsb-chorales-quarter.json").is_file()),
                    reason="JSB file not found: set OSTTP_DATA (see docs/data.md)")
def test_jsb_chance_is_constant_frequency_predictor() -> None:
    task = tasks.load("jsb", "valid")
    tot = torch.zeros(88)
    for b in task.batches(16):
        tot += (b.ys * b.mask.unsqueeze(-1)).sum((0, 1))
    p = (tot / task.n_steps).double()
    z = torch.log(p.clamp_min(1e-300)) - torch.log1p(-p)  # logit(p); keys never on get a huge negative
    z = z.clamp(-700.0, 700.0)
    metric = task.new_metric()
    for b in task.batches(16):
        metric.update(z.expand(b.ys.shape), b)
    assert metric.compute()["nll"] == pytest.approx(task.chance, rel=1e-9)
    assert 0 < task.chance < 88 * math.log(2)


def test_class_decision_last_mean_max_by_hand() -> None:
    from osttp.tasks.metrics import ClassificationMetric
    from osttp.tasks import Batch

    # T=3, B=2, C=2; sequence 0 supervised at steps 1-2, sequence 1 at step 2 only.
    logits = torch.tensor([[[9.0, 0.0], [0.0, 9.0]],
                           [[0.0, 5.0], [0.0, 0.0]],
                           [[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    mask = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    ys = torch.tensor([[1, 1], [1, 1], [1, 1]])
    batch = Batch(torch.zeros(3, 2, 1), ys, mask)
    acc = {}
    for decision in ("last", "mean", "max"):
        m = ClassificationMetric(2, decision)
        m.update(logits, batch)
        acc[decision] = m.compute()["accuracy"]
    # last: seq0 step 2 -> class 0 (wrong), seq1 step 2 -> class 1 (right)
    # mean: seq0 (0.5, 2.5) -> 1 (right); seq1 -> 1 (right). The unsupervised step 0 never counts.
    # max: seq0 softmax max class 1 (0.993 at step 1) -> right; seq1 -> 1 -> right
    assert acc == {"last": 0.5, "mean": 1.0, "max": 1.0}
    with pytest.raises(OsttpError, match="decision"):
        ClassificationMetric(2, "vote")


def test_target_prior_is_the_mean_target_over_supervised_steps() -> None:
    t = tasks.load("delayed-xor", "valid", delay=2, n_valid=64)
    prior = t.target_prior()
    assert prior.shape == (2,) and abs(float(prior.sum()) - 1.0) < 1e-12
    labels = torch.cat([b.ys[-1] for b in t.batches(16)])  # balanced XOR labels
    assert torch.allclose(prior, torch.bincount(labels, minlength=2).to(torch.float64) / labels.numel())
