"""Task metrics, accumulated over a split: accuracy (with the class decided from a sequence's outputs)
and multi-label NLL per step. See docs/data.md for their definitions."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from osttp.errors import OsttpError
from osttp.tasks.batch import Batch

# ---------------------------------------------------------------------------------------------
# metrics


class Metric:
    """Accumulates over a split; compute() returns the primary metric under its name plus "loss"."""

    metric_name: str = ""

    def update(self, outputs: torch.Tensor, batch: Batch) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def sums(self) -> dict[str, float]:
        """The running sums compute() reads: adding two metrics' sums gives the metric of both inputs
        (osttp.distributed reduces them over processes)."""
        raise NotImplementedError

    def set_sums(self, sums: dict[str, float]) -> None:
        raise NotImplementedError


def _check_outputs(outputs: torch.Tensor, batch: Batch, n_out: int) -> None:
    T, B = batch.mask.shape
    if outputs.dim() != 3 or tuple(outputs.shape) != (T, B, n_out):
        raise OsttpError(f"metric: outputs have shape {tuple(outputs.shape)}; expected (T, B, C) = ({T}, {B}, {n_out})")


DECISIONS = ("last", "mean", "max")


def decide_class(logits: torch.Tensor, m: torch.Tensor, decision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The predicted class of each sequence from its outputs (T, B, C) and supervision mask m (T, B):
    "last": argmax at the last supervised step; "mean": argmax of the logits averaged over the
    supervised steps; "max": argmax over classes of the largest softmax over the supervised steps.
    Returns (predictions (B,), has_supervised_step (B,) bool)."""
    T, B = m.shape
    has = m.any(dim=0)
    if decision == "last":
        t_idx = torch.where(m, torch.arange(T).unsqueeze(1), -1).max(dim=0).values.clamp(min=0)
        return logits[t_idx, torch.arange(B)].argmax(dim=-1), has
    w = m.to(logits.dtype).unsqueeze(-1)
    if decision == "mean":
        return ((logits * w).sum(0) / w.sum(0).clamp(min=1.0)).argmax(dim=-1), has
    probs = torch.softmax(logits, -1).masked_fill(~m.unsqueeze(-1), -1.0)
    return probs.amax(dim=0).argmax(dim=-1), has


class ClassificationMetric(Metric):
    """accuracy: the class decided from each sequence's outputs (`decide_class`: at the last supervised
    step by default, or their mean or max over the supervised steps) vs its label at its last
    supervised step; loss: cross-entropy averaged over every supervised step of every sequence seen."""

    metric_name = "accuracy"

    def __init__(self, n_classes: int, decision: str = "last") -> None:
        if decision not in DECISIONS:
            raise OsttpError(f"unknown class decision {decision!r}; expected one of {', '.join(DECISIONS)}")
        self.n_classes = int(n_classes)
        self.decision = decision
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._seqs = 0
        self._loss_sum = 0.0
        self._steps = 0

    @torch.no_grad()
    def update(self, outputs: torch.Tensor, batch: Batch) -> None:
        _check_outputs(outputs, batch, self.n_classes)
        # Accumulate on the CPU in float64: outputs may live on a GPU and sums run over a whole split.
        logits = outputs.detach().to("cpu", torch.float64)
        m = batch.mask.detach().cpu() > 0
        ys = batch.ys.detach().cpu()
        # Loss only over supervised steps: cheaper than a full (T, B) cross-entropy for sparse masks.
        sel = logits[m]
        if sel.numel():
            self._loss_sum += float(F.cross_entropy(sel, ys[m], reduction="sum"))
        self._steps += int(m.sum())
        T, B = m.shape
        # Label of each sequence: the one at its last supervised step (the largest t with mask 1).
        t_idx = torch.where(m, torch.arange(T, device=m.device).unsqueeze(1), -1).max(dim=0).values
        pred, has = decide_class(logits, m, self.decision)
        if bool(has.any()):
            labels = ys[t_idx.clamp(min=0), torch.arange(B)]
            self._correct += int((pred[has] == labels[has]).sum())
            self._seqs += int(has.sum())

    def sums(self) -> dict[str, float]:
        return {"correct": self._correct, "seqs": self._seqs, "loss_sum": self._loss_sum, "steps": self._steps}

    def set_sums(self, sums: dict[str, float]) -> None:
        # counts stay integers (exact in float64 up to 2**53)
        self._correct, self._seqs = int(round(sums["correct"])), int(round(sums["seqs"]))
        self._loss_sum, self._steps = float(sums["loss_sum"]), int(round(sums["steps"]))

    def compute(self) -> dict[str, float]:
        nan = float("nan")
        return {
            "accuracy": self._correct / self._seqs if self._seqs else nan,
            "loss": self._loss_sum / self._steps if self._steps else nan,
            "n_sequences": float(self._seqs),
            "n_steps": float(self._steps),
        }


