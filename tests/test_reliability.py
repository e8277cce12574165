"""Every failure path a clean exit, nothing lost (docs/reliability.md): the CLI's error boundary,
resource checks, run-directory locks, crash consistency, checkpoint integrity, report robustness.

Runs are tiny synthetic tasks (well under a second)."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from osttp.experiment import checkpoint as ckpt_mod
from osttp.experiment.cli import main

TINY = ["--task", "delayed-xor", "--task-param", "n_train=96", "--task-param", "n_valid=32",
        "--task-param", "n_test=32", "--hidden", "8", "--batch-size", "16", "--quiet", "--threads", "1"]
RUN = ["train", *TINY, "--rule", "osttp"]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line_2(rc: int, err: str, needle: str = "") -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("osttp: error: "), err
    assert "Traceback" not in err and needle in err, err


def _no_temps(d: Path) -> None:
    assert not [p for p in d.rglob("*") if p.name.endswith(".tmp")]


def _train(capsys, out: Path, *extra: str) -> None:
    rc, _, err = _run(capsys, [*RUN, "--epochs", "2", "--out", str(out), *extra])
    assert rc == 0, err


# ---------------------------------------------------------------------------------------------
# out-of-range and ill-typed values: all refused before the run directory exists


@pytest.mark.parametrize("flags,needle", [
    (["--seed", "18446744073709551616"], "9223372036854775807"),
    (["--feedback-scale", "1e308"], "feedback_scale"),
    (["--threads", "20000"], "run.threads"),
    (["--threads", "100000"], "run.threads"),
    (["--hidden", "100000000"], "memory"),
    (["--hidden", "20000", "--recurrent"], "memory"),
    (["--synapse", "pcm", "--w-range", "1e-30"], "hardware.w_range"),
    (["--lr", "1e-50"], "train.lr"),
    (["--cell-option", 'd="abc"'], "option d"),
])
def test_bad_values_refused_before_the_run_dir(tmp_path, capsys, flags, needle) -> None:
    out = tmp_path / "out"
    rc, _, err = _run(capsys, [*RUN, *flags, "--out", str(out)])
    _one_line_2(rc, err, needle)
    assert not out.exists()


def test_compare_seed_range(tmp_path, capsys) -> None:
    rc, _, err = _run(capsys, ["compare", *TINY, "--seeds", "0,9223372036854775808", "--out", str(tmp_path / "c")])
    _one_line_2(rc, err, "--seeds")


def test_config_with_utf8_bom(tmp_path, capsys) -> None:
    cfg = tmp_path / "bom.toml"
    cfg.write_bytes(b"\xef\xbb\xbf[train]\nepochs = 1\n")
    rc, _, err = _run(capsys, [*RUN, "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert rc == 0, err
    assert json.loads((tmp_path / "r" / "results.json").read_text())["epochs"] == 1


# ---------------------------------------------------------------------------------------------
# I/O errors: one line, exit 2, no temporary file left


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_write_errors_during_training_are_one_line(tmp_path, capsys, monkeypatch, code) -> None:
    real = ckpt_mod.os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:  # the 4th durable write fails: a checkpoint inside the run
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(ckpt_mod.os, "fsync", failing_fsync)
    out = tmp_path / "run"
    rc, _, err = _run(capsys, [*RUN, "--epochs", "2", "--out", str(out)])
    _one_line_2(rc, err, os.strerror(code))
    _no_temps(out)
    monkeypatch.undo()
    rc, _, err = _run(capsys, ["train", "--out", str(out), "--resume", "--quiet"])  # still resumable
    assert rc == 0, err


def test_results_json_is_a_directory(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    _train(capsys, out)
    (out / "results.json").unlink()
    (out / "results.json").mkdir()
    rc, _, err = _run(capsys, ["train", "--out", str(out), "--resume", "--quiet"])
    _one_line_2(rc, err, "results.json")
    _no_temps(out)


# ---------------------------------------------------------------------------------------------
# report: unreadable or partial run directories


@pytest.mark.parametrize("name,content,needle", [
    ("results.json", b"[1]", "JSON object"),
    ("results.json", b'{"status":"completed"}', "valid_metric"),
    ("results.json", b'{"status":"completed","valid_metric":"x","test_metric":1}', "valid_metric"),
    ("metrics.jsonl", b"\xff\xfe\n", "UTF-8"),
    ("metrics.jsonl", b"5\n", "line 1"),
    ("metrics.jsonl", b"[1,2]\n", "line 1"),
    ("metrics.jsonl", b'{"epoch":1,"train":{},"valid":5}\n', "valid"),
    ("metrics.jsonl", b'{"epoch":"one","train":{},"valid":{}}\n', "epoch"),
    ("metrics.jsonl", b"[" * 100000 + b"\n", "line 1"),
])
def test_report_on_malformed_files(tmp_path, capsys, name, content, needle) -> None:
    out = tmp_path / "run"
    _train(capsys, out)
    (out / name).write_bytes(content)
    rc, _, err = _run(capsys, ["report", str(out)])
    _one_line_2(rc, err, needle)


def test_report_out_exists_or_unwritable(tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "run"
    _train(capsys, out)
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, _, err = _run(capsys, ["report", str(out), "--out", str(afile)])
    _one_line_2(rc, err, "not a directory")

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "rep" / "report.json"))

    monkeypatch.setattr(ckpt_mod, "_write_atomic", read_only)
    rc, _, err = _run(capsys, ["report", str(out), "--out", str(tmp_path / "rep")])
    _one_line_2(rc, err, "Read-only file system")


# ---------------------------------------------------------------------------------------------
# lock: one writer per run directory


def test_second_writer_exits_2_naming_the_holder(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    _train(capsys, out)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"fd = os.open({str(out / '.lock')!r}, os.O_RDWR)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nos.pwrite(fd, b'%d\\n' % os.getpid(), 0)\n"
                               "print('locked', flush=True)\ntime.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, _, err = _run(capsys, ["train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"])
        _one_line_2(rc, err, f"in use by process {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its lock is stale and taken over
    rc, _, err = _run(capsys, ["train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"])
    assert rc == 0, err


def test_temp_names_are_unique_per_process_and_call(tmp_path) -> None:
    a, b = ckpt_mod.temp_path(tmp_path / "last.pt"), ckpt_mod.temp_path(tmp_path / "last.pt")
    assert a != b and str(os.getpid()) in a.name and a.name.endswith(".tmp") and a.name.startswith(".")


# ---------------------------------------------------------------------------------------------
# crash consistency from the first byte


def test_resume_after_kill_before_first_checkpoint(tmp_path, capsys) -> None:
    ref = tmp_path / "ref"
    _train(capsys, ref)
    for leftover in ("nothing", "config-tmp", "config", "checkpoint-tmp"):
        out = tmp_path / leftover
        out.mkdir()
        (out / ".lock").write_text("999999\n")
        if leftover == "config-tmp":
            (out / ".config.toml.999999.abcd.tmp").write_text("[task]\nna")
        if leftover in ("config", "checkpoint-tmp"):
            (out / "config.toml").write_text((ref / "config.toml").read_text())
            (out / "metrics.jsonl").write_text("")
        if leftover == "checkpoint-tmp":
            (out / "checkpoints").mkdir()
            (out / "checkpoints" / ".last.pt.999999.abcd.tmp").write_bytes(b"PK\x03\x04")
        rc, _, err = _run(capsys, [*RUN, "--epochs", "2", "--out", str(out), "--resume"])
        assert rc == 0, (leftover, err)
        _no_temps(out)
        a = torch.load(ref / "model.pt", weights_only=True)["model"]
        b = torch.load(out / "model.pt", weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), leftover


# ---------------------------------------------------------------------------------------------
# checkpoint integrity: digests, truncation, foreign objects


def _flip_bit_in_weight(path: Path) -> None:
    ck = torch.load(path, weights_only=True)
    w = ck["model"]["layers.0.W"]
    w.view(torch.int32)[0, 0] ^= 1 << 3  # one bit of one weight, file otherwise intact
    torch.save(ck, path)


def test_flipped_bit_is_detected_and_resume_falls_back(tmp_path, capsys) -> None:
    ref, out = tmp_path / "ref", tmp_path / "run"
    for d in (ref, out):
        _train(capsys, d)
    _flip_bit_in_weight(out / "checkpoints" / "last.pt")
    rc, stdout, err = _run(capsys, ["train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"])
    assert rc == 0, err
    assert "last.pt" in stdout and "digest" in stdout and "resuming from" in stdout
    assert _run(capsys, ["train", "--out", str(ref), "--resume", "--epochs", "3", "--quiet"])[0] == 0
    a = torch.load(ref / "model.pt", weights_only=True)["model"]
    b = torch.load(out / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _edit(path: Path, how: str) -> None:
    ck = torch.load(path, weights_only=True)
    if how == "extra-key":
        ck["extra"] = 1
    elif how == "rng-size":
        ck["rng"]["torch"] = ck["rng"]["torch"][:100]
    elif how == "no-history":
        del ck["progress"]["history"]
    elif how == "weight-shape":
        ck["model"]["layers.0.W"] = torch.zeros(3, 3)
    elif how == "weight-dtype":
        ck["model"]["layers.0.W"] = ck["model"]["layers.0.W"].double()
    elif how == "adam-shape":
        ck["optimizer"]["state"][0]["exp_avg"] = torch.zeros(2)
    ck["digest"] = ckpt_mod.content_digest(ck)  # a consistent digest: the structure checks must catch it
    torch.save(ck, path)


@pytest.mark.parametrize("how", ["extra-key", "rng-size", "no-history", "weight-shape", "weight-dtype",
                                 "adam-shape", "zeros", "garbage-pickle", "one-byte"])
def test_corrupt_checkpoints_are_named_exit_2(tmp_path, capsys, how) -> None:
    out = tmp_path / "run"
    _train(capsys, out)
    metrics = (out / "metrics.jsonl").read_text()
    for name in ("last.pt", "prev.pt"):
        path = out / "checkpoints" / name
        if how == "zeros":
            path.write_bytes(b"\0" * 4096)
        elif how == "one-byte":  # a lone pickle opcode: struct.error inside torch
            path.write_bytes(b"M")
        elif how == "garbage-pickle":
            import pickle
            import zipfile
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("archive/data.pkl", pickle.dumps(print))
        else:
            _edit(path, how)
    rc, _, err = _run(capsys, ["train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"])
    _one_line_2(rc, err, "last.pt")
    assert "prev.pt" in err and "weights_only" not in err
    assert (out / "metrics.jsonl").read_text() == metrics  # nothing rewritten


def test_history_disagreeing_with_metrics_is_refused(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    _train(capsys, out)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["valid"]["loss"] = 123.0
    (out / "metrics.jsonl").write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
    rc, _, err = _run(capsys, ["train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"])
    _one_line_2(rc, err, "metrics.jsonl")


# ---------------------------------------------------------------------------------------------
# Ctrl-C and SIGKILL at random moments


def _launch(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "osttp", *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_mapping(pid: int, needle: str, timeout: float = 120.0) -> None:
    """Until the process has mapped a shared library whose path contains `needle` (machine load
    cannot make this flaky, unlike a fixed delay)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if needle in Path(f"/proc/{pid}/maps").read_text():
                return
        except OSError:
            pass
        time.sleep(0.002)
    raise AssertionError(f"process {pid} never mapped {needle}")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
@pytest.mark.parametrize("during", ["libtorch", "libtorch_python"])
def test_ctrl_c_during_startup_is_one_line_130(tmp_path, during) -> None:
    """Ctrl-C while torch is being imported (its first libraries mapped, or the Python bindings)."""
    p = _launch([*RUN, "--out", str(tmp_path / "r")], tmp_path)
    _wait_for_mapping(p.pid, during)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert err.count("\n") == 1 and "interrupted" in err and "Traceback" not in err


def test_sigkill_at_random_moments_resumes_bit_identical(tmp_path, capsys) -> None:
    """The fast profile of benchmarks/crash.py: 5 kills at moments spread over a whole run, one in the
    start-up (torch import, directory and config.toml writes), four after the directory appeared
    (first checkpoint, training, later checkpoints, results)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import crash

    report = crash.run_trials(tmp_path, moments=5, seed=1)
    assert report["trials"] == 5 and report["identical"] == 5, report
