"""Update schemes (docs/math.md §6): turn a requested weight change ΔW into SET pulse counts.

Every scheme maps ΔW (a float tensor, e.g. -lr·grad) and the array's pulse weight p = α·ε (the nominal
weight change of one pulse) to ``(n_pos, n_neg)``, non-negative integer tensors of ΔW's shape:
n_pos pulses potentiate (G⁺), n_neg depress (G⁻). Names, for `get_scheme`:

- ``"stochastic"``: `StochasticScheme`, n = ⌊|ΔW|/p⌋ + Bernoulli(frac), so E[n] = |ΔW|/p.
- ``"sign"``: `SignScheme`, one pulse in the direction of ΔW when |ΔW| > threshold.
- ``"mixed-precision"``: `MixedPrecisionScheme(threshold=1, max_pulses=None)`, a digital accumulator
  χ += ΔW; fire ⌊|χ|/p⌋ pulses (threshold θ: once |χ| >= θ·p) and subtract them from χ (Nandakumar et
  al. 2020). The accumulator persists between calls.

A scheme instance belongs to one array (the mixed-precision one holds that array's accumulator).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from osttp.errors import OsttpError
from osttp.hardware import _checks
from osttp.registry import Registry


def _split_by_sign(delta_w: Tensor, n: Tensor) -> tuple[Tensor, Tensor]:
    """Route n pulses to G⁺ where ΔW > 0 and to G⁻ where ΔW < 0."""
    zero = torch.zeros_like(n)
    return torch.where(delta_w > 0, n, zero), torch.where(delta_w < 0, n, zero)


def _check_pulse_weight(pulse_weight: float) -> float:
    return _checks.number("scheme", "pulse_weight", pulse_weight, gt=0.0)


class UpdateScheme(ABC):
    """ΔW -> (n_pos, n_neg) pulse counts for one array."""

    name: ClassVar[str]

    @abstractmethod
    def pulses(self, delta_w: Tensor, pulse_weight: float,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Pulse counts (long tensors of delta_w's shape) for the requested change delta_w."""

    def state_dict(self) -> dict[str, object]:
        """The scheme's state between calls, for checkpoints (stateless schemes: empty)."""
        return {}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore `state_dict()` output."""
        if state != {}:
            raise OsttpError(f"update scheme {self.name!r} keeps no state, got keys {sorted(state)}")


class StochasticScheme(UpdateScheme):
    """Stochastic rounding of |ΔW|/p: unbiased in the number of pulses, no state."""

    name: ClassVar[str] = "stochastic"

    def pulses(self, delta_w: Tensor, pulse_weight: float,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n = ⌊|ΔW|/p⌋ + Bernoulli(|ΔW|/p - ⌊|ΔW|/p⌋), hence E[n] = |ΔW|/p."""
        x = delta_w.abs() / _check_pulse_weight(pulse_weight)
        base = torch.floor(x)
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        n = (base + (u < x - base).to(x.dtype)).to(torch.long)
        return _split_by_sign(delta_w, n)


