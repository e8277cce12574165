"""The spoken-digit tasks on small generated files written by the converter's own writer (SHD's
layout): files per split, 10 classes from the task, binning, subsets, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import osttp.tasks as tasks
from osttp.audio.spikefile import write_spike_file
from osttp.errors import DataError, OsttpError
from osttp.tasks import data
from osttp.tasks.shd import spread_subset
from osttp.tasks.shd_file import load_spike_file

KEYS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def write_split(path: Path, n: int, seed: int, labels: list[int] | None = None) -> tuple[list, list, list[int]]:
    """n random recordings, sorted by class as the converter writes them (file order = name order)."""
    rng = np.random.default_rng(seed)
    times = [np.sort(rng.uniform(0.0, 1.2, size=int(rng.integers(1, 60)))) for _ in range(n)]
    units = [rng.integers(0, 700, size=t.size) for t in times]
    labels = sorted(i % 10 for i in range(n)) if labels is None else labels
    path.parent.mkdir(parents=True, exist_ok=True)
    write_spike_file(path, times, units, labels, [i % 3 for i in range(n)], KEYS, [f"{d}_x_{i}" for i, d in enumerate(labels)])
    return times, units, labels


@pytest.fixture()
def sd_root(tmp_path: Path) -> Path:
    data.clear_cache()
    for kind, sizes in (("speakers", (30, 10, 20)), ("official", (40, 10, 10))):
        for seed, (split, n) in enumerate(zip(("train", "valid", "test"), sizes)):
            write_split(tmp_path / "spoken-digits" / f"{kind}_{split}.h5", n, seed + 10 * len(kind))
    return tmp_path


def test_each_split_is_its_own_file_with_ten_classes(sd_root: Path) -> None:
    for name, sizes in (("spoken-digits", (30, 10, 20)), ("spoken-digits-official", (40, 10, 10))):
        for split, n in zip(("train", "valid", "test"), sizes):
            task = tasks.load(name, split, root=sd_root)
            assert len(task) == n and task.n_in == 700 and task.n_out == 10
            assert task.keys == KEYS and task.labels.tolist() == sorted(i % 10 for i in range(n))
            assert task.speakers is not None and task.speakers.tolist() == [i % 3 for i in range(n)]
    task = tasks.load("spoken-digits", "test", root=sd_root)
    assert task.params == {"label": "from:50", "T": 100, "max_time": 1.0, "encoding": "count", "channels": 700, "shift": 0,
                           "limit": None}
    b = next(task.batches(4))
    assert b.xs.shape == (100, 4, 700) and b.ys.shape == (100, 4) and b.mask[:, 0].sum() == 50
    assert abs(task.chance - 2 / 20) < 1e-12


def test_binning_of_the_written_file_is_the_spikes(sd_root: Path) -> None:
    times, units, _ = write_split(sd_root / "copy" / "spoken-digits" / "speakers_valid.h5", 10, 1 + 10 * len("speakers"))
    task = tasks.load("spoken-digits", "valid", root=sd_root, T=50, max_time=1.0)
    xs = next(task.batches(10)).xs
    for i in range(10):
        t = np.asarray(times[i], dtype=np.float32).astype(np.float64)  # the file stores float32 seconds
        keep = t < 1.0
        dense = np.zeros((50, 700))
        np.add.at(dense, (np.floor(t[keep] * 50.0).astype(int), units[i][keep]), 1)
        assert np.array_equal(xs[:, i].numpy(), dense), i
    assert xs.sum() < sum(t.size for t in times)  # spikes after max_time = 1 s are dropped


def test_pooled_channels_are_the_sums_of_adjacent_channels(sd_root: Path) -> None:
    full = next(tasks.load("spoken-digits", "valid", root=sd_root, T=50).batches(10)).xs
    for channels in (140, 70, 1):
        task = tasks.load("spoken-digits", "valid", root=sd_root, T=50, channels=channels)
        xs = next(task.batches(10)).xs
        assert task.n_in == channels and xs.shape == (50, 10, channels)
        assert torch.equal(xs, full.view(50, 10, channels, 700 // channels).sum(-1))
    with pytest.raises(OsttpError, match=r"channels=300 must divide 700"):
        tasks.load("spoken-digits", "valid", root=sd_root, channels=300)
    with pytest.raises(OsttpError, match="channels"):
        tasks.load("spoken-digits", "valid", root=sd_root, channels=0)


def test_limit_keeps_every_class_of_a_sorted_file(sd_root: Path) -> None:
    sub = tasks.load("spoken-digits", "train", root=sd_root, limit=10)
    assert len(sub) == 10 and sorted(sub.labels.tolist()) == list(range(10))
    assert sub.sample_ids.tolist() == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert spread_subset(np.arange(5), None).tolist() == [0, 1, 2, 3, 4]
    assert spread_subset(np.arange(5), 9).tolist() == [0, 1, 2, 3, 4]


def test_class_count_comes_from_the_task(sd_root: Path, tmp_path: Path) -> None:
    p = tmp_path / "other" / "spoken-digits" / "speakers_test.h5"
    write_split(p, 3, 0, labels=[0, 12, 3])  # an SHD-like 20-class label in a 10-class file
    with pytest.raises(DataError, match=r"sample 1: label 12 outside 0\.\.9"):
        tasks.load("spoken-digits", "test", root=tmp_path / "other")
    # the same file is a valid 20-class file: the count is the reader's argument, not the file's
    assert load_spike_file("spoken-digits/speakers_test.h5", 20, tmp_path / "other").labels.tolist() == [0, 12, 3]


def test_bad_parameters_and_missing_files(sd_root: Path, tmp_path: Path) -> None:
    with pytest.raises(OsttpError, match="unknown parameter.*valid_fraction"):
        tasks.load("spoken-digits", "valid", root=sd_root, valid_fraction=0.1)
    with pytest.raises(OsttpError, match="limit"):
        tasks.load("spoken-digits", "valid", root=sd_root, limit=0)
    with pytest.raises(DataError) as e:
        tasks.load("spoken-digits-official", "train", root=tmp_path / "empty")
    msg = str(e.value)
    assert "\n" not in msg and "spoken-digits/official_train.h5 not found" in msg
    assert "osttp data make spoken-digits" in msg and "free-spoken-digit-dataset" in msg
