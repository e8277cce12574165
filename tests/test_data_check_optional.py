"""`osttp data check` on the optional datasets: SHD, the spoken-digit files (against their
manifest) and the FSDD recordings' checksum; absent ones are reported, broken ones fail."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from osttp.audio.spikefile import write_spike_file
from osttp.experiment.cli import main
from osttp.tasks import data


def _write(path: Path, labels: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    write_spike_file(path, [np.array([0.1, 0.2])] * n, [np.array([3, 4])] * n, labels, [0] * n,
                     [str(k) for k in range(max(labels) + 1)], [str(i) for i in range(n)])


def _check(capsys: pytest.CaptureFixture[str], root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setenv("OSTTP_DATA", str(root))
    data.clear_cache()
    rc = main(["data", "check"])
    return rc, capsys.readouterr().out


def test_optional_datasets_are_checked_when_present(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rc, out = _check(capsys, tmp_path, monkeypatch)
    assert rc == 2 and "optional, not present: shd/shd_train.h5" in out and "fsdd/recordings/" in out
    _write(tmp_path / "shd" / "shd_train.h5", [0, 19])
    sd = tmp_path / "spoken-digits"
    files = {}
    for kind in ("speakers", "official"):
        for split in ("train", "valid", "test"):
            _write(sd / f"{kind}_{split}.h5", [0, 9, 5])
            files[f"{kind}_{split}.h5"] = {"sha256": hashlib.sha256((sd / f"{kind}_{split}.h5").read_bytes()).hexdigest()}
    (sd / "manifest.json").write_text(json.dumps({"files": files}))
    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    (rec / "0_george_0.wav").write_bytes(b"not FSDD")
    rc, out = _check(capsys, tmp_path, monkeypatch)
    assert "ok       shd/shd_train.h5" in out and "ok       spoken-digits/official_test.h5" in out
    assert "BAD      fsdd/recordings" in out and "checksum of the recordings is" in out
    assert rc == 2  # the wrong recordings (and the absent MNIST/JSB files)
    # a spoken-digit file changed after it was built: its SHA-256 no longer matches the manifest
    _write(sd / "speakers_test.h5", [1, 2, 3])
    rc, out = _check(capsys, tmp_path, monkeypatch)
    assert "BAD      spoken-digits/speakers_test.h5" in out and "manifest.json says" in out
    # a 20-class file where a 10-class one belongs
    _write(sd / "speakers_valid.h5", [0, 12])
    rc, out = _check(capsys, tmp_path, monkeypatch)
    assert "BAD      spoken-digits/speakers_valid.h5" in out and "label 12 outside 0..9" in out
