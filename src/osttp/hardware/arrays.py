"""Synapse arrays: the state of one weight tensor held in simulated devices (docs/math.md §6).

`IdealArray` (exact weights), `QuantizedArray` (level indices) and `PCMArray` (conductances of
differential pairs) share one interface, `SynapseArray`:

- ``weight(t=None, read_noise=True, drift_compensation=False, generator=None)``: the weights a read at
  time t sees (``generator`` draws the read noise; default the array's own);
- ``weight_std(t)``: std of one read's noise per weight (None for noise-free devices);
- ``apply_pulses(n_pos, n_neg)``: integer SET pulse counts per synapse (potentiation / depression);
- ``refresh()``; ``set_time(t)``; ``pulse_count`` (update pulses per synapse) and ``total_pulses``;
- ``state_dict()`` / ``load_state_dict(state)`` for checkpoints.

Simulated time only moves forward (`set_time`); pulses happen at the current time. Randomness comes
from the `torch.Generator` given at construction, so a seed fixes everything.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from osttp.errors import OsttpError
from osttp.hardware.devices import IdealDevice, QuantizedDevice


def global_drift_compensation_factor(read_weight: Tensor, programmed_weight: Tensor) -> Tensor:
    """Σ|W(t_p)| / Σ|W_read(t)|: one scalar that undoes the average drift of a whole array.

    As Joshi et al. (2020, Nat. Commun. 11:2473): the controller keeps one digital number, the summed
    magnitude of what it programmed, and compares it with the same sum over a read at time t. Uniform
    drift is removed exactly; device-to-device differences in drift and read noise are not. Returns 1 for
    an all-zero array (nothing to calibrate against).
    """
    read_sum = read_weight.abs().sum()
    ref_sum = programmed_weight.abs().sum()
    if read_sum == 0 or ref_sum == 0:
        return torch.ones((), dtype=read_weight.dtype, device=read_weight.device)
    return ref_sum / read_sum


def _check_counts(name: str, counts: Tensor, shape: torch.Size) -> Tensor:
    """Pulse counts must be non-negative integers of the array's shape."""
    if not isinstance(counts, Tensor) or counts.shape != shape:
        got = tuple(counts.shape) if isinstance(counts, Tensor) else type(counts).__name__
        raise OsttpError(f"{name}: expected a tensor of shape {tuple(shape)}, got {got}")
    if counts.dtype.is_floating_point or counts.dtype.is_complex or counts.dtype == torch.bool:
        raise OsttpError(f"{name}: expected an integer tensor, got dtype {counts.dtype}")
    if counts.numel() and int(counts.min()) < 0:
        raise OsttpError(f"{name}: expected pulse counts >= 0, got minimum {int(counts.min())}")
    return counts.to(torch.long)


