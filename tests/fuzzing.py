"""Generated inputs for the property "exit 0, or exit 2 (3: diverged) with one line; never a traceback;
nothing half-written" (docs/reliability.md). Used by tests/test_fuzz.py (fast profile) and
benchmarks/fuzz.py (thousands of examples).

Four families: command-line flag values, config files (valid configs perturbed, raw bytes), files of
an existing run directory (damaged, then `report` and `train --resume`), and dataset files (JSB JSON,
MNIST IDX gz) read by the library loaders.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil
import struct
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from hypothesis import strategies as st

from osttp.errors import DataError
from osttp.experiment.cli import main
from osttp.tasks import data

BASE = ["--task", "delayed-xor", "--task-param", "n_train=16", "--task-param", "n_valid=8", "--task-param",
        "n_test=8", "--hidden", "4", "--batch-size", "8", "--epochs", "1", "--quiet", "--threads", "1"]
EXITS = (0, 2, 3)
COUNTS: Counter[str] = Counter()  # examples per family and outcomes (exit codes, loader results)

# ---------------------------------------------------------------------------------------------
# values

_weird_floats = st.sampled_from(["nan", "inf", "-inf", "1e308", "1e-308", "1e-50", "-0.0", "0", "1e400", "0x10",
                                 "1_000", "", " ", "abc", "3e38", "5e-324", "18446744073709551616"])
_weird_ints = st.sampled_from(["-1", "0", "1", "2", "20000", "100000", "18446744073709551616", "9223372036854775807",
                               "9223372036854775808", "-9223372036854775809", "1.5", "x", "", "1e3", "٣"])
values = st.one_of(_weird_floats, _weird_ints, st.integers(-10, 10**20).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.text(max_size=12).filter(lambda s: "\0" not in s))
FLAGS = ["--seed", "--lr", "--epochs", "--batch-size", "--hidden", "--threads", "--feedback-scale", "--momentum",
         "--weight-decay", "--window", "--max-train-batches", "--eval-batch-size", "--kappa", "--init-rate",
         "--w-range", "--bits", "--io-bits", "--checkpoint-every", "--cell-option", "--task-param", "--schedule",
         "--cell", "--rule", "--readout", "--dtype", "--optimizer", "--synapse", "--device"]
OPTION_KEYS = st.sampled_from(["d", "g", "reset", "alpha", "theta", "lam", "surrogate", "delay", "limit", "n_train",
                               "label", "zz"])
# Flags whose large *valid* values only make a run long (not wrong): their integers are folded into
# a small range, except those so large that they must be refused (>= 10**8: memory; >= 2**63).
SIZE_FLAGS = {"--epochs", "--hidden", "--batch-size", "--eval-batch-size", "--window", "--max-train-batches",
              "--checkpoint-every", "delay", "limit", "n_train"}


def _fold(key: str, v: str) -> str:
    try:
        n = int(v)
    except ValueError:
        try:
            f = float(v)
        except ValueError:
            return v
        return "2.0" if key in SIZE_FLAGS and 8 < f < 1e8 else v
    if key in SIZE_FLAGS and 8 < n < 10**8:
        return str(n % 8 + 1)
    if key == "--epochs" and n > 8:
        return "2"  # epochs has no upper bound: 10**20 is a valid (endless) request
    return v


@st.composite
def flag_sets(draw: Any) -> list[str]:
    """A few flags with hostile values on top of a valid tiny run."""
    argv: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        flag = draw(st.sampled_from(FLAGS))
        v = draw(values)
        if flag in ("--cell-option", "--task-param"):
            key = draw(OPTION_KEYS)
            v = f"{key}={_fold(key, v)}"
        else:
            v = _fold(flag, v)
        argv += [flag, v]
    return argv


def _toml_value(draw: Any) -> str:
    return draw(st.one_of(
        st.integers(-10**30, 10**30).map(str), st.floats(allow_nan=True).map(lambda f: repr(f).replace("inf", "inf")),
        st.sampled_from(["true", "false", '"abc"', "[]", "[1, 2]", '["a"]', "{}", "{d = 0.5}", "nan", "-inf",
                         "1979-05-27", '"osttp"', '"bptt"', '"snu"', "[8]", "1e-50", "1e308"])))


SECTIONS = {"task": ["name", "params"], "model": ["cell", "hidden", "recurrent", "dtype", "feedback_scale", "readout",
                                                  "kappa", "init_rate", "cell_options"],
            "train": ["rule", "seed", "batch_size", "optimizer", "lr", "momentum", "schedule", "window"],
            "eval": ["batch_size", "test_params", "decision"], "hardware": ["synapse", "w_range", "bits"],
            "run": ["device", "threads", "checkpoint_every"], "nope": ["x"]}


@st.composite
def config_files(draw: Any) -> bytes:
    """TOML: a few tables with schema keys (or not) set to values of any type; sometimes raw bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64))
    lines = []
    for sec in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=3, unique=True)):
        lines.append(f"[{sec}]")
        for key in draw(st.lists(st.sampled_from(SECTIONS[sec]), max_size=3, unique=True)):
            lines.append(f"{key} = {_toml_value(draw)}")
    text = "\n".join(lines) + "\n"
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    return bom + text.encode()


