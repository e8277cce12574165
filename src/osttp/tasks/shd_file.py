"""Reading a Spiking Heidelberg Digits (SHD) HDF5 file (Cramer et al. 2020) into checked arrays.

Layout of shd_train.h5 / shd_test.h5: spikes/times (variable-length float arrays, seconds),
spikes/units (variable-length integer arrays, cochlea channel 0..699, one per spike), labels
(integers 0..n_classes-1: 20 for SHD, 10 for the FSDD spoken digits; the task names its count);
optionally extra/speaker (integer per sample) and extra/keys (class names, one per class).
The file is opened with h5py and only numeric arrays and strings are read: HDF5 holds no code.
Every structural problem becomes a one-line DataError naming the file and what is wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from osttp.errors import DataError, OsttpError
from osttp.tasks import data

N_CHANNELS = 700
N_CLASSES = 20
SHD_PARTS: dict[str, str] = {"train": "shd/shd_train.h5", "test": "shd/shd_test.h5"}
LAYOUT = "spikes/times, spikes/units, labels"


@dataclass(frozen=True)
class SHDFile:
    """All spikes of one file, flat: sample i owns events offsets[i]:offsets[i+1].

    times float64 (seconds, >= 0), units int64 (0..699), labels int64 (0..n_classes-1), speakers int64 or
    None when the file has no extra/speaker, keys the class names of extra/keys or None."""

    times: np.ndarray
    units: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    speakers: np.ndarray | None
    keys: tuple[str, ...] | None

    def __len__(self) -> int:
        return int(self.labels.size)


def _dataset(relpath: str, path: Path, f: Any, name: str, required: bool = True) -> Any:
    import h5py

    obj = f.get(name)
    if obj is None:
        if not required:
            return None
        raise data._fail(relpath, path, f"has no dataset {name!r} (expected the SHD layout: {LAYOUT})")
    if not isinstance(obj, h5py.Dataset):
        raise data._fail(relpath, path, f"{name!r} is a {type(obj).__name__}, expected a dataset")
    return obj


def _ragged(relpath: str, path: Path, ds: Any, kinds: str, what: str) -> list[np.ndarray]:
    """A variable-length dataset as a list of 1-D arrays whose dtype kind is one of kinds."""
    import h5py

    base = h5py.check_vlen_dtype(ds.dtype)
    if base is None or ds.ndim != 1 or np.dtype(base).kind not in kinds:
        raise data._fail(relpath, path, f"{ds.name!r} has dtype {ds.dtype} and shape {ds.shape}; "
                                        f"expected a 1-D variable-length array of {what}")
    return [np.asarray(a).reshape(-1) for a in ds[()]]


def _vector(relpath: str, path: Path, ds: Any, n: int) -> np.ndarray:
    """A 1-D integer dataset of n entries, as int64."""
    arr = ds[()]
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise data._fail(relpath, path, f"{ds.name!r} has dtype {ds.dtype} and shape {ds.shape}; "
                                        "expected a 1-D array of integers")
    if arr.size != n:
        raise data._fail(relpath, path, f"{ds.name!r} has {arr.size} entries but spikes/times has {n} samples")
    return arr.astype(np.int64)


def _keys(ds: Any, n_classes: int) -> tuple[str, ...] | None:
    if ds is None:
        return None
    names = [k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k) for k in np.asarray(ds[()]).reshape(-1)]
    return tuple(names) if len(names) == n_classes else None  # names are informative only


def parse_shd(relpath: str, path: Path, f: Any, n_classes: int = N_CLASSES) -> SHDFile:
    """Check an open h5py.File against the SHD layout with labels 0..n_classes-1 and return its
    spikes, flattened."""
    times = _ragged(relpath, path, _dataset(relpath, path, f, "spikes/times"), "f", "floats (seconds)")
    units = _ragged(relpath, path, _dataset(relpath, path, f, "spikes/units"), "iu", "integers (channels)")
    n = len(times)
    if len(units) != n:
        raise data._fail(relpath, path, f"spikes/units has {len(units)} samples but spikes/times has {n}")
    if n == 0:
        raise data._fail(relpath, path, "holds no samples")
    lengths = np.array([t.size for t in times], dtype=np.int64)
    bad = np.flatnonzero(lengths != np.array([u.size for u in units], dtype=np.int64))
    if bad.size:
        i = int(bad[0])
        raise data._fail(relpath, path, f"sample {i} has {times[i].size} spike times but {units[i].size} units")
    labels = _vector(relpath, path, _dataset(relpath, path, f, "labels"), n)
    spk = _dataset(relpath, path, f, "extra/speaker", required=False)
    speakers = None if spk is None else _vector(relpath, path, spk, n)
    keys = _keys(_dataset(relpath, path, f, "extra/keys", required=False), n_classes)

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    t = np.concatenate(times).astype(np.float64) if offsets[-1] else np.zeros(0)
    u = np.concatenate(units).astype(np.int64) if offsets[-1] else np.zeros(0, dtype=np.int64)
    _check_values(relpath, path, t, u, labels, offsets, n_classes)
    return SHDFile(t, u, offsets, labels, speakers, keys)


def _sample_of(offsets: np.ndarray, event: int) -> int:
    return int(np.searchsorted(offsets, event, side="right") - 1)


def _check_values(relpath: str, path: Path, t: np.ndarray, u: np.ndarray, labels: np.ndarray,
                  offsets: np.ndarray, n_classes: int) -> None:
    # One pass each; the first offender is named so a damaged file can be found and inspected.
    bad = np.flatnonzero(~np.isfinite(t) | (t < 0))
    if bad.size:
        e = int(bad[0])
        raise data._fail(relpath, path, f"sample {_sample_of(offsets, e)}: spike time {float(t[e])!r} s is negative "
                                        "or not finite; expected times >= 0 in seconds")
    bad = np.flatnonzero((u < 0) | (u >= N_CHANNELS))
    if bad.size:
        e = int(bad[0])
        raise data._fail(relpath, path, f"sample {_sample_of(offsets, e)}: unit {int(u[e])} outside "
                                        f"0..{N_CHANNELS - 1}")
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        i = int(bad[0])
        raise data._fail(relpath, path, f"sample {i}: label {int(labels[i])} outside 0..{n_classes - 1}")


def _open(relpath: str, path: Path, n_classes: int) -> SHDFile:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return parse_shd(relpath, path, f, n_classes)
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        # h5py reports a non-HDF5, truncated or corrupt file as OSError (sometimes KeyError/ValueError
        # from inside a damaged dataset); the message is collapsed to one line by _fail.
        raise data._fail(relpath, path, f"is not a readable HDF5 file ({type(e).__name__}: {e})") from None


def load_shd(part: str, root: str | os.PathLike[str] | None = None) -> SHDFile:
    """The SHD "train" or "test" file from the dataset search path (or root), checked and cached."""
    if part not in SHD_PARTS:
        raise OsttpError(f"SHD part {part!r}; expected 'train' or 'test'")
    return load_spike_file(SHD_PARTS[part], N_CLASSES, root)


def load_spike_file(relpath: str, n_classes: int, root: str | os.PathLike[str] | None = None) -> SHDFile:
    """A file in SHD's layout at relpath on the dataset search path (or under root), its labels
    checked against 0..n_classes-1, cached per (file, class count).

    Treat the arrays as read-only: they are shared by every task built from the same file."""

    def load(path: Path) -> SHDFile:
        shd = _open(relpath, path, n_classes)
        data._check_digest(relpath, path, _digest_bytes(relpath, path))
        return shd

    return data._cached(relpath, root, load, variant=str(n_classes))


def _digest_bytes(relpath: str, path: Path) -> bytes:
    # Only read the whole file when a checksum is recorded for it (none is for the spike files today).
    return data._read(relpath, path) if data._file(relpath).sha256 else b""
