"""The whole cochlea: sound -> spike times and channels in SHD's format (docs/audio.md).

    cochlea = Cochlea()                                  # 700 channels, SHD's constants
    times, units = cochlea.spikes(samples, rate, seed=1)   # seconds (float64), channels (0 = highest frequency)

Stages: resample to 48 kHz, RMS normalise to 0.3, Hann edges, basilar membrane (24 kHz out),
Meddis hair cell, bushy cells. The bushy cells' fibres are random, so the spikes depend on `seed`;
the same (sound, seed) gives the same spikes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from osttp.audio.basilar import BasilarMembrane, MembraneParams
from osttp.audio.bushy import BushyCellParams, fibre_counts, lif_spikes
from osttp.audio.haircell import HairCellParams, firing_probability
from osttp.audio.signal import MODEL_RATE, RMS_LEVEL, hann_edges, resample, rms_normalise


@dataclass(frozen=True)
class CochleaParams:
    channels: int = 700
    rate: int = MODEL_RATE
    level: float = RMS_LEVEL
    membrane: MembraneParams = field(default_factory=MembraneParams)
    hair: HairCellParams = field(default_factory=HairCellParams)
    bushy: BushyCellParams = field(default_factory=BushyCellParams)


class Cochlea:
    """The front end; holds the basilar membrane's cached matrix, so reuse one per process."""

    def __init__(self, params: CochleaParams | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 membrane: BasilarMembrane | None = None) -> None:
        self.params = params or CochleaParams()
        p = self.params
        self.membrane = membrane or BasilarMembrane(p.channels, p.rate, p.membrane, cache_dir=cache_dir)

    @property
    def out_rate(self) -> int:
        """The rate of the stages after the basilar membrane (half the input rate)."""
        return self.params.rate // 2

    def prepare(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """The sound as the membrane gets it: at the model rate, RMS-normalised, Hann edges."""
        x = resample(np.asarray(samples, dtype=np.float64).reshape(-1), rate, self.params.rate)
        return hann_edges(rms_normalise(x, self.params.level))

    def probability(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """Hair-cell firing probability per step, (steps, channels), at out_rate."""
        v = self.membrane.velocity(self.prepare(samples, rate))
        return firing_probability(v, self.out_rate, self.params.hair, inplace=True)

    def spikes(self, samples: np.ndarray, rate: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Spike times (s, float64, ascending) and channels (int64) of the bushy cells."""
        prob = self.probability(samples, rate)
        counts = fibre_counts(prob, self.out_rate, seed, self.params.bushy)
        del prob
        steps, units = lif_spikes(counts, self.out_rate, self.params.bushy)
        return steps / float(self.out_rate), units
