"""Dataset tasks: counts, shapes, splits, encodings, and what happens with bad or missing files."""
from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import osttp.tasks as tasks
from osttp.errors import DataError, OsttpError
from osttp.tasks import data
from osttp.tasks.mnist import delta_encode

DATA = os.environ.get("OSTTP_DATA", "")
HAVE_DATA = bool(DATA) and all((Path(DATA) / f).is_file() for f in data.FILES)
needs_data = pytest.mark.skipif(
    not HAVE_DATA, reason="dataset files not found: set OSTTP_DATA to a folder holding them (see docs/data.md)"
)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
SRC = Path(tasks.__file__).parent


# ------------------------------------------------------------------ real data: counts and shapes


@needs_data
def test_mnist_counts_and_labels() -> None:
    for part, counts in (("train", TRAIN_COUNTS), ("test", TEST_COUNTS)):
        images, labels = data.load_mnist(part)
        assert images.shape == (sum(counts), 28, 28) and images.dtype == np.uint8
        assert np.bincount(labels, minlength=10).tolist() == counts
    tr, va, te = (tasks.load("smnist-rows", s) for s in ("train", "valid", "test"))
    assert len(tr) + len(va) == 60000 and len(va) == 5000 and len(te) == 10000
    # the validation split is the last 5000 training images, in file order
    images, labels = data.load_mnist("train")
    assert torch.equal(va.labels, torch.from_numpy(labels[55000:].astype(np.int64)))
    assert abs(te.chance - 1135 / 10000) < 1e-12


@needs_data
def test_smnist_rows_and_pixels_shapes() -> None:
    images, labels = data.load_mnist("test")
    rows = tasks.load("smnist-rows", "test", limit=10)
    b = next(rows.batches(4))
    assert b.xs.shape == (28, 4, 28) and b.ys.shape == (28, 4) and b.mask.shape == (28, 4)
    assert b.ys.dtype == torch.int64 and b.xs.dtype == torch.float32
    assert torch.allclose(b.xs[:, 2, :], torch.from_numpy(images[2].astype(np.float32)) / 255.0)
    assert (b.ys == torch.from_numpy(labels[:4].astype(np.int64))).all()
    # default label timing: loss from T // 2 on, last step supervised
    assert b.mask[:, 0].tolist() == [0.0] * 14 + [1.0] * 14 and rows.params["label"] == "from:14"
    pix = tasks.load("smnist-pixels", "test", limit=10)
    bp = next(pix.batches(3, dtype=torch.float64))
    assert bp.xs.shape == (784, 3, 1) and bp.xs.dtype == torch.float64 and pix.n_in == 1
    assert torch.allclose(bp.xs[:, 1, 0], torch.from_numpy(images[1].reshape(-1).astype(np.float64)) / 255.0)
    assert bp.mask[:, 0].sum() == 392
    assert [len(list(pix.batches(4))[-1].ys[0])] == [2]  # 10 = 4 + 4 + 2: the last batch is partial


@needs_data
def test_psmnist_is_a_permutation_of_pixels() -> None:
    pix = next(tasks.load("smnist-pixels", "valid", limit=5).batches(5)).xs
    p0 = tasks.load("psmnist", "valid", limit=5)
    perm = p0.permutation
    assert perm is not None and sorted(perm.tolist()) == list(range(784))
    assert not torch.equal(perm, torch.arange(784))
    xs = next(p0.batches(5)).xs
    assert torch.equal(xs[:, :, 0], pix[perm, :, 0])
    assert torch.equal(tasks.load("psmnist", "test", limit=1).permutation, perm)  # same seed, every split
    p1 = tasks.load("psmnist", "valid", limit=5, seed=1)
    assert p1.params["seed"] == 1 and not torch.equal(p1.permutation, perm)


@needs_data
def test_label_timing_options() -> None:
    for spec, first in (("last", 27), ("every", 0), ("from:5", 5), (5, 5), (None, 14)):
        t = tasks.load("smnist-rows", "valid", limit=2, label=spec)
        m = next(t.batches(2)).mask[:, 0]
        assert m.tolist() == [0.0] * first + [1.0] * (28 - first), spec
    for bad in ("first", "from:x", 28, -1, True, 2.5, "from:99"):
        with pytest.raises(OsttpError, match="label"):
            tasks.load("smnist-rows", "valid", limit=2, label=bad)


