"""The FSDD spoken digits through SHD's cochlear model (docs/data.md, "spoken-digits").

Files in SHD's layout under <data folder>/spoken-digits/, one per split, built by
`osttp data make spoken-digits` (osttp.audio.spoken_digits); 10 classes (digits 0-9, English).
`spoken-digits-20` (VOICES_20): digits 0-9 in English and German spoken by espeak-ng, 20 classes,
split by voice (voices_{train,valid,test}.h5 under <data folder>/spoken-digits-20/).
Two split kinds over the FSDD recordings:
- `spoken-digits`: speaker-disjoint, SHD's protocol (speakers_{train,valid,test}.h5);
- `spoken-digits-official`: FSDD's own split by recording index (official_{train,valid,test}.h5).

Window: max_time 1.0 s holds 99 % of FSDD's recordings whole (the longest is 2.3 s); with the
default T = 100 a step is a 10 ms bin, SHD's usual binning.
"""
from __future__ import annotations

from osttp.tasks.shd import SpikeDataset

FOLDER = "spoken-digits"
N_CLASSES = 10
MAX_TIME = 1.0


def _files(kind: str) -> dict[str, str]:
    return {split: f"{FOLDER}/{kind}_{split}.h5" for split in ("train", "valid", "test")}


SPEAKERS = SpikeDataset("spoken-digits", _files("speakers"), N_CLASSES, MAX_TIME)
OFFICIAL = SpikeDataset("spoken-digits-official", _files("official"), N_CLASSES, MAX_TIME)
# English and German digits spoken by espeak-ng (osttp.audio.speech), split by voice; 20 classes
# in SHD's convention. The longest utterance (130 words per minute) lasts under 1 s.
FOLDER_20 = "spoken-digits-20"
VOICES_20 = SpikeDataset("spoken-digits-20", {split: f"{FOLDER_20}/voices_{split}.h5" for split in ("train", "valid", "test")},
                         20, MAX_TIME)