class SynapseArray(ABC):
    """One weight tensor stored in devices. Subclasses hold the device state."""

    def __init__(self, shape: torch.Size, dtype: torch.dtype, device: torch.device, time: float) -> None:
        self.shape = torch.Size(shape)
        self.dtype = dtype
        self.device = device
        self.time = float(time)
        # SET pulses fired by updates (not by programming or refresh), per synapse, both polarities.
        self.pulse_count = torch.zeros(self.shape, dtype=torch.long, device=device)
        # Updates applied through pulses, and the synapses that got >= 1 pulse summed over them: their
        # ratio is the mean fraction of the array one update writes.
        self.update_steps = 0
        self.written_synapses = 0

    @property
    def total_pulses(self) -> int:
        """Update pulses fired on the whole array so far."""
        return int(self.pulse_count.sum())

    def _count_update(self, n_pos: Tensor, n_neg: Tensor) -> None:
        """Book one update's pulses: per-synapse counts, and how many synapses it wrote."""
        self.pulse_count += n_pos + n_neg
        self.update_steps += 1
        self.written_synapses += int(((n_pos + n_neg) > 0).sum())

    # Updates are written exactly (no pulses): the ideal device.
    exact_write: bool = False
    # The conductances drift in time, so global drift compensation means something.
    drifts: bool = False

    @property
    def full_scale(self) -> float:
        """The largest |weight| the array represents: the ADC's range is set in units of it."""
        w = self.weight(read_noise=False)
        return float(w.abs().max()) if w.numel() else 1.0

    @property
    @abstractmethod
    def pulse_weight(self) -> float:
        """Nominal weight change of one pulse (weight units); the update schemes quantise ΔW by it."""

    def set_time(self, t: float) -> None:
        """Advance simulated time to t (s); time never goes backwards."""
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < self.time:
            raise OsttpError(f"time t = {t!r}: expected a finite number >= the current time {self.time}")
        self.time = float(t)

    def _read_time(self, t: float | None) -> float:
        """The time of a read: now if None; a read may look ahead but not into the past."""
        if t is None:
            return self.time
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < self.time:
            raise OsttpError(f"read time t = {t!r}: expected None or a finite number >= the current "
                             f"time {self.time}")
        return float(t)

    @abstractmethod
    def weight(self, t: float | None = None, read_noise: bool = True,
               drift_compensation: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """The weights a read at time t (default: now) returns; `generator` (default: the array's own)
        draws the read noise, so reads can use a stream of their own."""

    def weight_std(self, t: float | None = None) -> Tensor | None:
        """Std of one read's noise on each weight at time t (weight units); None for noise-free arrays."""
        self._read_time(t)
        return None

    # --- checkpoints ----------------------------------------------------------------------------------
    _state_tensors: tuple[str, ...] = ()  # per-synapse tensors a subclass keeps (besides pulse_count)
    _state_ints: tuple[str, ...] = ()  # counters a subclass keeps

    def state_dict(self) -> dict[str, object]:
        """Everything needed to continue from here (tensors are copies)."""
        out: dict[str, object] = {"time": self.time, "pulse_count": self.pulse_count.clone(),
                                  "update_steps": self.update_steps, "written_synapses": self.written_synapses}
        out.update({k: getattr(self, k).clone() for k in self._state_tensors})
        out.update({k: int(getattr(self, k)) for k in self._state_ints})
        return out

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore `state_dict()` output of an array of the same class, shape and device model."""
        keys = {"time", "pulse_count", "update_steps", "written_synapses", *self._state_tensors, *self._state_ints}
        if not isinstance(state, dict) or set(state) != keys:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise OsttpError(f"{type(self).__name__} state: expected keys {sorted(keys)}, got {got}")
        for k in ("pulse_count", *self._state_tensors):
            ref, new = getattr(self, k), state[k]
            if not isinstance(new, Tensor) or new.shape != ref.shape:
                got = tuple(new.shape) if isinstance(new, Tensor) else type(new).__name__
                raise OsttpError(f"{type(self).__name__} state[{k!r}]: expected shape {tuple(ref.shape)}, got {got}")
        for k in ("pulse_count", *self._state_tensors):
            ref = getattr(self, k)
            setattr(self, k, state[k].to(dtype=ref.dtype, device=ref.device).clone())  # type: ignore[union-attr]
        for k in ("update_steps", "written_synapses", *self._state_ints):
            setattr(self, k, int(state[k]))  # type: ignore[call-overload]
        self.time = float(state["time"])  # type: ignore[arg-type]

    @abstractmethod
    def apply_pulses(self, n_pos: Tensor, n_neg: Tensor) -> None:
        """Fire n_pos potentiating and n_neg depressing pulses per synapse (integer tensors of `shape`)."""

    def refresh(self) -> int:
        """Refresh saturated synapses; returns how many were refreshed (0 for devices without refresh)."""
        return 0

    def stats(self) -> dict[str, int]:
        """Counters for reports: update pulses, programming pulses, refreshes, unconverged synapses,
        updates applied and synapses written summed over them."""
        return {"update_pulses": self.total_pulses, "program_pulses": 0, "refreshes": 0, "unconverged": 0,
                "update_steps": self.update_steps, "written_synapses": self.written_synapses}


class IdealArray(SynapseArray):
    """Exact weights: `add` writes ΔW with no loss (pulses are not used)."""

    exact_write = True

    def __init__(self, config: IdealDevice, initial_weight: Tensor, generator: torch.Generator | None = None,
                 time: float = 0.0) -> None:
        super().__init__(initial_weight.shape, initial_weight.dtype, initial_weight.device, time)
        self.config = config
        self._w = initial_weight.detach().clone()

    _state_tensors = ("_w",)

    @property
    def pulse_weight(self) -> float:
        return 0.0

    def weight(self, t: float | None = None, read_noise: bool = True,
               drift_compensation: bool = False, generator: torch.Generator | None = None) -> Tensor:
        self._read_time(t)
        return self._w.clone()

    def add(self, delta_w: Tensor) -> None:
        """W += ΔW exactly (the ideal device's whole update rule)."""
        if delta_w.shape != self.shape:
            raise OsttpError(f"delta_w: expected shape {tuple(self.shape)}, got {tuple(delta_w.shape)}")
        self._w.add_(delta_w)

    def apply_pulses(self, n_pos: Tensor, n_neg: Tensor) -> None:
        raise OsttpError("the ideal device is written exactly with IdealArray.add(delta_w), not with pulses")


class QuantizedArray(SynapseArray):
    """Weights k·Δ on 2**bits - 1 levels; a pulse moves k by ±1, clipped to [-L, L]. No noise, no drift."""

    def __init__(self, config: QuantizedDevice, initial_weight: Tensor, generator: torch.Generator | None = None,
                 time: float = 0.0) -> None:
        super().__init__(initial_weight.shape, initial_weight.dtype, initial_weight.device, time)
        self.config = config
        # Initial weights go to the nearest level (what a write-verify of a multi-level cell gives).
        levels = torch.round(initial_weight.detach() / config.level_step)
        self.levels = torch.clamp(levels, -config.max_level, config.max_level).to(torch.long)

    _state_tensors = ("levels",)

    @property
    def pulse_weight(self) -> float:
        return self.config.level_step

    @property
    def full_scale(self) -> float:
        return self.config.w_max

    def weight(self, t: float | None = None, read_noise: bool = True,
               drift_compensation: bool = False, generator: torch.Generator | None = None) -> Tensor:
        self._read_time(t)
        return self.levels.to(self.dtype) * self.config.level_step

    def apply_pulses(self, n_pos: Tensor, n_neg: Tensor) -> None:
        n_pos = _check_counts("n_pos", n_pos, self.shape)
        n_neg = _check_counts("n_neg", n_neg, self.shape)
        top = self.config.max_level
        self.levels = torch.clamp(self.levels + n_pos - n_neg, -top, top)
        self._count_update(n_pos, n_neg)