@needs_data
def test_spike_encodings() -> None:
    base = next(tasks.load("smnist-rows", "test", limit=64).batches(64)).xs
    rate = tasks.load("smnist-rows", "test", limit=64, encoding="rate")
    r1, r2 = next(rate.batches(64, seed=3)).xs, next(rate.batches(64, seed=3)).xs
    assert torch.equal(r1, r2) and set(r1.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(r1, next(rate.batches(64, seed=4)).xs)  # fresh spikes each pass seed
    assert abs(float(r1.mean()) - float(base.mean())) < 0.01  # Bernoulli with p = pixel
    assert r1[base == 0].sum() == 0 and r1[base == 1].min() == 1
    delta = tasks.load("smnist-rows", "test", limit=4, encoding="delta", threshold=0.5)
    d = next(delta.batches(4)).xs
    assert delta.n_in == 56 and d.shape == (28, 4, 56)
    assert torch.equal(d, delta_encode(base[:, :4], 0.5))


def test_delta_encode_by_hand() -> None:
    x = torch.tensor([0.0, 0.6, 0.7, 1.0, 0.2, 0.0]).view(6, 1, 1)
    d = delta_encode(x, 0.5)  # levels floor(x / 0.5): 0 1 1 2 0 0
    assert d[:, 0, 0].tolist() == [0, 1, 0, 1, 0, 0]  # up
    assert d[:, 0, 1].tolist() == [0, 0, 0, 0, 1, 0]  # down


@needs_data
def test_jsb_counts_shapes_and_targets() -> None:
    raw = data.load_jsb()
    assert {k: len(v) for k, v in raw.items()} == {"train": 229, "valid": 76, "test": 77}
    notes = [n for v in raw.values() for c in v for s in c for n in s]
    assert min(notes) >= 21 and max(notes) <= 108
    task = tasks.load("jsb", "test")
    assert (len(task), task.n_in, task.n_out, task.target_kind, task.loss) == (77, 88, 88, "multilabel", "bce")
    assert task.metric_name == "nll" and not task.higher_is_better
    lengths = [len(c) for c in raw["test"]]
    assert task.n_steps == sum(L - 1 for L in lengths)
    b = next(task.batches(3))
    T = max(lengths[:3]) - 1
    assert b.xs.shape == (T, 3, 88) and b.ys.shape == (T, 3, 88) and b.ys.dtype == torch.float32
    for j in range(3):
        L = lengths[j]
        assert b.mask[:, j].tolist() == [1.0] * (L - 1) + [0.0] * (T - L + 1)
        assert torch.equal(b.xs[1 : L - 1, j], b.ys[: L - 2, j])  # target at t is the input at t+1
        assert b.xs[L - 1 :, j].sum() == 0 and b.ys[L - 1 :, j].sum() == 0  # padding is zero
        first = raw["test"][j][0]
        assert sorted((torch.nonzero(b.xs[0, j]).flatten() + 21).tolist()) == sorted(set(first))
    # batch size 1 in file order
    singles = list(task.batches(1))
    assert len(singles) == 77 and [s.xs.shape[0] for s in singles] == [L - 1 for L in lengths]


@needs_data
def test_mnist_cached_load_is_fast() -> None:
    import time

    data.load_mnist("train")
    t0 = time.perf_counter()
    tasks.load("smnist-rows", "train")
    assert time.perf_counter() - t0 < 2.0


@needs_data
def test_cli_check_and_path(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    from osttp.experiment.data_cmd import data_check, data_path

    assert data_check() == 0
    out = capsys.readouterr().out
    assert all(f"ok       {f}" in out for f in data.FILES)
    from osttp.experiment.cli import main

    assert main(["data", "check"]) == 0 and main(["data", "path"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("OSTTP_DATA", str(tmp_path))
    assert data_check() == 2
    out = capsys.readouterr().out
    assert "MISSING  jsb/jsb-chorales-quarter.json" in out
    assert data_path() == 0
    assert str(tmp_path) in capsys.readouterr().out


# ------------------------------------------------------------------ search path and bad files


def test_data_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSTTP_DATA", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert data.data_dirs() == [tmp_path / "a", tmp_path / "b"]
    monkeypatch.delenv("OSTTP_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.data_dirs() == [tmp_path / ".cache" / "osttp" / "data"]


def _one_line(e: pytest.ExceptionInfo[DataError], relpath: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and relpath in msg and "docs/data.md" in msg
    return msg


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError) as e:
        tasks.load("jsb", "train", root=tmp_path)
    msg = _one_line(e, "jsb/jsb-chorales-quarter.json")
    assert "not found" in msg and str(tmp_path) in msg
    monkeypatch.setenv("OSTTP_DATA", str(tmp_path))  # the env var route too
    with pytest.raises(DataError) as e:
        tasks.load("smnist-rows", "test")
    assert "not found" in _one_line(e, "mnist/t10k-images-idx3-ubyte.gz")
    assert isinstance(e.value, ValueError)


def _mnist_test_copy(root: Path, labels_gz: bytes) -> None:
    """The real test images (linked) plus the given bytes as the test labels file."""
    (root / "mnist").mkdir(parents=True)
    img = "mnist/t10k-images-idx3-ubyte.gz"
    os.symlink(Path(DATA) / img, root / img)
    (root / "mnist/t10k-labels-idx1-ubyte.gz").write_bytes(labels_gz)


LABELS = "mnist/t10k-labels-idx1-ubyte.gz"


@needs_data
def test_mnist_wrong_checksum(tmp_path: Path) -> None:
    raw = bytearray(gzip.decompress((Path(DATA) / LABELS).read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # a valid label, but not the official file
    _mnist_test_copy(tmp_path, gzip.compress(bytes(raw)))
    with pytest.raises(DataError) as e:
        tasks.load("smnist-rows", "test", root=tmp_path)
    assert "SHA-256" in _one_line(e, LABELS)


@needs_data
def test_mnist_truncated_and_not_gzip(tmp_path: Path) -> None:
    good = (Path(DATA) / LABELS).read_bytes()
    _mnist_test_copy(tmp_path / "cut", good[: len(good) // 2])
    with pytest.raises(DataError) as e:
        data.load_mnist("test", root=tmp_path / "cut")
    assert "truncated or corrupt gzip" in _one_line(e, LABELS)
    _mnist_test_copy(tmp_path / "junk", b"this is not gzip at all")
    with pytest.raises(DataError) as e:
        data.load_mnist("test", root=tmp_path / "junk")
    assert "gzip" in _one_line(e, LABELS)


@needs_data
def test_mnist_bad_idx_header(tmp_path: Path) -> None:
    raw = bytearray(gzip.decompress((Path(DATA) / LABELS).read_bytes()))
    bad_magic = bytes([0, 0, 8, 3]) + bytes(raw[4:])
    _mnist_test_copy(tmp_path / "magic", gzip.compress(bad_magic))
    with pytest.raises(DataError) as e:
        data.load_mnist("test", root=tmp_path / "magic")
    assert "magic" in _one_line(e, LABELS)
    _mnist_test_copy(tmp_path / "short", gzip.compress(bytes(raw[:-10])))
    with pytest.raises(DataError) as e:
        data.load_mnist("test", root=tmp_path / "short")
    assert "payload" in _one_line(e, LABELS)


JSB = "jsb/jsb-chorales-quarter.json"


def _write_jsb(root: Path, obj: object) -> None:
    (root / "jsb").mkdir(parents=True)
    (root / JSB).write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def _small_jsb(note: int) -> dict[str, list[list[list[int]]]]:
    return {"train": [[[60, 64], [note], []]], "valid": [[[60], [62]]], "test": [[[60], [62]]]}


@pytest.mark.parametrize("note", [20, 109])
def test_jsb_note_out_of_range(tmp_path: Path, note: int) -> None:
    _write_jsb(tmp_path, _small_jsb(note))
    with pytest.raises(DataError) as e:
        tasks.load("jsb", "valid", root=tmp_path)
    msg = _one_line(e, JSB)
    assert f"note {note} outside MIDI 21..108" in msg and "train chorale 0 step 1" in msg


def test_jsb_bad_structure_and_json(tmp_path: Path) -> None:
    cases = {
        "keys": {"train": [], "test": []},
        "step": {"train": [[[60], 61]], "valid": [[[60], [62]]], "test": [[[60], [62]]]},
        "float": {"train": [[[60.5], [61]]], "valid": [[[60], [62]]], "test": [[[60], [62]]]},
        "json": "{not json",
    }
    for name, obj in cases.items():
        _write_jsb(tmp_path / name, obj)
        with pytest.raises(DataError) as e:
            data.load_jsb(root=tmp_path / name)
        _one_line(e, JSB)


def test_jsb_wrong_checksum(tmp_path: Path) -> None:
    _write_jsb(tmp_path, _small_jsb(60))  # well-formed, but not the official file
    with pytest.raises(DataError) as e:
        data.load_jsb(root=tmp_path)
    assert "SHA-256" in _one_line(e, JSB)


def test_no_pickle_in_task_sources() -> None:
    for f in SRC.glob("*.py"):
        text = f.read_text()
        assert "pickle" not in text, f
        assert not re.search(r"\b(np|numpy|torch)\.load\(", text), f


def test_bad_names_and_splits() -> None:
    with pytest.raises(OsttpError, match="unknown task 'mnist'"):
        tasks.load("mnist", "train")
    with pytest.raises(OsttpError, match="unknown split 'validation'"):
        tasks.load("delayed-xor", "validation")
    assert tasks.available()[:4] == ["smnist-rows", "smnist-pixels", "psmnist", "jsb"]
    assert len(set(tasks.available())) == 11  # 8 + spoken-digits, spoken-digits-official, spoken-digits-20
