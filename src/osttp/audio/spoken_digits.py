"""Building the spoken-digit spike files from FSDD (docs/data.md, "spoken-digits").

    make_spoken_digits(source, out, jobs=2)

writes into `out` (normally <data folder>/spoken-digits/) one SHD-layout file per split kind and
split — speakers_{train,valid,test}.h5 and official_{train,valid,test}.h5 (see osttp.audio.fsdd
for the splits) — and manifest.json: the recordings' checksum, the seed, the files' SHA-256 and
sample counts, wall time and peak memory. The conversion state (shards, the basilar-membrane
matrix) lives in out/work/ and makes a rerun resume; it can be deleted once the files exist.
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Callable

import soundfile

from osttp.audio.cochlea import CochleaParams
from osttp.audio.convert import Source, convert
from osttp.audio.fsdd import (DIGIT_NAMES, RECORDINGS_SHA256, SPEAKERS, SPLIT_KINDS, list_recordings,
                              recordings_dir, recordings_digest)
from osttp.audio.spikefile import write_manifest, write_split
from osttp.errors import DataError

SPLITS = ("train", "valid", "test")


def spike_file_name(kind: str, split: str) -> str:
    return f"{kind}_{split}.h5"


def _sources(source: str | os.PathLike[str]) -> tuple[list, list[Source]]:
    recs = list_recordings(source)
    srcs = []
    for r in recs:
        try:
            info = soundfile.info(str(r.path))
        except RuntimeError as e:
            raise DataError(f"FSDD recording {r.path}: cannot be read ({' '.join(str(e).split())})") from None
        srcs.append(Source(r.key, r.path, int(info.frames), int(info.samplerate)))
    return recs, srcs


def make_spoken_digits(source: str | os.PathLike[str], out: str | os.PathLike[str], jobs: int = 1, seed: int = 0,
                       params: CochleaParams | None = None,
                       progress: Callable[[int, int], None] | None = None) -> dict:
    """Convert FSDD at `source` into the spoken-digit files under `out`; returns the manifest."""
    start = time.monotonic()
    params = params or CochleaParams()
    recs, srcs = _sources(source)
    digest = recordings_digest(recordings_dir(source))
    out_dir = Path(out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    spikes, worker_rss = convert(srcs, out_dir / "work", jobs=jobs, seed=seed, params=params, progress=progress)
    files = {}
    for kind in SPLIT_KINDS:
        for split in SPLITS:
            chosen = [(r.key, r.digit, SPEAKERS.index(r.speaker)) for r in recs if r.split(kind) == split]
            name = spike_file_name(kind, split)
            files[name] = write_split(out_dir / name, spikes, chosen, DIGIT_NAMES)
    manifest = {
        "dataset": "spoken-digits (FSDD through the cochlea, SHD layout)",
        "source": str(recordings_dir(source)), "recordings": len(recs),
        "recordings_sha256": digest, "recordings_sha256_expected": RECORDINGS_SHA256,
        "seed": seed, "channels": params.channels, "model_rate_hz": params.rate,
        "speakers": list(SPEAKERS), "keys": list(DIGIT_NAMES), "files": files,
        "jobs": jobs, "wall_s": round(time.monotonic() - start, 1),
        "peak_rss_mib": {"main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                         "largest_worker": round(worker_rss / 1024, 1)},
    }
    write_manifest(out_dir, manifest)
    return manifest
