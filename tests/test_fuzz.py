"""Property-based tests (hypothesis) of the error boundary: for generated flag values, config files,
damaged run-directory files and dataset files, every command exits 0, or 2 (3: diverged) with one
line, never a traceback, and leaves nothing half-written. Fast profile: 235 examples in all (each run-directory example runs two
commands, each dataset example two loaders);
benchmarks/fuzz.py runs the same properties with thousands (counts in docs/reliability.md)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import fuzzing as F
from osttp.tasks import data

BASE = settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
SCALE = float(os.environ.get("OSTTP_FUZZ_SCALE", "1"))  # benchmarks/fuzz.py raises it


def examples(n: int) -> settings:
    return settings(BASE, max_examples=max(1, int(n * SCALE)))


@pytest.fixture(scope="module")
def template_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("template") / "run"
    assert F.run_cli(["train", *F.BASE, "--rule", "osttp", "--out", str(run)])[0] == 0
    return run


@examples(100)
@given(flags=F.flag_sets())
def test_generated_flags(flags) -> None:
    F.COUNTS["flags"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        F.check_clean_exit(["train", *F.BASE, "--rule", "osttp", *flags, "--out", str(out)], out, fresh=True)


@examples(60)
@given(text=F.config_files())
def test_generated_config_files(text) -> None:
    F.COUNTS["config files"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        cfg, out = Path(tmp) / "c.toml", Path(tmp) / "out"
        cfg.write_bytes(text)
        F.check_clean_exit(["train", *F.BASE, "--rule", "osttp", "--config", str(cfg), "--out", str(out)], out,
                           fresh=True)


@examples(40)
@given(damage=F.run_damage())
def test_damaged_run_directories(template_run, damage) -> None:
    F.COUNTS["run directories"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        run = F.fresh_copy(template_run, Path(tmp) / "run")
        F.damage(run, *damage)
        F.check_clean_exit(["report", str(run), "--out", str(Path(tmp) / "rep")], None, fresh=False)
        F.check_clean_exit(["train", "--out", str(run), "--resume", "--quiet"], run, fresh=False)


@examples(25)
@given(jsb=F.jsb_files(), idx=F.idx_files())
def test_generated_dataset_files(jsb, idx) -> None:
    F.COUNTS["dataset files"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "jsb").mkdir()
        (root / data.JSB_FILE).write_bytes(jsb)
        F.check_loader(lambda: data.load_jsb(root))
        rel = "mnist/t10k-labels-idx1-ubyte.gz"
        (root / "mnist").mkdir()
        (root / rel).write_bytes(idx)
        F.check_loader(lambda: data._load_idx(rel, 0x801, (10000,), root))
    data.clear_cache()
