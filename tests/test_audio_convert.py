"""Spike files in SHD's layout, the conversion of a handful of real FSDD recordings (splits,
determinism across job counts, resumption) and `osttp data make`'s errors."""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from osttp.audio.spikefile import write_spike_file
from osttp.experiment.cli import main
from osttp.tasks import data
from osttp.tasks.shd_file import load_spike_file

# one recording of every speaker: george is valid, theo and lucas test under the speaker split;
# index 3 is official test, 7 official valid, 12 and 20 official train
PICK = ("0_george_7", "1_jackson_12", "2_lucas_3", "3_nicolas_20", "4_theo_3", "5_yweweler_12")


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_spike_file_round_trip_is_shd_layout_and_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0, 1, 30)), np.zeros(0), np.array([0.5])]
    units = [rng.integers(0, 700, 30), np.zeros(0, dtype=int), np.array([699])]
    args = (times, units, [3, 0, 9], [1, 0, 5], [f"k{i}" for i in range(10)], ["a", "b", "c"])
    rel = "spoken-digits/speakers_test.h5"
    p, q = tmp_path / "a" / rel, tmp_path / "b" / rel
    p.parent.mkdir(parents=True), q.parent.mkdir(parents=True)
    write_spike_file(p, *args)
    write_spike_file(q, *args)
    assert _sha(p) == _sha(q) and os.listdir(p.parent) == [p.name]  # same bytes; no temporary left
    with h5py.File(p, "r") as f:
        assert h5py.check_vlen_dtype(f["spikes/times"].dtype) == np.float32
        assert h5py.check_vlen_dtype(f["spikes/units"].dtype) == np.uint16
        assert f["labels"].dtype == np.uint16 and f["extra/speaker"][()].tolist() == [1, 0, 5]
        assert [k.decode() for k in f["extra/keys"][()]] == [f"k{i}" for i in range(10)]
    data.clear_cache()
    back = load_spike_file(rel, 10, tmp_path / "a")
    assert back.labels.tolist() == [3, 0, 9] and back.offsets.tolist() == [0, 30, 30, 31]
    assert np.array_equal(back.times[:30], times[0].astype(np.float32)) and back.units[30] == 699
    with pytest.raises(ValueError, match="differ in length"):
        write_spike_file(p, times, units, [1], [0], [], ["a"])


def _fsdd() -> Path:
    for d in os.environ.get("OSTTP_DATA", "").split(os.pathsep):
        p = Path(d) / "fsdd" / "recordings"
        if d.strip() and all((p / f"{k}.wav").is_file() for k in PICK):
            return p
    pytest.skip("no fsdd/recordings under $OSTTP_DATA (a clone of the free-spoken-digit-dataset repository)")


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    src = tmp_path / "fsdd" / "recordings"
    src.mkdir(parents=True)
    for k in PICK:
        shutil.copy(_fsdd() / f"{k}.wav", src / f"{k}.wav")
    return tmp_path / "fsdd"


def test_a_handful_of_recordings_converts_deterministically_and_resumes(source: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from osttp.audio import convert
    from osttp.audio.cochlea import CochleaParams
    from osttp.audio.spoken_digits import make_spoken_digits

    small = CochleaParams(channels=24)  # the same model on fewer places: seconds, not minutes
    monkeypatch.setattr(convert, "SHARD_SIZE", 2)
    seen: list[tuple[int, int]] = []
    m1 = make_spoken_digits(source, tmp_path / "one" / "spoken-digits", jobs=1, params=small, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    m2 = make_spoken_digits(source, tmp_path / "two" / "spoken-digits", jobs=2, params=small)
    files = {n: f["sha256"] for n, f in m1["files"].items()}
    assert files == {n: f["sha256"] for n, f in m2["files"].items()}  # jobs do not change a byte
    counts = {n: f["samples"] for n, f in m1["files"].items()}
    assert counts == {"speakers_train.h5": 3, "speakers_valid.h5": 1, "speakers_test.h5": 2,
                      "official_train.h5": 3, "official_valid.h5": 1, "official_test.h5": 2}
    data.clear_cache()
    test = load_spike_file("spoken-digits/speakers_test.h5", 10, tmp_path / "one")
    assert test.labels.tolist() == [2, 4] and test.speakers.tolist() == [2, 4]  # lucas, theo
    assert test.units.max() < 24 and test.times.size > 100 and np.all(test.times < 1.0)
    # resume: one shard lost; only it is converted again, and the files are the same
    shards = sorted((tmp_path / "one" / "spoken-digits" / "work" / "shards").glob("shard-*.npz"))
    assert len(shards) == 3
    shards[1].unlink()
    seen.clear()
    m3 = make_spoken_digits(source, tmp_path / "one" / "spoken-digits", jobs=1, params=small, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (4, 6) and {n: f["sha256"] for n, f in m3["files"].items()} == files
    # a different seed gives different spikes (negative control of the comparison above)
    m4 = make_spoken_digits(source, tmp_path / "three" / "spoken-digits", jobs=1, seed=1, params=small)
    assert m4["files"]["speakers_test.h5"]["sha256"] != files["speakers_test.h5"]


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


def test_data_make_errors_are_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    bad = tmp_path / "bad" / "recordings"
    bad.mkdir(parents=True)
    (bad / "0_george_0.wav").write_bytes(b"RIFF not really a wave file")
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        (["data", "make"], "expected one of spoken-digits"),
        (["data", "make", "shd", "--source", str(tmp_path)], "dataset 'shd'"),
        (["data", "make", "spoken-digits"], "--source DIR is required"),
        (["data", "make", "spoken-digits", "--source", str(tmp_path / "nowhere")], "no such folder"),
        (["data", "make", "spoken-digits", "--source", str(tmp_path / "empty")], "no recordings named"),
        (["data", "make", "spoken-digits", "--source", str(tmp_path / "bad")], "0_george_0.wav: cannot be read"),
        (["data", "make", "spoken-digits", "--source", str(tmp_path / "bad"), "--jobs", "0"], "--jobs 0"),
        (["data", "make", "spoken-digits", "--source", str(tmp_path / "bad"), "--jobs", "two"], "invalid int"),
        (["data", "check", "--source", str(tmp_path)], "only apply to `osttp data make`"),
    ]
    for argv, match in cases:
        rc, err = _cli(capsys, argv + (["--out", str(out)] if argv[1] == "make" else []))
        assert rc == 2 and err.count("\n") == 1 and match in err and "Traceback" not in err, (argv, err)
        assert not out.exists(), argv
    rc, err = _cli(capsys, ["data", "make", "spoken-digits", "--source", str(tmp_path / "bad"),
                            "--out", str(tmp_path / "afile")])
    assert rc == 2 and "is a file" in err and (tmp_path / "afile").read_text() == "x"
    # without the audio extra: what to install, in one line
    monkeypatch.setitem(sys.modules, "soundfile", None)
    monkeypatch.delitem(sys.modules, "osttp.audio.spoken_digits", raising=False)
    rc, err = _cli(capsys, ["data", "make", "spoken-digits", "--source", str(tmp_path / "bad"), "--out", str(out)])
    assert rc == 2 and err.count("\n") == 1 and "pip install 'osttp[audio]'" in err and "soundfile" in err
    assert not out.exists()
