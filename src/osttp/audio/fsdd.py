"""The Free Spoken Digit Dataset (FSDD) as a source of recordings, and its splits (docs/data.md).

A source folder is a clone of the public free-spoken-digit-dataset repository (or its
`recordings/` folder itself): mono 8 kHz wav files named {digit}_{speaker}_{index}.wav.

Splits, both over the same converted recordings:
- "speakers" (SHD's protocol, speaker-disjoint): test = theo and lucas, valid = george,
  train = jackson, nicolas and yweweler;
- "official" (FSDD's README: index 0-4 of every speaker and digit is test): test = index 0-4,
  valid = index 5-9, train = index 10-49.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from osttp.errors import DataError

FSDD_SOURCE = "git clone of the public free-spoken-digit-dataset repository (github.com/Jakobovski/free-spoken-digit-dataset)"
# SHA-256 of `cd recordings && ls | sort | xargs sha256sum` at the repository's commit 26eb9aa
RECORDINGS_SHA256 = "1801eae019c063377d98f831d3f93574f259475df7332bb0e3d1b080fb5e6959"
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")  # speaker id = position
SPEAKER_SPLIT: dict[str, tuple[str, ...]] = {"train": ("jackson", "nicolas", "yweweler"), "valid": ("george",),
                                             "test": ("theo", "lucas")}
OFFICIAL_SPLIT: dict[str, range] = {"train": range(10, 50), "valid": range(5, 10), "test": range(0, 5)}
SPLIT_KINDS = ("speakers", "official")
_NAME = re.compile(r"^([0-9])_([a-z]+)_([0-9]+)\.wav$")


@dataclass(frozen=True)
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int

    @property
    def key(self) -> str:
        return self.path.stem

    def split(self, kind: str) -> str:
        """Which split ("train", "valid", "test") the recording is in under split kind."""
        if kind == "speakers":
            return next(s for s, names in SPEAKER_SPLIT.items() if self.speaker in names)
        return next(s for s, idx in OFFICIAL_SPLIT.items() if self.index in idx)


def recordings_dir(source: str | os.PathLike[str]) -> Path:
    """The folder of wav files: source/recordings, or source itself if it holds the wavs."""
    root = Path(source).expanduser()
    if not root.is_dir():
        raise DataError(f"FSDD source {root} is not a folder; expected a {FSDD_SOURCE} (docs/data.md)")
    sub = root / "recordings"
    return sub if sub.is_dir() else root


def list_recordings(source: str | os.PathLike[str]) -> list[Recording]:
    """Every recording of the source, sorted by name; a folder without any is a one-line error."""
    folder = recordings_dir(source)
    out: list[Recording] = []
    for p in sorted(folder.iterdir()):
        m = _NAME.match(p.name)
        if m is None or not p.is_file():
            continue
        speaker = m.group(2)
        if speaker not in SPEAKERS:
            raise DataError(f"FSDD recording {p}: speaker {speaker!r} is not one of {', '.join(SPEAKERS)} "
                            "(a newer FSDD release? the splits name every speaker)")
        out.append(Recording(p, int(m.group(1)), speaker, int(m.group(3))))
    if not out:
        raise DataError(f"FSDD source {folder}: no recordings named {{digit}}_{{speaker}}_{{index}}.wav; "
                        f"expected a {FSDD_SOURCE} (docs/data.md)")
    return out


def recordings_digest(folder: str | os.PathLike[str]) -> str:
    """SHA-256 of the text `ls | sort | xargs sha256sum` prints in the recordings folder."""
    lines = []
    for p in sorted(Path(folder).iterdir(), key=lambda q: q.name.encode("utf-8")):
        if p.is_file():
            lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n")
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
