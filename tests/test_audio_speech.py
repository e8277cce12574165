"""The 20-class spoken digits spoken by espeak-ng: a handful of utterances at 24 cochlea channels
(layout, labels, voice-disjoint splits, determinism across job counts and runs, resumption, the
reader), and the one-line errors of `osttp data make spoken-digits-20`. Skipped without espeak-ng."""
from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from osttp import tasks
from osttp.audio import speech
from osttp.errors import OsttpError
from osttp.experiment.cli import main
from osttp.tasks import data

VOICES = ["m1", "m7", "m3"]  # one train, one valid, one test voice
LABELS = [3, 12]             # English "three", German "zwei"


def _espeak() -> None:
    pytest.importorskip("espeakng_loader", reason="espeak-ng absent: pip install 'osttp[speech]' (espeakng-loader)")


def test_check_voices_keeps_catalogue_order_and_every_split() -> None:
    assert speech.check_voices(None) == speech.VOICES and len(speech.VOICES) == 16
    assert speech.check_voices(["m3", "m1", "m7"]) == ("m1", "m7", "m3")
    with pytest.raises(OsttpError, match="'zz': expected voice variants among"):
        speech.check_voices(["m1", "zz"])
    with pytest.raises(OsttpError, match="no test voice"):
        speech.check_voices(["m1", "m7"])
    splits = {v: speech.voice_split(v) for v in speech.VOICES}
    assert sum(s == "test" for s in splits.values()) == 3 and sum(s == "valid" for s in splits.values()) == 2
    keys = [u.key for v in speech.VOICES for u in speech.voice_design(v)]
    assert len(keys) == len(set(keys)) == 1920


def test_speak_is_reproducible_in_fresh_processes_and_checks_the_voice() -> None:
    _espeak()
    from osttp.audio.espeak import SAMPLE_RATE, speak

    a, b = speech.synthesize(["m7"]), speech.synthesize(["m7"])
    assert all(np.array_equal(a[u], b[u]) for u in a) and len(a) == 120
    x = a[speech.Spoken(12, "m7", 175, 35)]
    assert x.dtype == np.int16 and 0.2 < x.size / SAMPLE_RATE < 1.0 and np.abs(x).max() > 1000
    assert not np.array_equal(x, a[speech.Spoken(12, "m7", 175, 65)])  # the pitch changes the sound
    with pytest.raises(OsttpError, match="no variant 'nosuchvoice'"):
        speak("en+nosuchvoice", "one")
    clean = x
    n1, n2 = speech.noisy(clean, 0, "k"), speech.noisy(clean, 0, "k")
    assert np.array_equal(n1, n2) and not np.array_equal(n1, speech.noisy(clean, 1, "k"))
    snr = 10 * np.log10(np.mean((clean / 32768.0) ** 2) / np.mean((n1 - clean / 32768.0) ** 2))
    assert 9.5 < snr < 30.5


def test_a_handful_of_utterances_builds_voice_disjoint_files_deterministically(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _espeak()
    from osttp.audio import convert
    from osttp.audio.cochlea import CochleaParams
    from osttp.audio.spoken_digits_20 import make_spoken_digits_20

    small = CochleaParams(channels=24)
    monkeypatch.setattr(convert, "SHARD_SIZE", 6)
    out1, out2 = tmp_path / "one" / "spoken-digits-20", tmp_path / "two" / "spoken-digits-20"
    m1 = make_spoken_digits_20(out1, voices=VOICES, jobs=1, params=small, labels=LABELS)
    m2 = make_spoken_digits_20(out2, voices=VOICES, jobs=2, params=small, labels=LABELS)
    files = {n: f["sha256"] for n, f in m1["files"].items()}
    assert files == {n: f["sha256"] for n, f in m2["files"].items()}  # jobs do not change a byte
    assert {n: f["samples"] for n, f in m1["files"].items()} == {f"voices_{s}.h5": 12 for s in ("train", "valid", "test")}
    assert m1["voice_split"] == {"train": ["m1"], "valid": ["m7"], "test": ["m3"]} and m1["utterances"] == 36
    with h5py.File(out1 / "voices_test.h5", "r") as f:
        assert sorted(set(f["labels"][()].tolist())) == LABELS and set(f["extra/speaker"][()].tolist()) == {13}
        assert [k.decode() for k in f["extra/keys"][()]][12] == "zwei" and len(f["extra/keys"]) == 20
        assert all(r.decode().endswith(tuple(f"_m3_{w}wpm_p{p}" for w in speech.RATES_WPM for p in speech.PITCHES))
                   for r in f["extra/recording"][()])
    data.clear_cache()
    for split, voice in zip(("train", "valid", "test"), VOICES):
        task = tasks.load("spoken-digits-20", split, root=tmp_path / "one", T=20)
        assert task.n_out == 20 and len(task) == 12 and set(task.speakers.tolist()) == {speech.VOICES.index(voice)}
        xs = next(task.batches(12)).xs
        assert xs.shape == (20, 12, 700) and xs[..., :24].sum() > 500 and xs[..., 24:].sum() == 0
    # resume: one shard lost; only it is converted again, and the files are the same
    shards = sorted((out1 / "work" / "shards").glob("shard-*.npz"))
    assert len(shards) == 6
    shards[2].unlink()
    seen: list[tuple[int, int]] = []
    m3 = make_spoken_digits_20(out1, voices=VOICES, jobs=1, params=small, labels=LABELS,
                               progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (30, 36) and {n: f["sha256"] for n, f in m3["files"].items()} == files
    m4 = make_spoken_digits_20(tmp_path / "three", voices=VOICES, jobs=1, seed=1, params=small, labels=LABELS)
    assert m4["files"]["voices_test.h5"]["sha256"] != files["voices_test.h5"]  # the seed matters (control)


def test_data_make_spoken_digits_20_errors_are_one_line_and_write_nothing(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    cases = [
        (["--source", str(tmp_path)], "--source does not apply"),
        (["--voices", "m1", "zz"], "'zz': expected voice variants among"),
        (["--voices", "m1", "m7"], "no test voice"),
        (["--jobs", "0"], "--jobs 0"),
    ]
    for extra, match in cases:
        rc = main(["data", "make", "spoken-digits-20", "--out", str(out), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and match in err and "Traceback" not in err, (extra, err)
        assert not out.exists()
    rc = main(["data", "make", "spoken-digits", "--source", str(tmp_path), "--voices", "m1", "--out", str(out)])
    assert rc == 2 and "--voices only applies to spoken-digits-20" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # espeak-ng not installed
    rc = main(["data", "make", "spoken-digits-20", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "espeakng_loader" in err and "pip install 'osttp[speech]'" in err
    assert not out.exists()
