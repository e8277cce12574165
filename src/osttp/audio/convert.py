"""Many recordings through the cochlea, in shards over worker processes, resumable (docs/audio.md §5).

The recordings are sorted by padded length (so a worker reuses one basilar-membrane matrix for
many of them) and cut into shards; each finished shard is an .npz (numbers only, no pickle) under
<work>/shards/, named by a digest of its recordings, seed and model constants, so a rerun skips
the finished ones and a changed setting never reuses stale spikes. Each recording's random
fibres are seeded from (seed, its key), so the spikes do not depend on jobs, order or resumption.
"""
from __future__ import annotations

import hashlib
import math
import multiprocessing as mp
import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from osttp.audio.basilar import BasilarMembrane, padded_length, save_atomic
from osttp.audio.cochlea import Cochlea, CochleaParams

SHARD_SIZE = 20
FORMAT = 1  # bump when the spikes a shard holds would change for the same inputs


@dataclass(frozen=True)
class Source:
    """One recording to convert: its key (unique), file, and the rate it is stored at."""

    key: str
    path: Path
    frames: int
    rate: int

    @property
    def tag(self) -> str:
        return self.key

    def read(self) -> tuple[np.ndarray, int]:
        from osttp.audio.signal import read_audio

        return read_audio(self.path)


class Recording(Protocol):
    """What the converter needs of a sound: a unique key, its length and rate, its samples
    (read in the worker), and a tag that changes whenever the samples would (names shards)."""

    key: str
    frames: int
    rate: int

    @property
    def tag(self) -> str: ...

    def read(self) -> tuple[np.ndarray, int]: ...


def recording_seed(seed: int, key: str) -> int:
    from osttp.tasks.base import derive_seed

    return derive_seed(seed, "cochlea", key) % (2 ** 32)


def _model_length(src: Recording, rate: int) -> int:
    return math.ceil(src.frames * rate / src.rate)


def plan_shards(sources: Sequence[Recording], params: CochleaParams, seed: int) -> list[tuple[str, list[Recording]]]:
    """(file name, recordings) of every shard, in the order they are converted."""
    order = sorted(sources, key=lambda s: (padded_length(max(_model_length(s, params.rate), 2)), s.key))
    tag = repr((FORMAT, seed, params))
    shards = []
    for i in range(0, len(order), SHARD_SIZE):
        part = order[i:i + SHARD_SIZE]
        digest = hashlib.sha256("\n".join([tag, *(s.tag for s in part)]).encode()).hexdigest()[:16]
        shards.append((f"shard-{i // SHARD_SIZE:04d}-{digest}.npz", part))
    return shards


# ---- worker side: one Cochlea per process, built by _init ------------------------------------

_worker: dict[str, object] = {}


def _init(params: CochleaParams, cache_dir: str, seed: int) -> None:
    _worker["cochlea"] = Cochlea(params, cache_dir=cache_dir)
    _worker["seed"] = seed


def _convert_shard(job: tuple[str, list[Recording], str]) -> tuple[int, int]:
    """Convert one shard and write it; returns (recordings done, this process's peak RSS in KiB)."""
    name, part, shard_dir = job
    cochlea = _worker["cochlea"]
    assert isinstance(cochlea, Cochlea)
    times, units, lengths = [], [], []
    for src in part:
        samples, rate = src.read()
        t, u = cochlea.spikes(samples, rate, recording_seed(int(_worker["seed"]), src.key))  # type: ignore[arg-type]
        times.append(t)
        units.append(u.astype(np.int16))
        lengths.append(t.size)
    path = Path(shard_dir) / name
    tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, keys=np.array([s.key for s in part]), lengths=np.array(lengths, dtype=np.int64),
                 times=np.concatenate(times), units=np.concatenate(units))
    os.replace(tmp, path)
    return len(part), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _base_block(job: tuple[CochleaParams, int, int]) -> np.ndarray:
    params, lo, hi = job
    return BasilarMembrane(params.channels, params.rate, params.membrane).compute(
        BasilarMembrane(params.channels, params.rate, params.membrane).base, slice(lo, hi))


def ensure_base_matrix(params: CochleaParams, cache_dir: Path, pool: mp.pool.Pool | None, jobs: int) -> None:
    """Compute the basilar membrane's base matrix once (channel blocks over the pool) into cache_dir."""
    bm = BasilarMembrane(params.channels, params.rate, params.membrane, cache_dir=cache_dir)
    path = cache_dir / f"{bm.cache_name}.npy"
    if path.is_file():
        return
    if pool is None or jobs <= 1:
        bm.base_matrix()
        return
    edges = np.linspace(0, params.channels, jobs + 1).astype(int)
    blocks = pool.map(_base_block, [(params, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])])
    save_atomic(path, np.concatenate(blocks, axis=1))


def _read_shard(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        keys, lengths, times, units = z["keys"], z["lengths"], z["times"], z["units"]
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return {str(k): (times[a:b], units[a:b].astype(np.int64)) for k, a, b in zip(keys, starts, ends)}


def convert(sources: Sequence[Recording], work_dir: str | os.PathLike[str], jobs: int = 1, seed: int = 0,
            params: CochleaParams | None = None,
            progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Spikes (times, units) of every source by key, and the workers' peak RSS (KiB).

    Finished shards under work_dir/shards are reused; progress(done, total) is called as shards finish."""
    params = params or CochleaParams()
    work = Path(work_dir)
    shard_dir, cache_dir = work / "shards", work / "cache"
    shard_dir.mkdir(parents=True, exist_ok=True)
    shards = plan_shards(sources, params, seed)
    todo = [(name, part, str(shard_dir)) for name, part in shards if not (shard_dir / name).is_file()]
    done, total, peak = len(sources) - sum(len(p) for _, p, _ in todo), len(sources), 0
    if progress:
        progress(done, total)
    if todo:
        ctx = mp.get_context("spawn")  # workers import only numpy/scipy/numba, not the parent's torch
        with ctx.Pool(max(1, jobs), initializer=_init, initargs=(params, str(cache_dir), seed)) as pool:
            ensure_base_matrix(params, cache_dir, pool, jobs)
            for n, rss in pool.imap_unordered(_convert_shard, todo):
                done, peak = done + n, max(peak, rss)
                if progress:
                    progress(done, total)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, _ in shards:
        out.update(_read_shard(shard_dir / name))
    return out, peak
