"""The sound before the cochlea: reading, resampling to the model's rate, level and edges (docs/audio.md §1).

The cochlea runs at 48 kHz, the rate the Heidelberg digits (SHD) were recorded and converted at:
the hair-cell model is an explicit Euler step whose rate constants are only stable for a step
well under 1/9080 s, and the bushy cells' 1 ms refractory period is counted in samples, so a
recording at another rate (FSDD: 8 kHz) is resampled first instead of running the model at its rate.
"""
from __future__ import annotations

import os
from math import gcd

import numpy as np

from osttp.errors import OsttpError

MODEL_RATE = 48000
RMS_LEVEL = 0.3  # SHD's level: the waveform is scaled to this RMS before the cochlea


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """A mono sound file as float64 samples in [-1, 1] and its sample rate (wav, flac, ... via soundfile)."""
    import soundfile

    try:
        with soundfile.SoundFile(str(path)) as f:
            if f.channels != 1:
                raise OsttpError(f"audio file {path}: {f.channels} channels; expected a mono recording")
            samples = f.read(dtype="float64")
            rate = int(f.samplerate)
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise OsttpError(f"audio file {path}: cannot be decoded ({' '.join(str(e).split())})") from None
    return np.asarray(samples, dtype=np.float64).reshape(-1), rate


def resample(samples: np.ndarray, rate: int, to: int = MODEL_RATE) -> np.ndarray:
    """samples at `rate` Hz as samples at `to` Hz (polyphase FIR, scipy's Kaiser-windowed design)."""
    from scipy.signal import resample_poly

    if rate <= 0 or to <= 0:
        raise OsttpError(f"sample rates must be positive, got {rate} -> {to}")
    if rate == to:
        return np.asarray(samples, dtype=np.float64)
    g = gcd(rate, to)
    return resample_poly(np.asarray(samples, dtype=np.float64), to // g, rate // g)


def rms_normalise(samples: np.ndarray, level: float = RMS_LEVEL) -> np.ndarray:
    """samples scaled so that sqrt(mean(x^2)) = level; a silent recording is an error, not a NaN."""
    rms = float(np.sqrt(np.mean(np.square(samples)))) if samples.size else 0.0
    if not rms > 0.0:
        raise OsttpError("the recording is silent (RMS 0); nothing to normalise")
    return samples * (level / rms)


def hann_edges(samples: np.ndarray) -> np.ndarray:
    """samples times a Hann window over the whole recording: the first n//2 samples are multiplied
    by the rising half of a 2*(n//2)-point Hann window and the last n//2 by its falling half (the
    middle sample of an odd n is kept), so the recording starts and ends at zero without a click."""
    n = samples.size
    half = n // 2
    rise = np.hanning(2 * half)[:half]
    out = np.array(samples, dtype=np.float64, copy=True)
    out[:half] *= rise
    if half:
        out[-half:] *= rise[::-1]
    return out
