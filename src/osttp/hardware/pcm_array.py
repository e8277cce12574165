"""PCMArray: one weight tensor in differential pairs of phase-change-memory devices (docs/math.md §6).

Conductances G+, G- per pair with their programming times; SET pulses with state-dependent,
noisy increments, read noise, power-law drift, refresh and program-and-verify. The interface is
`osttp.hardware.arrays.SynapseArray`'s.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from osttp.errors import OsttpError
from osttp.hardware.arrays import SynapseArray, _check_counts, global_drift_compensation_factor
from osttp.hardware.devices import PCMDevice

CALIBRATION_READS = 64  # reads averaged by one drift-compensation calibration (noise std / 8)


class PCMArray(SynapseArray):
    """Conductances G⁺, G⁻ of shape (n_pairs, *weight_shape), each with its programming time t_p.

    A device is stored by G(t_p), its conductance right after its last programming event, and t_p;
    its conductance at time t is G(t_p)·drift_factor(t - t_p). A SET pulse at time t starts from the
    drifted value, adds a sampled increment and restarts the device's drift clock (t_p = t).
    The initial weights are written by program-and-verify (`program`), starting from the RESET state.
    """

    def __init__(self, config: PCMDevice, initial_weight: Tensor, generator: torch.Generator,
                 time: float = 0.0) -> None:
        if not initial_weight.dtype.is_floating_point:
            raise OsttpError(f"initial_weight: expected a floating-point tensor, got {initial_weight.dtype}")
        super().__init__(initial_weight.shape, initial_weight.dtype, initial_weight.device, time)
        self.config = config
        self.generator = generator
        pair_shape = (config.n_pairs, *self.shape)
        self.g_pos = config.initial_conductance(pair_shape, generator, self.dtype, self.device)
        self.g_neg = config.initial_conductance(pair_shape, generator, self.dtype, self.device)
        self.t_pos = torch.full(pair_shape, self.time, dtype=self.dtype, device=self.device)
        self.t_neg = torch.full(pair_shape, self.time, dtype=self.dtype, device=self.device)
        # Which pair takes a synapse's next pulse: round-robin spreads the pulses over the pairs.
        self.next_pair = torch.zeros(self.shape, dtype=torch.long, device=self.device)
        self.program_pulses = 0
        self.refresh_count = 0
        self.unconverged = 0
        self.program(initial_weight.detach())

    drifts = True

    @property
    def pulse_weight(self) -> float:
        return self.config.pulse_weight

    @property
    def full_scale(self) -> float:
        return self.max_holdable_weight  # = w_max unless alpha was given directly

    @property
    def max_holdable_weight(self) -> float:
        """α·n_pairs·(refresh_threshold - G_min): the largest |W| kept without triggering a refresh
        (= w_max when α is derived from it). Larger targets are programmed best effort."""
        cfg = self.config
        return cfg.effective_alpha * cfg.n_pairs * (cfg.refresh_threshold - cfg.g_min)

    # --- reading ------------------------------------------------------------------------------------
    _state_tensors = ("g_pos", "g_neg", "t_pos", "t_neg", "next_pair")
    _state_ints = ("program_pulses", "refresh_count", "unconverged")

    def conductances(self, t: float | None = None, read_noise: bool = False,
                     generator: torch.Generator | None = None, reads: int = 1) -> tuple[Tensor, Tensor]:
        """(G⁺, G⁻) at time t (default now), drifted, optionally with read noise (µS) from `generator`
        (default: the array's): one read, or the mean of `reads` independent reads (noise std
        σ_r/√reads, sampled in that form). Shapes (n_pairs, *shape); new tensors, safe to modify."""
        gen = self.generator if generator is None else generator
        noise_scale = 1.0 / math.sqrt(reads)
        t = self._read_time(t)
        out = []
        for g_p, t_p in ((self.g_pos, self.t_pos), (self.g_neg, self.t_neg)):
            g = self._drifted(g_p, t_p, t).clone()
            if read_noise:
                z = torch.randn(g.shape, generator=gen, dtype=g.dtype, device=g.device)
                g = g + self.config.read_noise_std(g) * z * noise_scale
            out.append(g)
        return out[0], out[1]

    def _drifted(self, g_p: Tensor, t_p: Tensor, t: float) -> Tensor:
        """G(t_p)·drift_factor(t - t_p); skips the power when no device has drifted yet (the common
        case during training at a fixed time), which is exact because the factor is then 1."""
        if self.config.nu == 0 or t_p.numel() == 0 or t - float(t_p.min()) <= self.config.t0:
            return g_p
        return g_p * self.config.drift_factor(t - t_p)

    def programmed_weight(self) -> Tensor:
        """The weights as programmed (no drift, no noise): the reference of drift compensation."""
        return self.config.differential_weight(self.g_pos, self.g_neg)

    def calibration_weight(self, t: float | None = None, read_noise: bool = True,
                           generator: torch.Generator | None = None) -> Tensor:
        """The weights a drift-compensation calibration sees at time t: the mean of CALIBRATION_READS
        reads. One read would bias Σ|W_read| upwards by its noise (|w + n| > |w| on average for small
        w), so the factor would shrink the weights even without drift; calibration is rare, so the
        controller can afford to average (as the verify reads of program-and-verify do)."""
        g_pos, g_neg = self.conductances(t, read_noise, generator, reads=CALIBRATION_READS)
        return self.config.differential_weight(g_pos, g_neg)

    def drift_compensation_factor(self, t: float | None = None, read_noise: bool = True,
                                  generator: torch.Generator | None = None) -> Tensor:
        """Σ|W(t_p)| / Σ|W_cal(t)| from one calibration (`calibration_weight`) at time t."""
        return global_drift_compensation_factor(self.calibration_weight(t, read_noise, generator),
                                                self.programmed_weight())

    def weight(self, t: float | None = None, read_noise: bool = True,
               drift_compensation: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """α Σ(G⁺ - G⁻) read at time t; with drift_compensation, scaled by the global factor of a
        calibration at that time."""
        g_pos, g_neg = self.conductances(t, read_noise, generator)
        w = self.config.differential_weight(g_pos, g_neg)
        if drift_compensation:
            w = w * self.drift_compensation_factor(t, read_noise, generator)
        return w

    def weight_std(self, t: float | None = None) -> Tensor:
        """Std of one read's noise on each weight at time t: α·sqrt(Σ_pairs σ_r(G⁺)² + σ_r(G⁻)²), the
        devices' read noises being independent (evaluation samples per-sequence reads from it)."""
        g_pos, g_neg = self.conductances(t, read_noise=False)
        var = self.config.read_noise_std(g_pos) ** 2 + self.config.read_noise_std(g_neg) ** 2
        return self.config.effective_alpha * var.sum(dim=0).sqrt()

    # --- writing ------------------------------------------------------------------------------------
    def set_conductances(self, g_pos: Tensor, g_neg: Tensor) -> None:
        """Write exact conductances (µS, shape (n_pairs, *shape)) at the current time, bypassing the
        pulse model: for tests and calibration. Values are clipped to [G_min, G_max]."""
        for name, g in (("g_pos", g_pos), ("g_neg", g_neg)):
            if g.shape != self.g_pos.shape:
                raise OsttpError(f"{name}: expected shape {tuple(self.g_pos.shape)}, got {tuple(g.shape)}")
        lo, hi = self.config.g_min, self.config.g_max
        self.g_pos = torch.clamp(g_pos.to(self.g_pos), lo, hi)
        self.g_neg = torch.clamp(g_neg.to(self.g_neg), lo, hi)
        self.t_pos.fill_(self.time)
        self.t_neg.fill_(self.time)

    def _fire(self, pos: Tensor, neg: Tensor) -> None:
        """One SET pulse on G⁺ of the current pair where `pos`, on G⁻ where `neg` (bool masks)."""
        idx = self.next_pair.unsqueeze(0)
        for g_p, t_p, mask in ((self.g_pos, self.t_pos, pos), (self.g_neg, self.t_neg, neg)):
            g_sel = g_p.gather(0, idx).squeeze(0)
            t_sel = t_p.gather(0, idx).squeeze(0)
            g_new = self.config.apply_set_pulse(self._drifted(g_sel, t_sel, self.time), self.generator)
            g_p.scatter_(0, idx, torch.where(mask, g_new, g_sel).unsqueeze(0))
            t_p.scatter_(0, idx, torch.where(mask, torch.full_like(t_sel, self.time), t_sel).unsqueeze(0))
        fired = pos | neg
        self.next_pair = torch.where(fired, (self.next_pair + 1) % self.config.n_pairs, self.next_pair)

    def apply_pulses(self, n_pos: Tensor, n_neg: Tensor) -> None:
        """Fire n_pos SET pulses on G⁺ (potentiation) and n_neg on G⁻ (depression: RESET is abrupt, so a
        weight decreases by potentiating the other device), one pulse per synapse per round."""
        n_pos = _check_counts("n_pos", n_pos, self.shape).to(self.device)
        n_neg = _check_counts("n_neg", n_neg, self.shape).to(self.device)
        rounds = int(torch.maximum(n_pos, n_neg).max()) if n_pos.numel() else 0
        for r in range(rounds):
            self._fire(n_pos > r, n_neg > r)
        self._count_update(n_pos, n_neg)

    def _reset(self, mask: Tensor) -> None:
        """RESET all devices of the synapses in `mask` to the initial (amorphous) state, now."""
        pair_mask = mask.unsqueeze(0).expand_as(self.g_pos)
        fresh_pos = self.config.initial_conductance(self.g_pos.shape, self.generator, self.dtype, self.device)
        fresh_neg = self.config.initial_conductance(self.g_neg.shape, self.generator, self.dtype, self.device)
        self.g_pos = torch.where(pair_mask, fresh_pos, self.g_pos)
        self.g_neg = torch.where(pair_mask, fresh_neg, self.g_neg)
        self.t_pos = torch.where(pair_mask, torch.full_like(self.t_pos, self.time), self.t_pos)
        self.t_neg = torch.where(pair_mask, torch.full_like(self.t_neg, self.time), self.t_neg)

    def program(self, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Program-and-verify the synapses in `mask` (default all) towards `target` (weight units).

        Each iteration reads the noise-free weight (a verify read averaged enough to ignore read noise)
        and fires one pulse on G⁺ where W < target - α·ε/2, on G⁻ where W > target + α·ε/2. It stops
        when every synapse is within α·ε/2 (half a nominal pulse: a finer target would be hit only by
        chance) or after `program_max_iterations`. A synapse whose device to pulse is fully SET (μ = 0)
        is RESET and started over, as a write-verify controller would (only if |target| <=
        `max_holdable_weight`; beyond that the pair saturates, best effort). Returns the mask of synapses within tolerance;
        `unconverged` counts the others (e.g. targets beyond what the pairs can hold).
        """
        if target.shape != self.shape:
            raise OsttpError(f"target: expected shape {tuple(self.shape)}, got {tuple(target.shape)}")
        target = target.to(dtype=self.dtype, device=self.device)
        if mask is None:
            mask = torch.ones(self.shape, dtype=torch.bool, device=self.device)
        tol = 0.5 * self.pulse_weight
        holdable = target.abs() <= self.max_holdable_weight + tol
        for _ in range(self.config.program_max_iterations):
            err = target - self.weight(read_noise=False)
            pos = mask & (err > tol)
            neg = mask & (err < -tol)
            n = int(pos.sum()) + int(neg.sum())
            if n == 0:
                break
            # A device that must move but is fully SET (μ = 0) never will: start that synapse over,
            # unless its target is beyond what the pairs hold (restarting could not help; best effort).
            idx = self.next_pair.unsqueeze(0)
            g_pos, g_neg = self.conductances(read_noise=False)
            stuck = (pos & (self.config.mean_increment(g_pos.gather(0, idx).squeeze(0)) == 0)) | \
                (neg & (self.config.mean_increment(g_neg.gather(0, idx).squeeze(0)) == 0))
            stuck &= holdable
            if bool(stuck.any()):
                self._reset(stuck)
                pos, neg = pos & ~stuck, neg & ~stuck
                n = int(pos.sum()) + int(neg.sum())
            self._fire(pos, neg)
            self.program_pulses += n
        converged = ~mask | ((target - self.weight(read_noise=False)).abs() <= tol)
        self.unconverged = int((~converged).sum())
        return converged

    def refresh(self) -> int:
        """Refresh every synapse with a device above `refresh_threshold` (drifted value, now): RESET all
        its devices and program-and-verify its previous noise-free weight back (within α·ε/2)."""
        if not self.config.refresh:
            return 0
        g_pos, g_neg = self.conductances(read_noise=False)
        thr = self.config.refresh_threshold
        over = ((g_pos > thr) | (g_neg > thr)).any(dim=0)
        n = int(over.sum())
        if n == 0:
            return 0
        target = self.weight(read_noise=False)
        self._reset(over)
        self.program(target, mask=over)
        self.refresh_count += n
        return n

    def stats(self) -> dict[str, int]:
        return {**super().stats(), "program_pulses": self.program_pulses, "refreshes": self.refresh_count,
                "unconverged": self.unconverged}
