"""Writing spike trains in SHD's HDF5 layout (Cramer et al. 2020; read by osttp.tasks.shd_file).

    spikes/times    variable-length float32, seconds, ascending within a sample
    spikes/units    variable-length uint16, channel 0..699 (0 = highest best frequency)
    labels          uint16 per sample
    extra/speaker   uint16 per sample
    extra/keys      the class names, one string per label
    extra/recording the source recording's name per sample (not in SHD; informative)

Datasets are written without timestamps, so the same spikes give the same bytes; the file is
written under a temporary name and renamed, so a killed run leaves no half-written file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def write_spike_file(path: str | os.PathLike[str], times: Sequence[np.ndarray], units: Sequence[np.ndarray],
                     labels: Sequence[int], speakers: Sequence[int], keys: Sequence[str],
                     recordings: Sequence[str]) -> None:
    import h5py

    n = len(times)
    if not (len(units) == len(labels) == len(speakers) == len(recordings) == n):
        raise ValueError("write_spike_file: times, units, labels, speakers and recordings differ in length")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    string = h5py.string_dtype("utf-8")
    with h5py.File(tmp, "w", track_order=False) as f:
        t = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32), track_times=False)
        u = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16), track_times=False)
        for i in range(n):
            t[i] = np.asarray(times[i], dtype=np.float32)
            u[i] = np.asarray(units[i], dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16), track_times=False)
        f.create_dataset("extra/speaker", data=np.asarray(speakers, dtype=np.uint16), track_times=False)
        f.create_dataset("extra/keys", data=np.asarray(list(keys), dtype=object), dtype=string, track_times=False)
        f.create_dataset("extra/recording", data=np.asarray(list(recordings), dtype=object), dtype=string,
                         track_times=False)
    os.replace(tmp, path)


def write_split(path: Path, spikes: Mapping[str, tuple[np.ndarray, np.ndarray]],
                samples: Sequence[tuple[str, int, int]], keys: Sequence[str]) -> dict[str, Any]:
    """One split's file from converted spikes (by recording key) and its (key, label, speaker)
    samples in file order; returns its manifest entry: sample and spike counts, SHA-256."""
    from osttp.tasks.data import file_sha256

    write_spike_file(path, [spikes[k][0] for k, _, _ in samples], [spikes[k][1] for k, _, _ in samples],
                     [label for _, label, _ in samples], [speaker for _, _, speaker in samples], keys,
                     [k for k, _, _ in samples])
    return {"samples": len(samples), "spikes": int(sum(spikes[k][0].size for k, _, _ in samples)),
            "sha256": file_sha256(path)}


def write_manifest(out_dir: Path, manifest: Mapping[str, Any]) -> None:
    """out_dir/manifest.json, written under a temporary name and renamed."""
    tmp = out_dir / f".manifest.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out_dir / "manifest.json")
