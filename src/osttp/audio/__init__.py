"""A cochlear front end: sound to spikes, the model SHD was made with (docs/audio.md).

RMS normalise and Hann edges (signal), basilar membrane (basilar), Meddis hair cell (haircell),
bushy cells (bushy), the pipeline (cochlea). Needs the `audio` extra (scipy, numba, soundfile).
"""
from __future__ import annotations

from osttp.audio.cochlea import Cochlea, CochleaParams

__all__ = ["Cochlea", "CochleaParams"]
