"""What a hardware engineer asks of a training run on simulated synapses: how many pulses, on how much
of the array, how many refreshes, and where the conductances ended up.

    pulse_statistics(hw.synapses, samples=hw.samples)  # per weight matrix and "total" (HardwareTraining.pulse_counts)
    conductance_histograms(hw.synapses.arrays)         # PCM arrays: counts of G+ and G- over [G_min, G_max]

Definitions (docs/hardware.md §5): update pulses are those fired by weight updates (programming and
refresh pulses are counted apart); a synapse is "written" by an update when that update fires at least
one pulse on it; a sample is one training sequence, whichever schedule applies the updates.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from osttp.hardware import _checks
from osttp.hardware.arrays import SynapseArray
from osttp.hardware.pcm_array import PCMArray
from osttp.hardware.synapses import HardwareSynapses

_SUMMED = ("pulses", "synapses", "program_pulses", "refreshes", "update_steps", "written_synapses")


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _matrix_statistics(counts: torch.Tensor, stats: Mapping[str, int], samples: int) -> dict[str, float]:
    n = counts.numel()
    pulses = int(counts.sum())
    return {"pulses": pulses, "synapses": n, "per_synapse": _ratio(pulses, n),
            "per_synapse_per_sample": _ratio(pulses, n * samples),
            "max_per_synapse": int(counts.max()) if n else 0,
            "fraction_ever_written": _ratio(int((counts > 0).sum()), n),
            "fraction_written_per_update": _ratio(stats["written_synapses"], n * stats["update_steps"]),
            "update_steps": stats["update_steps"], "written_synapses": stats["written_synapses"],
            "program_pulses": stats["program_pulses"], "refreshes": stats["refreshes"]}


def pulse_statistics(synapses: HardwareSynapses, samples: int = 0) -> dict[str, dict[str, float]]:
    """Per hardware parameter and summed over them ("total"): update ``pulses``, ``synapses``,
    ``per_synapse``, ``per_synapse_per_sample`` (per training sequence; 0 when samples is 0),
    ``max_per_synapse``, ``fraction_ever_written`` (synapses with >= 1 update pulse),
    ``fraction_written_per_update`` (mean over updates of the fraction written by that update),
    ``update_steps``, ``written_synapses``, ``program_pulses`` (initial + refresh) and ``refreshes``."""
    samples = _checks.integer("pulse_statistics", "samples", samples, ge=0)
    stats = synapses.stats()
    counts = synapses.pulse_counts()
    out = {name: _matrix_statistics(c, stats[name], samples) for name, c in counts.items()}
    total: dict[str, float] = {k: sum(v[k] for v in out.values()) for k in _SUMMED}
    n, steps = total["synapses"], max(v["update_steps"] for v in out.values())
    ever = sum(v["fraction_ever_written"] * v["synapses"] for v in out.values())
    total.update({"per_synapse": _ratio(total["pulses"], n),
                  "per_synapse_per_sample": _ratio(total["pulses"], n * samples),
                  "max_per_synapse": max(v["max_per_synapse"] for v in out.values()),
                  "fraction_ever_written": _ratio(ever, n),
                  "fraction_written_per_update": _ratio(total["written_synapses"], n * steps),
                  "update_steps": steps})
    out["total"] = total
    return out


def conductance_histograms(arrays: Mapping[str, SynapseArray], bins: int = 24,
                           t: float | None = None) -> dict[str, dict[str, list[float]]]:
    """For every PCM array: ``edges`` (bins + 1 values spanning [G_min, G_max], µS) and the counts of
    ``g_pos`` and ``g_neg`` (all pairs) per bin, noise-free, drifted to time t (default now; drift may
    take a value below G_min: it is counted in the first bin). Other arrays have no conductances and
    are left out."""
    bins = _checks.integer("conductance_histograms", "bins", bins, ge=1)
    out: dict[str, dict[str, list[float]]] = {}
    for name, array in arrays.items():
        if not isinstance(array, PCMArray):
            continue
        lo, hi = array.config.g_min, array.config.g_max
        g_pos, g_neg = array.conductances(t, read_noise=False)
        entry: dict[str, list[float]] = {"edges": torch.linspace(lo, hi, bins + 1, dtype=torch.float64).tolist()}
        for key, g in (("g_pos", g_pos), ("g_neg", g_neg)):
            clipped = torch.clamp(g.detach().double().flatten(), lo, hi)
            entry[key] = torch.histc(clipped, bins=bins, min=lo, max=hi).tolist()
        out[name] = entry
    return out
