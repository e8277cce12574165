"""The executable example runs as shipped: a dataset to a trained network to a NIR file that reads back."""
from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

pytest.importorskip("nir", reason="the example exports to NIR: needs the 'nir' package (osttp[interop])")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_and_export.py"


@pytest.mark.slow
def test_train_and_export_learns_and_writes_a_model_that_reads_back(tmp_path, monkeypatch, capsys):
    out = tmp_path / "model.nir"
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--out", str(out)])  # its defaults: delayed XOR
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    text = capsys.readouterr().out
    init, after = (float(a) for a in re.findall(r"valid accuracy (?:at init|after \d+ epochs) ([0-9.]+)", text))
    assert init < 0.6 and after > 0.8, text
    assert out.is_file()
    assert re.search(r"differ by at most 0\.0e\+00", text), text