class SignScheme(UpdateScheme):
    """One pulse towards sign(ΔW) wherever |ΔW| > threshold.

    threshold (weight units, >= 0): None (default) means p/2, i.e. fire when one pulse is closer to
    the request than no pulse; 0 fires on every non-zero ΔW (sign-SGD with a step of one pulse).
    """

    name: ClassVar[str] = "sign"

    def __init__(self, threshold: float | None = None) -> None:
        if threshold is not None:
            _checks.number("SignScheme", "threshold", threshold, ge=0.0)
        self.threshold = threshold

    def pulses(self, delta_w: Tensor, pulse_weight: float,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n = 1 where |ΔW| > threshold, else 0."""
        p = _check_pulse_weight(pulse_weight)
        thr = 0.5 * p if self.threshold is None else self.threshold
        n = (delta_w.abs() > thr).to(torch.long)
        return _split_by_sign(delta_w, n)


class MixedPrecisionScheme(UpdateScheme):
    """Digital accumulator χ (same shape and dtype as ΔW), kept across calls in `accumulator`.

    threshold θ (in pulses, > 0, default 1): a synapse fires n = ⌊|χ|/p + 1 - θ⌋ pulses once |χ| >= θ·p.
    θ = 1 is Nandakumar et al. (2020): fire ⌊|χ|/p⌋ and keep the remainder; θ = 0.5 rounds |χ|/p to
    the nearest integer (the residue then lies in [-p/2, p/2]); θ > 1 is a dead zone that ignores small
    accumulated changes. max_pulses (>= 1, default None: no limit) is the pulse budget per synapse and
    update: larger counts are cut to it and the rest stays in χ.

    Bookkeeping is exact: after any sequence of calls, χ + p·Σ(n_pos - n_neg) = ΣΔW (up to float
    rounding), so no requested update is lost, only delayed.
    """

    name: ClassVar[str] = "mixed-precision"

    def __init__(self, threshold: float = 1.0, max_pulses: int | None = None) -> None:
        self.threshold = _checks.number("MixedPrecisionScheme", "threshold", threshold, gt=0.0)
        self.max_pulses = (None if max_pulses is None
                           else _checks.integer("MixedPrecisionScheme", "max_pulses", max_pulses, ge=1))
        self.accumulator: Tensor | None = None

    def pulses(self, delta_w: Tensor, pulse_weight: float,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """χ += ΔW; n = min(max_pulses, max(0, ⌊|χ|/p + 1 - θ⌋)) pulses towards sign(χ); χ -= sign(χ)·n·p."""
        p = _check_pulse_weight(pulse_weight)
        if self.accumulator is None:
            self.accumulator = torch.zeros_like(delta_w)
        elif self.accumulator.shape != delta_w.shape:
            raise OsttpError(f"delta_w: expected shape {tuple(self.accumulator.shape)} (the accumulator's), "
                             f"got {tuple(delta_w.shape)}")
        chi = self.accumulator + delta_w
        n_float = torch.clamp(torch.floor(chi.abs() / p + (1.0 - self.threshold)), min=0.0)
        if self.max_pulses is not None:
            n_float = torch.clamp(n_float, max=float(self.max_pulses))
        self.accumulator = chi - torch.sign(chi) * n_float * p
        return _split_by_sign(chi, n_float.to(torch.long))

    def state_dict(self) -> dict[str, object]:
        return {"accumulator": None if self.accumulator is None else self.accumulator.clone()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        if not isinstance(state, dict) or set(state) != {"accumulator"}:
            raise OsttpError(f"mixed-precision scheme state: expected the key 'accumulator', got {state!r:.80}")
        acc = state["accumulator"]
        if acc is not None and not isinstance(acc, Tensor):
            raise OsttpError(f"mixed-precision scheme state: accumulator must be a tensor or None, got "
                             f"{type(acc).__name__}")
        self.accumulator = None if acc is None else acc.clone()


SCHEMES: Registry[UpdateScheme] = Registry("update scheme")
SCHEMES.register("stochastic", StochasticScheme, help="floor(|dW|/p) pulses plus one with the remainder's probability")
SCHEMES.register("sign", SignScheme, help="one pulse towards sign(dW) when |dW| > threshold")
SCHEMES.register("mixed-precision", MixedPrecisionScheme,
                 help="a digital accumulator fires floor(|chi|/p) pulses and keeps the rest")


def get_scheme(name: str, **options: object) -> UpdateScheme:
    """A fresh scheme called `name` (SCHEMES); options go to its constructor ("sign": threshold;
    "mixed-precision": threshold, max_pulses). Unknown names/options raise OsttpError."""
    entry = SCHEMES.get(name)
    try:
        return entry.build(**options)
    except TypeError as exc:
        raise OsttpError(f"update scheme {name!r}: bad options {sorted(options)}: {exc}") from None
