"""The synthetic 20-class spoken digits: what is spoken, by which voices, and the split by voice
(docs/data.md, "spoken-digits-20").

Labels follow SHD: 0-9 the English digits "zero".."nine", 10-19 the German "null".."neun". Every
voice variant of VOICES speaks every digit in both languages (espeak-ng's "en" and "de" voices with
that variant) at each rate of RATES_WPM and each base pitch of PITCHES. White Gaussian noise is
added at an SNR drawn uniformly from SNR_DB, from a generator seeded by (seed, utterance key), so
the sound does not depend on the order or process it is made in.

espeak-ng carries state from one utterance to the next (osttp.audio.espeak), so each voice's
utterances are synthesised in a fresh spawned process in one fixed order — all of the voice's
utterances, whichever of them are then converted — and an utterance's samples depend only on its
voice, the design constants and the library's version.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from osttp.errors import OsttpError

ENGLISH = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GERMAN = ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")
DIGIT_NAMES = ENGLISH + GERMAN  # label = position (SHD's convention)
RATES_WPM = (130, 175, 220)  # espeak-ng's default is 175 words per minute
PITCHES = (35, 65)           # base pitch on espeak-ng's 0..100 scale (default 50)
SNR_DB = (10.0, 30.0)
# Voice variants (espeak-ng-data/voices/!v), 8 male and 8 female; speaker id = position. Held
# out: test and valid voices never speak in train, so accuracy measures generalisation to unheard
# voices. Variants with breath noise are left out: they are not reproducible (osttp.audio.espeak).
# 16 variants x 20 digits x 3 rates x 2 pitches = 1,920 utterances.
VOICES = ("m1", "m2", "m4", "m5", "m6", "max", "f1", "f4", "anika", "belinda", "Annie",
          "m7", "steph", "m3", "linda", "Andrea")
VOICE_SPLIT: dict[str, tuple[str, ...]] = {"valid": ("m7", "steph"), "test": ("m3", "linda", "Andrea")}


def language(label: int) -> str:
    return "en" if label < 10 else "de"


def voice_split(variant: str) -> str:
    """"train", "valid" or "test": the split every utterance of this voice variant is in."""
    return next((s for s, names in VOICE_SPLIT.items() if variant in names), "train")


@dataclass(frozen=True)
class Spoken:
    """What one utterance is: a digit (label) said by a voice variant at a rate and pitch."""

    label: int
    variant: str
    rate_wpm: int
    pitch: int

    @property
    def key(self) -> str:
        return f"{language(self.label)}-{DIGIT_NAMES[self.label]}_{self.variant}_{self.rate_wpm}wpm_p{self.pitch}"

    @property
    def speaker(self) -> int:
        return VOICES.index(self.variant)


def voice_design(variant: str) -> list[Spoken]:
    """Every utterance of one voice variant, in the fixed order it is synthesised in."""
    return [Spoken(label, variant, r, p) for label in range(len(DIGIT_NAMES)) for r in RATES_WPM for p in PITCHES]


def check_voices(voices: Sequence[str] | None) -> tuple[str, ...]:
    """The chosen voice variants in catalogue order (all of VOICES for None), each split keeping one."""
    if voices is None:
        return VOICES
    unknown = [v for v in voices if v not in VOICES]
    if unknown:
        raise OsttpError(f"voices {', '.join(map(repr, unknown))}: expected voice variants among {', '.join(VOICES)}")
    chosen = tuple(v for v in VOICES if v in voices)
    for split in ("train", "valid", "test"):
        if not any(voice_split(v) == split for v in chosen):
            names = [v for v in VOICES if voice_split(v) == split]
            raise OsttpError(f"voices {', '.join(chosen)}: no {split} voice; the splits are by voice, "
                             f"so include one of {', '.join(names)}")
    return chosen


def _speak_voice(variant: str) -> list[np.ndarray]:
    """(in a fresh process) the int16 samples of voice_design(variant), in its order."""
    from osttp.audio.espeak import speak

    return [speak(f"{language(u.label)}+{variant}", DIGIT_NAMES[u.label], u.rate_wpm, u.pitch)
            for u in voice_design(variant)]


def synthesize(variants: Sequence[str], jobs: int = 1) -> dict[Spoken, np.ndarray]:
    """The clean int16 samples of every utterance of the variants, each voice in its own process."""
    from osttp.audio.espeak import variants as installed

    missing = sorted(set(variants) - set(installed()))
    if missing:
        raise OsttpError(f"espeak-ng voice variants {', '.join(missing)} are not installed")
    out: dict[Spoken, np.ndarray] = {}
    with mp.get_context("spawn").Pool(max(1, min(jobs, len(variants))), maxtasksperchild=1) as pool:
        for variant, samples in zip(variants, pool.map(_speak_voice, variants, chunksize=1)):
            for u, x in zip(voice_design(variant), samples):
                if not np.any(x):
                    raise OsttpError(f"espeak-ng produced silence for {u.key}")
                out[u] = x
    return out


def noisy(clean: np.ndarray, seed: int, key: str) -> np.ndarray:
    """clean (int16) in [-1, 1) plus white Gaussian noise at an SNR drawn uniformly from SNR_DB;
    SNR = 10 log10(mean clean power / noise variance), the power taken over the whole utterance."""
    from osttp.tasks.base import derive_seed

    x = clean.astype(np.float64) / 32768.0
    rng = np.random.default_rng(derive_seed(seed, "speech-noise", key))
    snr = rng.uniform(*SNR_DB)
    power = float(np.mean(np.square(x)))
    return x + rng.standard_normal(x.size) * np.sqrt(power / 10.0 ** (snr / 10.0))


@dataclass(frozen=True, eq=False)
class Utterance:
    """One synthesised utterance as a cochlea source (osttp.audio.convert): key, frames, rate, read()."""

    spoken: Spoken
    clean: np.ndarray = field(repr=False)
    seed: int
    rate: int

    @property
    def key(self) -> str:
        return self.spoken.key

    @property
    def frames(self) -> int:
        return int(self.clean.size)

    @property
    def tag(self) -> str:
        """key and a digest of the clean samples: a shard is reused only for the same sound."""
        return f"{self.key}:{hashlib.sha256(self.clean.tobytes()).hexdigest()[:16]}"

    def read(self) -> tuple[np.ndarray, int]:
        return noisy(self.clean, self.seed, self.key), self.rate
