"""SHD task on small generated HDF5 files in the dataset's layout: binning, labels, splits, bad files."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import pytest
import torch

import osttp.tasks as tasks
from osttp.errors import DataError, OsttpError
from osttp.tasks import data
from osttp.tasks.shd import bin_spikes, split_indices

TRAIN, TEST = "shd/shd_train.h5", "shd/shd_test.h5"


def write_shd(path: Path, times: Sequence[Sequence[float]], units: Sequence[Sequence[int]], labels: Sequence[int],
              *, time_dtype: Any = np.float32, unit_dtype: Any = np.uint16, label_dtype: Any = np.uint16,
              speakers: Sequence[int] | None = None, skip: str = "") -> None:
    """An HDF5 file laid out like shd_*.h5 (vlen spikes/times and spikes/units, labels, extra/*)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, rows, dt in (("spikes/times", times, time_dtype), ("spikes/units", units, unit_dtype)):
            if name == skip:
                continue
            ds = f.create_dataset(name, (len(rows),), dtype=h5py.vlen_dtype(np.dtype(dt)))
            for i, r in enumerate(rows):
                ds[i] = np.asarray(r, dtype=dt)
        if skip != "labels":
            f.create_dataset("labels", data=np.asarray(labels, dtype=label_dtype))
        f.create_dataset("extra/speaker", data=np.asarray(speakers if speakers is not None else [0] * len(labels)))
        f.create_dataset("extra/keys", data=np.array([f"digit-{k}".encode() for k in range(20)]))


def random_shd(path: Path, n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    times = [np.sort(rng.uniform(0.0, 1.6, size=int(rng.integers(0, 40)))) for _ in range(n)]
    units = [rng.integers(0, 700, size=t.size) for t in times]
    labels = np.arange(n) % 20
    write_shd(path, times, units, labels, speakers=list(np.arange(n) % 3))
    return times, units, labels


@pytest.fixture()
def shd_root(tmp_path: Path) -> Path:
    data.clear_cache()
    random_shd(tmp_path / TRAIN, 50, 0)
    random_shd(tmp_path / TEST, 12, 1)
    return tmp_path


def test_binning_by_hand(tmp_path: Path) -> None:
    # T = 4 over 1 s: bins of 0.25 s. A spike on an edge belongs to the later bin; t >= max_time is dropped.
    times = [[0.0, 0.1, 0.25, 0.26, 0.99, 1.0, 1.5], [0.5]]
    units = [[0, 0, 5, 5, 699, 3, 3], [7]]
    write_shd(tmp_path / TRAIN, times, units, [3, 4])
    write_shd(tmp_path / TEST, times, units, [3, 4])
    task = tasks.load("shd", "test", root=tmp_path, T=4, max_time=1.0)
    b = next(task.batches(2))
    assert b.xs.shape == (4, 2, 700) and b.xs.dtype == torch.float32 and task.n_in == 700 and task.n_out == 20
    expected = torch.zeros(4, 700)
    expected[0, 0], expected[1, 5], expected[3, 699] = 2, 2, 1
    assert torch.equal(b.xs[:, 0], expected)
    assert b.xs[:, 1].sum() == 1 and b.xs[2, 1, 7] == 1  # 0.5 s is the start of bin 2
    binary = next(tasks.load("shd", "test", root=tmp_path, T=4, max_time=1.0, encoding="binary").batches(2))
    assert torch.equal(binary.xs[:, 0], expected.clamp(max=1))
    logged = next(tasks.load("shd", "test", root=tmp_path, T=4, max_time=1.0, encoding="log").batches(2))
    assert torch.allclose(logged.xs[:, 0], torch.log1p(expected)) and logged.xs[0, 0, 0] == torch.log1p(torch.tensor(2.0))
    # float64 batches, and the function itself
    assert next(task.batches(1, dtype=torch.float64)).xs.dtype == torch.float64
    cells = bin_spikes(np.array([0.0, 0.25, 0.999, 1.0]), np.array([1, 2, 3, 4]), 4, 1.0)
    assert cells.tolist() == [1, 700 + 2, 3 * 700 + 3, -1]


def test_float16_times_as_in_the_published_files(tmp_path: Path) -> None:
    write_shd(tmp_path / TEST, [[0.1, 0.7]], [[2, 3]], [5], time_dtype=np.float16)
    b = next(tasks.load("shd", "test", root=tmp_path, T=10, max_time=1.0).batches(1))
    # the file's values are binned as stored: float16 0.1 is 0.09998 (bin 0), 0.7 is 0.70020 (bin 7)
    assert b.xs[0, 0, 2] == 1 and b.xs[7, 0, 3] == 1 and b.xs.sum() == 2


def test_labels_mask_and_defaults(shd_root: Path) -> None:
    task = tasks.load("shd", "test", root=shd_root)
    assert task.params == {"label": "from:50", "T": 100, "max_time": 1.4, "encoding": "count",
                           "channels": 700, "shift": 0, "valid_fraction": 0.1, "seed": 0, "limit": None}
    assert len(task) == 12 and task.labels.tolist() == [i % 20 for i in range(12)]
    assert task.keys is not None and task.keys[3] == "digit-3"
    assert task.speakers is not None and task.speakers.tolist() == [i % 3 for i in range(12)]
    b = next(task.batches(5))
    assert b.ys.shape == (100, 5) and b.ys.dtype == torch.int64 and (b.ys == torch.arange(5)).all()
    assert b.mask[:, 0].tolist() == [0.0] * 50 + [1.0] * 50
    last = tasks.load("shd", "test", root=shd_root, label="last")
    assert next(last.batches(2)).mask[:, 1].tolist() == [0.0] * 99 + [1.0]
    assert task.metric_name == "accuracy" and task.higher_is_better and abs(task.chance - 1 / 12) < 1e-12
    # task.params round-trips to the same split
    again = tasks.load("shd", "test", root=shd_root, **task.params)
    assert torch.equal(next(again.batches(12)).xs, next(task.batches(12)).xs)


def test_counts_match_the_file(shd_root: Path) -> None:
    times, units, _ = random_shd(shd_root / "copy" / TEST, 12, 1)  # the same content as the test file
    task = tasks.load("shd", "test", root=shd_root, T=7, max_time=1.4)
    xs = next(task.batches(12)).xs
    for i in range(12):
        keep = times[i] < 1.4
        dense = np.zeros((7, 700))
        np.add.at(dense, (np.floor(times[i][keep] * 5.0).astype(int), units[i][keep]), 1)  # T / max_time = 5
        assert np.array_equal(xs[:, i].numpy(), dense), i


def test_splits_disjoint_deterministic(shd_root: Path) -> None:
    tr = tasks.load("shd", "train", root=shd_root)
    va = tasks.load("shd", "valid", root=shd_root)
    a, b = set(tr.sample_ids.tolist()), set(va.sample_ids.tolist())
    assert len(va) == 5 and len(tr) == 45 and not a & b and a | b == set(range(50))
    assert va.sample_ids.tolist() == sorted(b)  # file order within a split
    data.clear_cache()
    assert tasks.load("shd", "valid", root=shd_root).sample_ids.tolist() == va.sample_ids.tolist()
    # the split does not depend on T or the encoding, only on the seed and the fraction
    assert tasks.load("shd", "valid", root=shd_root, T=10, encoding="binary").sample_ids.tolist() == sorted(b)
    other = tasks.load("shd", "valid", root=shd_root, seed=1).sample_ids.tolist()
    assert other != sorted(b) and len(other) == 5
    assert len(tasks.load("shd", "valid", root=shd_root, valid_fraction=0.2)) == 10
    assert split_indices(3, "valid", 0.01, 0).size == 1  # at least one valid sample
    # labels follow the chosen samples
    assert va.labels.tolist() == [i % 20 for i in sorted(b)]
    assert len(tasks.load("shd", "train", root=shd_root, limit=4)) == 4


@pytest.mark.parametrize("params, match", [
    ({"T": 0}, "T = 0"), ({"max_time": -1.0}, "max_time"), ({"encoding": "rate"}, "encoding"),
    ({"valid_fraction": 0.0}, "valid_fraction"), ({"valid_fraction": 0.9}, "valid_fraction"),
    ({"label": "first"}, "label"), ({"label": 100}, "label"), ({"bins": 3}, "unknown parameter"),
])
def test_bad_parameters(shd_root: Path, params: dict[str, Any], match: str) -> None:
    with pytest.raises(OsttpError, match=match):
        tasks.load("shd", "valid", root=shd_root, **params)


def _one_line(e: pytest.ExceptionInfo[DataError], relpath: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and relpath in msg and "docs/data.md" in msg and "zenkelab" in msg, msg
    return msg


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError) as e:
        tasks.load("shd", "train", root=tmp_path)
    msg = _one_line(e, TRAIN)
    assert "not found" in msg and str(tmp_path) in msg
    monkeypatch.setenv("OSTTP_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as e:
        tasks.load("shd", "test")
    msg = _one_line(e, TEST)
    assert str(tmp_path / "nowhere") in msg and "OSTTP_DATA" in msg


GOOD = ([[0.1, 0.2], [0.3]], [[1, 2], [3]], [0, 1])


@pytest.mark.parametrize("case, match", [
    ("no-labels", "no dataset 'labels'"),
    ("no-units", "no dataset 'spikes/units'"),
    ("int-times", "variable-length array of floats"),
    ("float-units", "variable-length array of integers"),
    ("float-labels", "1-D array of integers"),
    ("fixed-times", "variable-length"),
    ("unit-700", "unit 700 outside 0..699"),
    ("unit-negative", "unit -1 outside 0..699"),
    ("time-negative", "spike time -0.5 s is negative"),
    ("time-nan", "not finite"),
    ("label-20", "label 20 outside 0..19"),
    ("length-mismatch", "sample 1 has 1 spike times but 2 units"),
    ("label-count", "'/labels' has 3 entries"),
    ("truncated", "not a readable HDF5 file"),
    ("not-hdf5", "not a readable HDF5 file"),
])
def test_bad_files(tmp_path: Path, case: str, match: str) -> None:
    data.clear_cache()
    p = tmp_path / TRAIN
    times, units, labels = GOOD
    kw: dict[str, Any] = {}
    if case == "no-labels":
        kw["skip"] = "labels"
    elif case == "no-units":
        kw["skip"] = "spikes/units"
    elif case == "int-times":
        kw["time_dtype"] = np.int32
    elif case == "float-units":
        kw["unit_dtype"] = np.float32
    elif case == "float-labels":
        kw["label_dtype"] = np.float32
    elif case == "unit-700":
        units = [[1, 700], [3]]
    elif case == "unit-negative":
        units, kw["unit_dtype"] = [[1, 2], [-1]], np.int16
    elif case == "time-negative":
        times = [[0.1, 0.2], [-0.5]]
    elif case == "time-nan":
        times = [[0.1, float("nan")], [0.3]]
    elif case == "label-20":
        labels = [0, 20]
    elif case == "length-mismatch":
        units = [[1, 2], [3, 4]]
    elif case == "label-count":
        labels = [0, 1, 2]
    if case == "fixed-times":
        p.parent.mkdir(parents=True)
        with h5py.File(p, "w") as f:
            f.create_dataset("spikes/times", data=np.zeros((2, 3), dtype=np.float32))
            f.create_dataset("spikes/units", data=np.zeros((2, 3), dtype=np.int16))
            f.create_dataset("labels", data=np.array([0, 1]))
    elif case == "not-hdf5":
        p.parent.mkdir(parents=True)
        p.write_text("spikes,units,labels\n")
    else:
        write_shd(p, times, units, labels, **kw)
    if case == "truncated":
        raw = p.read_bytes()
        p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError) as e:
        tasks.load("shd", "valid", root=tmp_path)
    assert match in _one_line(e, TRAIN)


def test_training_runs_on_shd(shd_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """The task works through the CLI end to end (a few steps; no learning claim)."""
    import json

    from osttp.experiment.cli import main

    monkeypatch.setenv("OSTTP_DATA", str(shd_root))
    out = tmp_path / "run"
    rc = main(["train", "--task", "shd", "--rule", "osttp", "--hidden", "8", "--epochs", "1", "--batch-size", "16",
               "--task-param", "T=12", "--out", str(out), "--quiet", "--device", "cpu", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "completed" and res["metric_name"] == "accuracy"
    assert 0.0 <= res["valid_metric"] <= 1.0 and 0.0 <= res["test_metric"] <= 1.0


def test_channel_shift_augments_train_only(tmp_path: Path) -> None:
    # SHD's train file feeds train and valid; 8 samples, spikes spread over the channels and steps.
    rng = np.random.default_rng(0)
    times = [sorted(rng.uniform(0, 1, 40).tolist()) for _ in range(8)]
    units = [rng.integers(0, 700, 40).tolist() for _ in range(8)]
    write_shd(tmp_path / TRAIN, times, units, list(range(8)))
    write_shd(tmp_path / TEST, times, units, list(range(8)))
    kw: dict[str, Any] = {"root": tmp_path, "T": 5, "max_time": 1.0, "channels": 70, "valid_fraction": 0.25}
    plain = tasks.load("shd", "train", **kw)
    shifted = tasks.load("shd", "train", shift=3, **kw)
    assert shifted.params["shift"] == 3
    a = next(plain.batches(6, seed=4)).xs
    b = next(shifted.batches(6, seed=4)).xs
    assert torch.equal(b, next(shifted.batches(6, seed=4)).xs)  # reproducible from (seed, batch)
    assert not torch.equal(a, b) and not torch.equal(b, next(shifted.batches(6, seed=5)).xs)
    for j in range(6):  # each sample is its unshifted input moved by one whole offset in [-3, 3], zero-filled
        moved = [m for m in range(-3, 4)
                 if torch.equal(b[:, j], torch.nn.functional.pad(a[:, j], (max(m, 0), max(-m, 0)))[:, max(-m, 0):][:, :70])]
        assert len(moved) >= 1, j
    for split in ("valid", "test"):  # evaluation splits are never shifted
        assert torch.equal(next(tasks.load("shd", split, shift=3, **kw).batches(8)).xs,
                           next(tasks.load("shd", split, **kw).batches(8)).xs)
    with pytest.raises(OsttpError, match="shift"):
        tasks.load("shd", "train", shift=70, **kw)
