"""tonic's SHD reader (tonic.datasets.SHD) opens the spike files the converter writes: the same
layout as SHD's own files, so tools built on tonic read the spoken digits too."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from osttp.audio.spikefile import write_spike_file

tonic = pytest.importorskip("tonic", reason="tonic is an optional test dependency (pip install tonic)")


def test_tonic_shd_reads_a_written_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0, 1, 20)) for _ in range(4)]
    units = [rng.integers(0, 700, 20) for _ in range(4)]
    keys = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    folder = tmp_path / "SHD"  # tonic looks in <save_to>/SHD/
    folder.mkdir()
    write_spike_file(folder / "shd_train.h5", times, units, [3, 1, 4, 1], [0, 1, 2, 0], keys, ["a", "b", "c", "d"])
    # tonic takes the presence of the downloaded archive as "already downloaded"; an empty
    # placeholder keeps it from fetching SHD (the reading, which is what is tested, ignores it)
    (folder / "shd_train.h5.zip").write_bytes(b"")
    ds = tonic.datasets.SHD(save_to=str(tmp_path), train=True)
    assert len(ds) == 4 and [k.decode() for k in ds.classes] == keys and ds.speaker.tolist() == [0, 1, 2, 0]
    for i in range(4):
        events, target = ds[i]
        assert int(target) == [3, 1, 4, 1][i]
        assert np.array_equal(events["x"], units[i])
        # tonic gives microseconds of the float32 seconds stored
        assert np.allclose(events["t"], np.asarray(times[i], dtype=np.float32).astype(np.float64) * 1e6, atol=1)