RUN_FILES = ["results.json", "metrics.jsonl", "config.toml", "checkpoints/last.pt", "checkpoints/prev.pt",
             "checkpoints/best.pt", "drift.json", ".lock"]


@st.composite
def run_damage(draw: Any) -> tuple[str, str, bytes]:
    """(file, how, bytes): a run-directory file replaced by JSON of the wrong shape, random bytes, a
    truncation of itself, or removed."""
    name = draw(st.sampled_from(RUN_FILES))
    how = draw(st.sampled_from(["json", "bytes", "truncate", "remove", "flip"]))
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                               lambda c: st.lists(c, max_size=3) | st.dictionaries(
                                   st.sampled_from(["status", "epoch", "valid", "train", "valid_metric",
                                                    "test_metric", "loss", "accuracy", "t_s", "compensation"]),
                                   c, max_size=4), max_leaves=8)
    if how == "json":
        payload = json.dumps(draw(json_values)).encode()
        if name == "metrics.jsonl" and draw(st.booleans()):
            payload += b"\n" + json.dumps(draw(json_values)).encode()
    elif how == "bytes":
        payload = draw(st.binary(max_size=80))
    else:
        payload = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))  # truncate length / flip position
    return name, how, payload


@st.composite
def jsb_files(draw: Any) -> bytes:
    notes = st.one_of(st.integers(0, 200), st.integers(), st.floats(), st.text(max_size=2), st.booleans())
    chorale = st.lists(st.lists(notes, max_size=3), max_size=4)
    obj = draw(st.one_of(
        st.fixed_dictionaries({k: st.lists(chorale, max_size=2) for k in data.JSB_SPLITS}),
        st.dictionaries(st.text(max_size=5), st.lists(chorale, max_size=2), max_size=3),
        st.lists(chorale, max_size=2)))
    text = json.dumps(obj).encode()
    if draw(st.integers(0, 4)) == 0:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.binary(max_size=8))
    return text


@st.composite
def idx_files(draw: Any) -> bytes:
    magic = draw(st.sampled_from([0x801, 0x803, 0, 0xFFFFFFFF]))
    dims = draw(st.lists(st.sampled_from([0, 1, 28, 60000, 10000, 2**32 - 1]), min_size=1, max_size=3))
    payload = draw(st.binary(max_size=256)) + b"\0" * draw(st.sampled_from([0, 60000, 200000]))
    raw = struct.pack(">I" + "I" * len(dims), magic, *dims) + payload
    return gzip.compress(raw, compresslevel=1) if draw(st.integers(0, 5)) else raw


# ---------------------------------------------------------------------------------------------
# the property


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def check_clean_exit(argv: list[str], out: Path | None, fresh: bool) -> int:
    """Run the CLI and assert the property; returns the exit code."""
    rc, err = run_cli(argv)
    COUNTS[f"exit {rc}"] += 1
    assert rc in EXITS, (argv, rc, err)
    assert "Traceback" not in err, (argv, err)
    if rc != 0:
        assert err.count("\n") == 1 and err.startswith("osttp: error: "), (argv, err)
    if out is not None:
        if fresh and rc == 2:
            assert not out.exists(), (argv, err)  # a refused new run leaves nothing behind
        if out.exists():
            assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], (argv, err)
    return rc


def damage(run: Path, name: str, how: str, payload: bytes) -> None:
    path = run / name
    if how == "remove":
        if path.is_file():
            path.unlink()
        return
    if how in ("truncate", "flip") and path.is_file():
        raw = bytearray(path.read_bytes())
        pos = struct.unpack(">I", payload)[0] % max(len(raw), 1)
        if how == "truncate":
            raw = raw[:pos]
        elif raw:
            raw[pos] ^= 1 << (pos % 8)
        path.write_bytes(bytes(raw))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


def check_loader(load: Callable[[], Any]) -> str:
    """A dataset loader either loads or raises DataError (one line); never anything else."""
    data.clear_cache()
    try:
        load()
    except DataError as e:
        assert "\n" not in str(e)
        COUNTS["loader refused"] += 1
        return "refused"
    COUNTS["loader loaded"] += 1
    return "loaded"


def fresh_copy(template: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(template, dst)
    return dst
