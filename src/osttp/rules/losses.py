"""Per-step losses E_t and their output errors dE_t/do_t (docs/math.md §2).

Classes: E_t = CE(softmax(o_t), y*_t); multi-label: E_t = sum_c BCEWithLogits(o_t,c, y*_t,c).
Both summed over the batch; the mask m_t weights each sample's step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from osttp.errors import OsttpError


@dataclass(frozen=True)
class Loss:
    name: str  # "ce" or "bce"

    def value(self, o: Tensor, target: Tensor) -> Tensor:
        """E_t per sample (B,), for float targets (B, C); autograd-friendly."""
        if self.name == "ce":
            return cross_entropy(o, target)
        return binary_cross_entropy(o, target)

    def output_error(self, o: Tensor, target: Tensor) -> Tensor:
        """dE_t/do_t (B, C): the readout's local error."""
        if self.name == "ce":
            return cross_entropy_error(o, target)
        return binary_cross_entropy_error(o, target)

    def prediction(self, o: Tensor) -> Tensor:
        """y_hat: softmax(o) or sigmoid(o)."""
        return torch.softmax(o, -1) if self.name == "ce" else torch.sigmoid(o)


def cross_entropy(o: Tensor, target: Tensor) -> Tensor:
    """-sum_c y*_c log softmax(o)_c, per sample (targets may be one-hot or soft)."""
    return -(target * torch.log_softmax(o, -1)).sum(-1)


def cross_entropy_error(o: Tensor, target: Tensor) -> Tensor:
    """d/do of `cross_entropy`: softmax(o) * sum_c y*_c - y*."""
    return torch.softmax(o, -1) * target.sum(-1, keepdim=True) - target


def binary_cross_entropy(o: Tensor, target: Tensor) -> Tensor:
    """sum_c BCEWithLogits(o_c, y*_c), per sample."""
    return F.binary_cross_entropy_with_logits(o, target, reduction="none").sum(-1)


def binary_cross_entropy_error(o: Tensor, target: Tensor) -> Tensor:
    """d/do of `binary_cross_entropy`: sigmoid(o) - y*."""
    return torch.sigmoid(o) - target


LOSSES = ("ce", "bce")


def make_loss(name: str) -> Loss:
    if name not in LOSSES:
        raise OsttpError(f"unknown loss {name!r}; expected one of {LOSSES} or 'auto'")
    return Loss(name)
