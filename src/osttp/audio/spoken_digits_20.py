"""Building the 20-class synthetic spoken-digit spike files (docs/data.md, "spoken-digits-20").

    make_spoken_digits_20(out, jobs=2)

speaks every utterance of osttp.audio.speech's design with espeak-ng (in memory, one spawned
process per voice), adds the seeded noise, passes each through the cochlea (osttp.audio.convert:
shards, resumable, the same bytes for any --jobs) and writes into `out` (normally
<data folder>/spoken-digits-20/) voices_{train,valid,test}.h5 in SHD's layout — split by voice
variant, extra/speaker = the variant's position in VOICES — and manifest.json: the design, the
espeak-ng version, the seed, the files' SHA-256 and sample counts, wall time and peak memory.
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Callable, Sequence

from osttp.audio import espeak, speech
from osttp.audio.cochlea import CochleaParams
from osttp.audio.convert import convert
from osttp.audio.spikefile import write_manifest, write_split

SPLITS = ("train", "valid", "test")


def spike_file_name(split: str) -> str:
    return f"voices_{split}.h5"


def utterances(voices: Sequence[str], seed: int, jobs: int,
               labels: Sequence[int] | None = None) -> list[speech.Utterance]:
    """The utterances to convert (of the chosen voices; only `labels` when given), in file order:
    by voice in catalogue order, then digit, rate and pitch."""
    clean = speech.synthesize(voices, jobs=jobs)
    keep = set(range(len(speech.DIGIT_NAMES)) if labels is None else labels)
    return [speech.Utterance(u, x, seed, espeak.SAMPLE_RATE) for u, x in clean.items() if u.label in keep]


def make_spoken_digits_20(out: str | os.PathLike[str], voices: Sequence[str] | None = None, jobs: int = 1,
                          seed: int = 0, params: CochleaParams | None = None,
                          progress: Callable[[int, int], None] | None = None,
                          labels: Sequence[int] | None = None) -> dict:
    """Synthesise and convert the 20-class spoken digits into `out`; returns the manifest.
    labels: convert only these classes (small builds for tests); None is all 20."""
    start = time.monotonic()
    params = params or CochleaParams()
    chosen = speech.check_voices(voices)
    utts = utterances(chosen, seed, jobs, labels)
    out_dir = Path(out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    spikes, worker_rss = convert(utts, out_dir / "work", jobs=jobs, seed=seed, params=params, progress=progress)
    files = {}
    for split in SPLITS:
        samples = [(u.key, u.spoken.label, u.spoken.speaker) for u in utts if speech.voice_split(u.spoken.variant) == split]
        files[spike_file_name(split)] = write_split(out_dir / spike_file_name(split), spikes, samples,
                                                    speech.DIGIT_NAMES)
    manifest = {
        "dataset": "spoken-digits-20 (English and German digits spoken by espeak-ng, through the cochlea, SHD layout)",
        "espeak_ng": espeak.version(), "utterances": len(utts), "voices": list(chosen),
        "voice_split": {s: [v for v in chosen if speech.voice_split(v) == s] for s in SPLITS},
        "rates_wpm": list(speech.RATES_WPM), "pitches": list(speech.PITCHES), "snr_db": list(speech.SNR_DB),
        "seed": seed, "channels": params.channels, "model_rate_hz": params.rate,
        "keys": list(speech.DIGIT_NAMES), "files": files,
        "jobs": jobs, "wall_s": round(time.monotonic() - start, 1),
        "peak_rss_mib": {"main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                         "largest_worker": round(worker_rss / 1024, 1)},
    }
    write_manifest(out_dir, manifest)
    return manifest
