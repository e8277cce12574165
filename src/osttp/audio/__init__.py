"""A cochlear front end: sound to spikes, the model SHD was made with (docs/audio.md).

RMS normalise and Hann edges (signal), basilar membrane (basilar), Meddis hair cell (haircell),
bushy cells (bushy), the pipeline (cochlea). Needs the `audio` extra (scipy, numba, soundfile);
the spike-file writer (spikefile) needs only h5py, so `Cochlea` is imported on first use.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Cochlea", "CochleaParams"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from osttp.audio import cochlea

        return getattr(cochlea, name)
    raise AttributeError(f"module 'osttp.audio' has no attribute {name!r}")
