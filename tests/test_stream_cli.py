"""`osttp stream`: the files it writes, resume mid-stream bit for bit, report, one-line errors (exit 2).

In-process calls of osttp.experiment.cli.main on a tiny synthetic task (no data files)."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import torch

from osttp.experiment import config as C
from osttp.experiment.cli import build_parser
from cli_helpers import json_lines, run_cli

TINY = ["--task", "delayed-xor", "--task-param", "n_train=64", "--hidden", "8", "--threads", "1", "--quiet",
        "--log-every", "50", "--metric-window", "60"]


_run = run_cli
_lines = json_lines


def _model(path: Path) -> dict:
    return torch.load(path / "model.pt", map_location="cpu", weights_only=True)["model"]


def test_stream_flags_are_exactly_the_keys_declared_for_it() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    opts = {o: a for a in sub.choices["stream"]._actions for o in a.option_strings}
    for sec, keys in C.SCHEMA.items():
        for name, key in keys.items():
            if key.flag:
                assert (key.flag in opts) == ("stream" in key.commands), key.flag
                if key.flag in opts:
                    assert opts[key.flag].dest == f"{sec}.{name}" and opts[key.flag].default is None


def test_stream_run_files_resume_and_report(tmp_path, capsys) -> None:
    common = [*TINY, "--rule", "tbptt", "--window", "5", "--drift", "remap", "--drift-every", "6",
              "--checkpoint-steps", "97"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(capsys, ["stream", *common, "--steps", "400", "--out", str(a)])[0] == 0
    for name in ("stream.toml", "metrics.jsonl", "results.json", "model.pt", "stream.png", "checkpoints"):
        assert (a / name).exists(), name
    saved = tomllib.loads((a / "stream.toml").read_text())
    assert saved["train"]["schedule"] == "per-step" and "epochs" not in saved["train"] and "eval" not in saved
    res = json.loads((a / "results.json").read_text())
    p = res["prequential"]
    assert res["status"] == "completed" and p["steps"] == 400 and p["n_drifts"] == 5 and p["rule"] == "tbptt-5"
    assert [r["step"] for r in _lines(a / "metrics.jsonl")] == list(range(50, 401, 50))
    assert 0.0 <= p["cumulative"] <= 1.0 and res["steps_per_s"] > 0

    # interrupted at step 150 (a checkpoint at 150, mid-sequence), then resumed to 400
    assert _run(capsys, ["stream", *common, "--steps", "150", "--out", str(b)])[0] == 0
    rc, _, err = _run(capsys, ["stream", "--out", str(b), "--resume", "--steps", "400", "--quiet"])
    assert rc == 0, err
    ma, mb = _model(a), _model(b)
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
    assert json.loads((b / "results.json").read_text())["prequential"] == p

    # a resume that would change the experiment is refused
    rc, _, err = _run(capsys, ["stream", "--out", str(b), "--resume", "--steps", "500", "--drift-every", "7"])
    assert rc == 2 and err.count("\n") == 1 and "stream.drift_every" in err

    c = tmp_path / "c"
    assert _run(capsys, ["stream", *TINY, "--rule", "osttp", "--drift", "remap", "--drift-every", "6",
                         "--steps", "400", "--out", str(c)])[0] == 0
    rc, out, err = _run(capsys, ["report", str(a), str(c), "--out", str(tmp_path / "rep")])
    assert rc == 0, err
    assert "| tbptt-5 |" in out and "| osttp |" in out
    for name in ("report.md", "report.json", "report.png"):
        assert (tmp_path / "rep" / name).is_file()
    rc, _, err = _run(capsys, ["report", str(a), str(tmp_path), "--out", str(tmp_path / "rep2")])
    assert rc == 2 and "not a stream directory" in err


def test_bad_stream_input_exits_2_with_one_line_and_no_dir(tmp_path, capsys) -> None:
    cfg = tmp_path / "train.toml"
    cfg.write_text("[train]\nepochs = 3\n")
    cases = [
        (["--drift", "permute"], "drift_every"),
        (["--drift", "permute", "--drift-every", "0"], "--drift-every"),
        (["--drift", "rotate"], "--drift"),
        (["--metric-window", "0"], "--metric-window"),
        (["--lanes", "0"], "--lanes"),
        (["--steps", "-5"], "--steps"),
        (["--score", "first"], "--score"),
        (["--switch-task", "store-recall"], "switch"),
        (["--drift", "switch", "--drift-every", "3", "--switch-task", "store-recall", "--switch-param", "bits=2"],
         "n_in"),
        (["--drift-every", "4"], "stream.drift_every"),
        (["--drift", "permute", "--drift-every", "3", "--permute-axis", "inputs", "--task-param", "n_valid=8",
          "--split", "nope"], "--split"),
        (["--config", str(cfg)], "train.epochs does not apply"),
        (["--epochs", "3"], "unrecognized arguments"),
        (["--rule", "nope"], "unknown rule"),
    ]
    for extra, needle in cases:
        out = tmp_path / "out"
        argv = ["stream", *TINY, "--rule", "osttp", "--steps", "50", *extra, "--out", str(out)]
        rc, _, err = _run(capsys, argv)
        assert rc == 2, (extra, err)
        assert err.count("\n") == 1 and err.startswith("osttp: error: ") and "Traceback" not in err, (extra, err)
        assert needle in err, (extra, err)
        assert not out.exists(), extra
    rc, _, err = _run(capsys, ["stream", "--out", str(tmp_path / "none"), "--resume"])
    assert rc == 2 and "cannot resume" in err and not (tmp_path / "none").exists()


def test_stream_on_a_locked_directory_exits_2_with_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text("")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, time\n"
                               f"fd = os.open({str(out / '.lock')!r}, os.O_RDWR)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nos.pwrite(fd, b'%d\\n' % os.getpid(), 0)\n"
                               "print('locked', flush=True)\ntime.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        rc, _, err = _run(capsys, ["stream", *TINY, "--rule", "osttp", "--steps", "50", "--out", str(out)])
        assert rc == 2 and err.count("\n") == 1 and f"in use by process {holder.pid}" in err, err
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written beside the lock
    finally:
        holder.kill()
        holder.wait()
    rc, _, err = _run(capsys, ["stream", *TINY, "--rule", "osttp", "--steps", "50", "--out", str(out)])
    assert rc == 0, err  # the holder died: its lock is stale and taken over


def test_stream_hidden_lr_scale_reaches_the_optimizer(tmp_path, capsys, monkeypatch) -> None:
    seen: list[list[float]] = []
    real = torch.optim.Adam.step

    def step(self, *a, **k):  # type: ignore[no-untyped-def]
        seen.append([g["lr"] for g in self.param_groups])
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    rc, _, err = _run(capsys, ["stream", *TINY, "--rule", "osttp-local", "--steps", "20", "--lr", "0.01",
                               "--hidden-lr-scale", "0.25", "--out", str(tmp_path / "s")])
    assert rc == 0, err
    assert seen and all(lrs == [0.0025, 0.01] for lrs in seen), seen[:3]