def multilabel_sums(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
) -> dict[str, float]:
    """Sums over supervised steps, for any number of keys C (the last dimension).

    logits, targets: (..., C); mask: (...) with 1 = supervised (None: all).
    Returns nll_sum (sum over steps of sum over keys of sigmoid BCE with logits), steps, and the
    true positive / false positive / false negative counts at threshold 0.5 on the sigmoid."""
    if logits.shape != targets.shape:
        raise OsttpError(f"metric: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    C = logits.shape[-1]
    lg = logits.detach().to("cpu", torch.float64).reshape(-1, C)
    tg = targets.detach().to("cpu", torch.float64).reshape(-1, C)
    if mask is not None:
        m = mask.detach().cpu().reshape(-1) > 0
        lg, tg = lg[m], tg[m]
    nll = F.binary_cross_entropy_with_logits(lg, tg, reduction="sum")
    pred = lg > 0  # sigmoid(z) > 0.5  <=>  z > 0
    truth = tg > 0.5
    return {
        "nll_sum": float(nll),
        "steps": float(lg.shape[0]),
        "tp": float((pred & truth).sum()),
        "fp": float((pred & ~truth).sum()),
        "fn": float((~pred & truth).sum()),
    }


def multilabel_nll(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Negative log-likelihood per supervised step: sum over keys of sigmoid BCE, averaged over steps."""
    s = multilabel_sums(logits, targets, mask)
    return s["nll_sum"] / s["steps"] if s["steps"] else float("nan")


class MultilabelMetric(Metric):
    """nll (= loss): per-step sum over the n_keys keys of sigmoid BCE with logits, summed over every
    supervised step of the split and divided by the number of those steps (not a mean of
    per-sequence means). frame_accuracy: TP / (TP + FP + FN), counts summed over the split,
    prediction = sigmoid(logit) > 0.5 (Bay et al. 2009)."""

    metric_name = "nll"

    def __init__(self, n_keys: int) -> None:
        self.n_keys = int(n_keys)
        self.reset()

    def reset(self) -> None:
        self._acc = {"nll_sum": 0.0, "steps": 0.0, "tp": 0.0, "fp": 0.0, "fn": 0.0}

    @torch.no_grad()
    def update(self, outputs: torch.Tensor, batch: Batch) -> None:
        _check_outputs(outputs, batch, self.n_keys)
        s = multilabel_sums(outputs, batch.ys, batch.mask)
        for k, v in s.items():
            self._acc[k] += v

    def sums(self) -> dict[str, float]:
        return dict(self._acc)

    def set_sums(self, sums: dict[str, float]) -> None:
        self._acc = {k: float(sums[k]) for k in self._acc}

    def compute(self) -> dict[str, float]:
        a = self._acc
        nll = a["nll_sum"] / a["steps"] if a["steps"] else float("nan")
        denom = a["tp"] + a["fp"] + a["fn"]
        return {
            "nll": nll,
            "loss": nll,
            "frame_accuracy": a["tp"] / denom if denom else float("nan"),
            "n_steps": a["steps"],
        }


