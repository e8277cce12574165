"""Device models (docs/math.md §6): frozen, validated configuration dataclasses, and the device equations.

Three models, registered by name in osttp.hardware.catalog.DEVICES (see `get_device`):

- ``"ideal"``: `IdealDevice`, infinite precision, no noise, no drift. Updates are applied exactly, so
  training with it is plain SGD.
- ``"quantized"``: `QuantizedDevice`, weights on 2**bits - 1 uniform levels in [-w_max, w_max]; a pulse
  moves a weight by one level. Noise-free, no drift: isolates the effect of limited precision.
- ``"pcm"``: `PCMDevice`, the phase-change-memory model of Nandakumar et al. (2018): state-dependent
  noisy SET increments, abrupt RESET, read noise, conductance drift, differential pairs and refresh.

Conductances are in microsiemens (µS), times in seconds (s), weights in the network's weight units.
The PCM equations live in exactly one method each: `PCMDevice.mean_increment` (μ(G)),
`PCMDevice.increment_std` (σ(G)), `PCMDevice.read_noise_std` (σ_r(G)), `PCMDevice.drift_factor`
(((t - t_p)/t₀)^(-ν)), `PCMDevice.initial_conductance` (N(G₀, 0.1·G₀) clipped) and
`PCMDevice.differential_weight` (W = α Σ_pairs (G⁺ - G⁻)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Union

import torch
from torch import Tensor

from osttp.hardware import _checks


@dataclass(frozen=True)
class IdealDevice:
    """Infinite precision, no noise, no drift: an update ΔW is written exactly (plain SGD)."""

    name: ClassVar[str] = "ideal"


@dataclass(frozen=True)
class QuantizedDevice:
    """Weights restricted to uniform levels; one pulse moves a weight by one level.

    Parameters
    ----------
    bits:
        Resolution in bits (dimensionless, >= 2). The levels are k·Δ for k = -(2**(bits-1) - 1) ..
        2**(bits-1) - 1, i.e. 2**bits - 1 levels, symmetric and containing 0 (so a zero weight is
        representable; the one code of a two's-complement range that would break the symmetry is unused).
    w_max:
        Largest weight magnitude (weight units, > 0); the level step is Δ = w_max / (2**(bits-1) - 1).
    """

    bits: int = 4
    w_max: float = 1.0
    name: ClassVar[str] = "quantized"

    def __post_init__(self) -> None:
        _checks.integer("QuantizedDevice", "bits", self.bits, ge=2, le=32)
        _checks.number("QuantizedDevice", "w_max", self.w_max, gt=0.0)

    @property
    def max_level(self) -> int:
        """The largest level index L; the weight is k·Δ with k in [-L, L]."""
        return 2 ** (self.bits - 1) - 1

    @property
    def level_step(self) -> float:
        """Δ, the weight change of one level (weight units)."""
        return self.w_max / self.max_level

    @property
    def pulse_weight(self) -> float:
        """The weight change of one pulse, used by the update schemes: one level."""
        return self.level_step


@dataclass(frozen=True)
class PCMDevice:
    """Phase-change memory synapse: N differential pairs per weight, W = α Σ_pairs (G⁺ - G⁻).

    Defaults are docs/math.md §6 (Nandakumar et al. 2018). Units: conductances µS, times s, α weight/µS.

    Parameters
    ----------
    g_min, g_max:
        Conductance range [G_min, G_max] (µS), default [0.1, 12]. Every programmed conductance is
        clipped into it. (Drift may later take a read value below G_min: drift is not clipped.)
    g0, g0_rel_std:
        Initial programming / RESET state: G ~ N(G₀, g0_rel_std·G₀), clipped to the range;
        G₀ = 0.1 µS, g0_rel_std = 0.1 (dimensionless).
    mu_slope, mu_intercept:
        Mean SET increment μ(G) = max(0, mu_slope·G + mu_intercept); defaults -0.084 (µS/µS) and
        0.880 µS. μ reaches 0 at the saturation conductance G_sat = 0.880/0.084 ≈ 10.48 µS.
    sigma_slope, sigma_intercept:
        Std of the SET increment σ(G) = sigma_slope·G + sigma_intercept; defaults 0.091 (µS/µS) and
        0.260 µS. A device at or above G_sat (μ = 0) is fully SET and no longer responds: its
        increment is exactly 0 (σ is switched off with μ; see `sample_increment`).
    write_noise:
        If False, every SET pulse adds exactly μ(G) (a noise-free, still non-linear device; useful
        for tests and ablations).
    read_noise_slope, read_noise_intercept:
        Read noise per read N(0, σ_r(G)), σ_r(G) = read_noise_slope·G + read_noise_intercept;
        defaults 0.03 (µS/µS) and 0.13 µS. Set both to 0 to disable.
    nu, t0:
        Drift G(t) = G(t_p)·((t - t_p)/t₀)^(-ν), ν = 0.04 (dimensionless), t₀ = 1 s. For t - t_p < t₀
        the device has not started drifting (factor 1), which also avoids the singularity at t = t_p.
        ν = 0 disables drift.
    refresh, refresh_threshold:
        When G⁺ or G⁻ of a synapse exceeds refresh_threshold (µS, default 9), `PCMArray.refresh`
        RESETs all its devices and reprograms the weight. refresh=False disables it.
    n_pairs:
        Differential pairs per synapse (dimensionless, default 1); pulses go round-robin over the pairs.
    eps:
        ε, the nominal mean SET increment the update schemes assume (µS, default 0.75): one pulse is
        worth α·ε in weight units.
    w_max, alpha:
        α (weight units per µS). If alpha is None (default) it is derived from w_max (weight units,
        default 1.0) as α = w_max / (n_pairs·(refresh_threshold - G_min)): the largest conductance
        difference a pair holds without triggering a refresh maps to w_max. Give alpha to set it directly.
    program_max_iterations:
        Iteration limit of the program-and-verify loop used for the initial weights and for refresh
        (dimensionless, default 200).
    """

    g_min: float = 0.1
    g_max: float = 12.0
    g0: float = 0.1
    g0_rel_std: float = 0.1
    mu_slope: float = -0.084
    mu_intercept: float = 0.880
    sigma_slope: float = 0.091
    sigma_intercept: float = 0.260
    write_noise: bool = True
    read_noise_slope: float = 0.03
    read_noise_intercept: float = 0.13
    nu: float = 0.04
    t0: float = 1.0
    refresh: bool = True
    refresh_threshold: float = 9.0
    n_pairs: int = 1
    eps: float = 0.75
    w_max: float = 1.0
    alpha: float | None = None
    program_max_iterations: int = 200
    name: ClassVar[str] = "pcm"

    def __post_init__(self) -> None:
        own = "PCMDevice"
        g_min = _checks.number(own, "g_min", self.g_min, ge=0.0)
        g_max = _checks.number(own, "g_max", self.g_max, gt=g_min)
        _checks.number(own, "g0", self.g0, ge=g_min, le=g_max)
        _checks.number(own, "g0_rel_std", self.g0_rel_std, ge=0.0)
        _checks.number(own, "mu_slope", self.mu_slope)
        _checks.number(own, "mu_intercept", self.mu_intercept)
        # σ and σ_r are linear in G, so non-negative on the range iff non-negative at both ends.
        for kind in ("sigma", "read_noise"):
            slope = _checks.number(own, f"{kind}_slope", getattr(self, f"{kind}_slope"))
            icpt = _checks.number(own, f"{kind}_intercept", getattr(self, f"{kind}_intercept"))
            if slope * g_min + icpt < 0:
                raise _checks.fail(own, f"{kind}_intercept", icpt,
                                   f"a value giving a std >= 0 at g_min = {g_min}")
            if slope * g_max + icpt < 0:
                raise _checks.fail(own, f"{kind}_slope", slope,
                                   f"a value giving a std >= 0 at g_max = {g_max}")
        _checks.boolean(own, "write_noise", self.write_noise)
        _checks.number(own, "nu", self.nu, ge=0.0)
        _checks.number(own, "t0", self.t0, gt=0.0)
        _checks.boolean(own, "refresh", self.refresh)
        thr = _checks.number(own, "refresh_threshold", self.refresh_threshold, le=g_max)
        if not thr > g_min:
            raise _checks.fail(own, "refresh_threshold", thr, f"a number > g_min = {g_min} and <= g_max")
        _checks.integer(own, "n_pairs", self.n_pairs, ge=1)
        _checks.number(own, "eps", self.eps, gt=0.0)
        _checks.number(own, "w_max", self.w_max, gt=0.0)
        if self.alpha is not None:
            _checks.number(own, "alpha", self.alpha, gt=0.0)
        _checks.integer(own, "program_max_iterations", self.program_max_iterations, ge=1)

    # --- derived quantities -------------------------------------------------------------------------
    @property
    def effective_alpha(self) -> float:
        """α in weight units per µS: `alpha` if given, else w_max / (n_pairs·(refresh_threshold - G_min))."""
        if self.alpha is not None:
            return float(self.alpha)
        return self.w_max / (self.n_pairs * (self.refresh_threshold - self.g_min))

    @property
    def pulse_weight(self) -> float:
        """α·ε, the nominal weight change of one SET pulse (weight units)."""
        return self.effective_alpha * self.eps

    @property
    def saturation_conductance(self) -> float:
        """G_sat where μ(G) reaches 0 (µS); inf when μ never reaches 0 on a non-decreasing line."""
        if self.mu_slope >= 0:
            return math.inf if self.mu_intercept > 0 else -math.inf
        return -self.mu_intercept / self.mu_slope

    # --- docs/math.md §6 equations, one method each ----------------------------------------------------------
    def mean_increment(self, g: Tensor) -> Tensor:
        """μ(G) = max(0, mu_slope·G + mu_intercept) (µS): mean conductance change of one SET pulse."""
        return torch.clamp(self.mu_slope * g + self.mu_intercept, min=0.0)

    def increment_std(self, g: Tensor) -> Tensor:
        """σ(G) = sigma_slope·G + sigma_intercept (µS): std of the SET increment (before saturation)."""
        return self.sigma_slope * g + self.sigma_intercept

    def read_noise_std(self, g: Tensor) -> Tensor:
        """σ_r(G) = read_noise_slope·G + read_noise_intercept (µS): std of the additive noise per read."""
        return self.read_noise_slope * g + self.read_noise_intercept

    def drift_factor(self, elapsed: Tensor) -> Tensor:
        """((t - t_p)/t₀)^(-ν), with t - t_p clamped to >= t₀ (no drift during the first t₀ after programming)."""
        return torch.clamp(elapsed / self.t0, min=1.0) ** (-self.nu)

    def initial_conductance(self, shape: tuple[int, ...] | torch.Size, generator: torch.Generator,
                            dtype: torch.dtype = torch.float32,
                            device: torch.device | str | None = None) -> Tensor:
        """Initial programming / RESET state: G ~ N(G₀, g0_rel_std·G₀), clipped to [G_min, G_max] (µS)."""
        z = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
        return torch.clamp(self.g0 + self.g0_rel_std * self.g0 * z, self.g_min, self.g_max)

    def differential_weight(self, g_pos: Tensor, g_neg: Tensor) -> Tensor:
        """W = α Σ_pairs (G⁺ - G⁻): conductances of shape (n_pairs, *weight_shape) to weights."""
        return self.effective_alpha * (g_pos - g_neg).sum(dim=0)

    # --- the programming model built on those equations ---------------------------------------------
    def sample_increment(self, g: Tensor, generator: torch.Generator) -> Tensor:
        """One SET pulse's ΔG (µS) for devices at conductance g: N(μ(G), σ(G)), before range clipping.

        Saturation choice: where μ(G) = 0 (G >= G_sat ≈ 10.48 µS) σ is set to 0 too, so a fully SET
        device stays where it is. Keeping σ(G_sat) ≈ 1.2 µS there would make SET pulses a zero-mean
        random walk of large steps at the top of the range (clipping at G_max then even biases it
        downwards), which no PCM device shows. Below G_sat the distribution of docs/math.md §6 is used unchanged.
        """
        mu = self.mean_increment(g)
        if not self.write_noise:
            return mu
        sigma = torch.where(mu > 0, self.increment_std(g), torch.zeros_like(g))
        return mu + sigma * torch.randn(g.shape, generator=generator, dtype=g.dtype, device=g.device)

    def apply_set_pulse(self, g: Tensor, generator: torch.Generator) -> Tensor:
        """Conductances after one SET pulse: G + ΔG clipped to [G_min, G_max] (µS)."""
        return torch.clamp(g + self.sample_increment(g, generator), self.g_min, self.g_max)


DeviceConfig = Union[IdealDevice, QuantizedDevice, PCMDevice]
