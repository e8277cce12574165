"""The command line: train/compare/report/list/demo, the files they write, resume, exit codes.

Most cases call osttp.experiment.cli.main in-process (one torch import for all); the kill-and-resume case and
`python -m osttp` run real subprocesses. Every run is a tiny synthetic task, so no data files."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch

import osttp
import osttp.tasks
from osttp.experiment import config as C
from osttp.experiment import tomlio
from cli_helpers import json_lines, run_cli, without_keys

# delayed-xor with few sequences: a run takes well under a second in-process
TINY = ["--task", "delayed-xor", "--task-param", "n_train=96", "--task-param", "n_valid=32",
        "--task-param", "n_test=32", "--hidden", "8", "--batch-size", "16", "--quiet"]
RESULT_KEYS = {"task", "rule", "seed", "epochs", "metric_name", "valid_metric", "test_metric", "wall_s",
               "peak_mem_mb", "chance", "cell", "hidden", "status", "test_params", "learner_state_mb"}
_run = run_cli
_lines = json_lines


_no_timing = without_keys


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------------
# train


def test_train_writes_every_file(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc, stdout, err = _run(capsys, ["train", *TINY, "--rule", "osttp", "--epochs", "2", "--checkpoint-every", "2",
                                    "--out", str(out)])
    assert rc == 0, err
    assert err == ""  # --quiet: no progress bar
    assert stdout.count("epoch ") == 2  # one log line per epoch
    for name in ("config.toml", "metrics.jsonl", "results.json", "model.pt", "checkpoints/last.pt",
                 "checkpoints/best.pt"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.tmp"))

    res = json.loads((out / "results.json").read_text())
    assert RESULT_KEYS <= res.keys()
    assert (res["task"], res["rule"], res["seed"], res["epochs"]) == ("delayed-xor", "osttp", 0, 2)
    assert res["metric_name"] == "accuracy" and res["chance"] == pytest.approx(0.5)
    assert res["hidden"] == [8] and res["cell"] == "snu" and res["status"] == "completed"
    assert 0.0 <= res["test_metric"] <= 1.0 and 0.0 <= res["valid_metric"] <= 1.0
    assert res["wall_s"] > 0 and res["peak_mem_mb"] > 0

    hist = _lines(out / "metrics.jsonl")
    assert [h["epoch"] for h in hist] == [1, 2]
    for h in hist:
        assert {"accuracy", "loss"} <= h["train"].keys() and {"accuracy", "loss"} <= h["valid"].keys()
        assert h["seconds"] > 0 and h["batches"] == 6
    assert res["valid_metric"] == hist[-1]["valid"]["accuracy"]

    # config.toml is the fully resolved config and reads back to the same thing
    saved = tomllib.loads((out / "config.toml").read_text())
    assert saved["task"]["params"]["n_train"] == 96 and saved["task"]["params"]["delay"] == 5
    assert saved["train"]["rule"] == "osttp" and saved["model"]["hidden"] == [8]
    assert C.resolve((saved, "saved")) == C.resolve((tomlio.read_toml(out / "config.toml"), "again"))

    ckpt = _load(out / "checkpoints" / "last.pt")
    assert ckpt["progress"]["epoch"] == 2 and ckpt["progress"]["global_batches"] == 12
    assert len(ckpt["progress"]["history"]) == 2
    _same_state(ckpt["model"], _load(out / "model.pt")["model"])


def test_precedence_defaults_file_flags(tmp_path, capsys) -> None:
    cfg = tmp_path / "exp.toml"
    cfg.write_text('[task]\nname = "delayed-xor"\n[task.params]\nn_train = 32\nn_valid = 16\nn_test = 16\n'
                   '[model]\nhidden = [4]\n[train]\nrule = "drtp"\nlr = 0.01\nepochs = 3\noptimizer = "sgd"\n')
    out = tmp_path / "run"
    rc, _, err = _run(capsys, ["train", "--config", str(cfg), "--epochs", "1", "--task-param", "n_test=8",
                               "--quiet", "--out", str(out)])
    assert rc == 0, err
    saved = tomllib.loads((out / "config.toml").read_text())
    assert saved["train"]["lr"] == 0.01 and saved["train"]["optimizer"] == "sgd"  # from the file
    assert saved["train"]["epochs"] == 1  # the flag beats the file
    assert saved["task"]["params"]["n_train"] == 32 and saved["task"]["params"]["n_test"] == 8  # merged
    assert saved["train"]["batch_size"] == 64  # the default
    assert len(_lines(out / "metrics.jsonl")) == 1


def test_resume_to_more_epochs_equals_one_longer_run(tmp_path, capsys) -> None:
    """Data order depends only on (seed, epoch): 1 epoch + resume to 2 == 2 epochs, bit for bit."""
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["train", *TINY, "--rule", "bptt", "--recurrent"]
    assert _run(capsys, [*common, "--epochs", "2", "--out", str(a)])[0] == 0
    assert _run(capsys, [*common, "--epochs", "1", "--out", str(b)])[0] == 0
    rc, _, err = _run(capsys, ["train", "--out", str(b), "--resume", "--epochs", "2", "--quiet"])
    assert rc == 0, err
    _same_state(_load(a / "model.pt")["model"], _load(b / "model.pt")["model"])
    assert _no_timing(_lines(a / "metrics.jsonl")) == _no_timing(_lines(b / "metrics.jsonl"))
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert _no_timing(ra) == _no_timing(rb)


def test_kill_mid_epoch_and_resume_is_bit_identical(tmp_path, capsys) -> None:
    """SIGKILL a training process after a mid-epoch checkpoint, resume it: same parameters, optimizer
    state and metrics as a run that was never interrupted (run in-process meanwhile)."""
    args = ["train", "--task", "delayed-xor", "--task-param", "n_train=640", "--task-param", "n_valid=32",
            "--task-param", "n_test=32", "--hidden", "16", "--recurrent", "--rule", "osttp", "--epochs", "3",
            "--batch-size", "16", "--checkpoint-every", "3", "--threads", "1", "--quiet"]
    ref_dir, kill_dir = tmp_path / "ref", tmp_path / "killed"
    cmd = [sys.executable, "-m", "osttp", *args, "--out", str(kill_dir)]
    victim = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = kill_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    try:
        while True:  # wait for a step checkpoint inside the second epoch
            assert victim.poll() is None, "training finished before it could be killed: make it longer"
            assert time.monotonic() < deadline, "no mid-epoch checkpoint appeared"
            if last.is_file():
                prog = _load(last)["progress"]
                if prog["epoch"] >= 1 and prog["batch"] > 0:
                    break
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL
    prog = _load(last)["progress"]
    assert prog["batch"] > 0 and prog["epoch"] < 3  # really interrupted mid-epoch
    assert not (kill_dir / "results.json").exists()

    resumed = subprocess.Popen([*cmd, "--resume"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert _run(capsys, [*args, "--out", str(ref_dir)])[0] == 0  # the uninterrupted reference
        _, err = resumed.communicate(timeout=300)
    finally:
        if resumed.poll() is None:
            resumed.kill()
    assert resumed.returncode == 0, err

    a, b = _load(ref_dir / "checkpoints" / "last.pt"), _load(kill_dir / "checkpoints" / "last.pt")
    _same_state(a["model"], b["model"])
    _same_state(_load(ref_dir / "model.pt")["model"], _load(kill_dir / "model.pt")["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)
    assert _no_timing(_lines(ref_dir / "metrics.jsonl")) == _no_timing(_lines(kill_dir / "metrics.jsonl"))
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (ref_dir, kill_dir))
    assert _no_timing(ra) == _no_timing(rb)
    assert len(_lines(kill_dir / "metrics.jsonl")) == 3


def test_resume_refuses_a_different_config(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert _run(capsys, ["train", *TINY, "--rule", "osttp", "--epochs", "1", "--out", str(out)])[0] == 0
    before = (out / "config.toml").read_text()
    rc, _, err = _run(capsys, ["train", "--out", str(out), "--resume", "--lr", "0.5"])
    assert rc == 2 and err.count("\n") == 1 and "train.lr" in err
    assert (out / "config.toml").read_text() == before


# ---------------------------------------------------------------------------------------------
# bad input: exit 2, one line, nothing created


def _bad_cases(tmp: Path) -> list[tuple[list[str], str]]:
    ok = [*TINY, "--rule", "osttp"]
    malformed = tmp / "malformed.toml"
    malformed.write_text("[train\nlr = = 1\n")
    unknown_key = tmp / "unknown.toml"
    unknown_key.write_text("[train]\nlrr = 0.1\n")
    wrong_type = tmp / "wrongtype.toml"
    wrong_type.write_text('[train]\nepochs = "ten"\n')
    existing = tmp / "existing"
    existing.mkdir()
    (existing / "something").write_text("x")
    cases = [
        (["train", *TINY, "--rule", "nope"], "unknown rule 'nope'"),
        (["train", *TINY, "--task", "nope", "--rule", "osttp"], "unknown task 'nope'"),
        (["train", *ok, "--cell", "nope"], "unknown cell 'nope'"),
        (["train", *ok, "--epochs", "-1"], "--epochs"),
        (["train", *ok, "--lr", "abc"], "--lr"),
        (["train", *ok, "--lr", "0"], "--lr"),
        (["train", *ok, "--lr", "nan"], "--lr"),
        (["train", *ok, "--batch-size", "0"], "--batch-size"),
        (["train", *ok, "--hidden", "8,x"], "--hidden"),
        (["train", *ok, "--schedule", "sometimes"], "schedule"),
        (["train", *ok, "--task-param", "nope=1"], "nope"),
        (["train", *ok, "--task-param", "delay=-2"], "delay"),
        (["train", *ok, "--cell-option", "d=7"], "leak"),
        (["train", *ok, "--optimizer", "rmsprop"], "--optimizer"),
        (["train", *ok, "--momentum", "0.9"], "momentum"),
        (["train", *ok, "--no-such-flag"], "unrecognized"),
        (["train", *ok, "--config", str(tmp / "missing.toml")], "cannot read config"),
        (["train", *ok, "--config", str(malformed)], "not valid TOML"),
        (["train", *ok, "--config", str(unknown_key)], "train.lrr"),
        (["train", *ok, "--config", str(wrong_type)], "epochs"),
        (["train", *ok, "--resume"], "cannot resume"),
        (["train", "--task", "delayed-xor"], "no learning rule"),
        (["compare", *TINY, "--rules", "osttp,nope"], "unknown rule 'nope'"),
        (["compare", *TINY, "--seeds", "0,-1"], "--seeds"),
        (["report", str(tmp / "missing")], "not a directory"),
        (["list", "extra"], "unrecognized"),
        ([], "required"),
    ]
    if not torch.cuda.is_available():
        cases.append((["train", *ok, "--device", "cuda"], "CUDA is not available"))
    return cases


def test_bad_input_exits_2_with_one_line_and_no_run_dir(tmp_path, capsys) -> None:
    for argv, needle in _bad_cases(tmp_path):
        out = tmp_path / "out"
        full = [*argv, "--out", str(out)] if argv and argv[0] in ("train", "compare") else argv
        rc, stdout, err = _run(capsys, full)
        assert rc == 2, (argv, err)
        assert err.count("\n") == 1 and err.startswith("osttp: error: "), (argv, err)
        assert needle in err, (argv, err)
        assert "Traceback" not in err
        assert not out.exists(), argv


def test_existing_dir_and_missing_checkpoint(tmp_path, capsys) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("x")
    rc, _, err = _run(capsys, ["train", *TINY, "--rule", "osttp", "--out", str(existing)])
    assert rc == 2 and err.count("\n") == 1 and "already exists" in err
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt"]

    rc, _, err = _run(capsys, ["train", *TINY, "--rule", "osttp", "--out", str(tmp_path / "none"), "--resume"])
    assert rc == 2 and err.count("\n") == 1 and "cannot resume" in err
    assert not (tmp_path / "none").exists()

    # a run directory whose checkpoints are gone (last.pt alone gone: resume falls back to prev.pt,
    # tests/test_reliability.py)
    run = tmp_path / "run"
    assert _run(capsys, ["train", *TINY, "--rule", "osttp", "--epochs", "1", "--out", str(run)])[0] == 0
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "prev.pt").unlink()
    rc, _, err = _run(capsys, ["train", "--out", str(run), "--resume"])
    assert rc == 2 and err.count("\n") == 1 and "no checkpoint" in err


def test_bad_input_in_a_real_process(tmp_path) -> None:
    """The installed entry point: exit status 2 and exactly one stderr line, no traceback."""
    r = subprocess.run([sys.executable, "-m", "osttp", "train", *TINY, "--rule", "osttp", "--epochs", "-1",
                        "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("osttp: error: argument --epochs")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# divergence


def test_nan_stops_with_exit_3_and_keeps_a_good_checkpoint(tmp_path, capsys) -> None:
    # lr 3e38 (just below float32's max): the first SGD step overflows the weights to Inf
    out = tmp_path / "run"
    rc, _, err = _run(capsys, ["train", *TINY, "--rule", "osttp", "--optimizer", "sgd", "--lr", "3e38",
                               "--epochs", "2", "--checkpoint-every", "1", "--out", str(out)])
    assert rc == 3
    assert err.count("\n") == 1 and err.startswith("osttp: error: training diverged")
    ckpt = _load(out / "checkpoints" / "last.pt")
    assert ckpt["progress"]["global_batches"] < 12
    for name, t in ckpt["model"].items():
        assert torch.isfinite(t).all(), name
    net = osttp.Network.from_sizes(**{k: v for k, v in ckpt["net_config"].items()})
    net.load_state_dict(ckpt["model"])  # loadable into the network it came from
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "diverged" and "diverged" in res["error"]


# ---------------------------------------------------------------------------------------------
# compare, report, list, demo


def _check_png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    img = plt.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_compare_then_report(tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    rc, stdout, err = _run(capsys, ["compare", *TINY, "--rules", "osttp,bptt", "--seeds", "0,1", "--epochs", "2",
                                    "--out", str(out)])
    assert rc == 0, err
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["bptt-s0", "bptt-s1", "osttp-s0", "osttp-s1"]
    for r in runs:
        assert (out / "runs" / r / "results.json").is_file()
        assert len(_lines(out / "runs" / r / "metrics.jsonl")) == 2

    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["rules"]) == ["osttp", "bptt"]  # the order asked for
    for rule, row in summary["rules"].items():
        assert row["runs"] == 2 and row["completed"] == 2
        vals = [json.loads((out / "runs" / f"{rule}-s{s}" / "results.json").read_text())["test_metric"]
                for s in (0, 1)]
        assert row["test_metric"]["mean"] == pytest.approx(sum(vals) / 2)
        assert row["test_metric"]["std"] == pytest.approx(abs(vals[0] - vals[1]) / math.sqrt(2))
    md = (out / "summary.md").read_text()
    assert md.splitlines()[2] == "```" and md.splitlines()[3].startswith("osttp compare --task delayed-xor")
    assert "| osttp | 2/2 |" in md and "| bptt | 2/2 |" in md and "±" in md
    assert "| osttp |" in stdout  # the table is printed too
    _check_png(out / "compare.png")

    # report on the compare dir and on a single train dir
    rc, stdout, err = _run(capsys, ["report", str(out)])
    assert rc == 0, err
    assert (out / "report.md").is_file() and "| bptt | 2/2 |" in (out / "report.md").read_text()
    _check_png(out / "report.png")
    rc, _, err = _run(capsys, ["report", str(out / "runs" / "osttp-s0"), str(out / "runs" / "bptt-s1"),
                               "--out", str(tmp_path / "rep")])
    assert rc == 0, err
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert set(rep["rules"]) == {"osttp", "bptt"} and rep["rules"]["osttp"]["runs"] == 1
    _check_png(tmp_path / "rep" / "report.png")

    # an existing compare dir is refused without --resume; with it, finished runs are kept
    rc, _, err = _run(capsys, ["compare", *TINY, "--rules", "osttp,bptt", "--seeds", "0,1", "--epochs", "2",
                               "--out", str(out)])
    assert rc == 2 and "already exists" in err
    rc, stdout, err = _run(capsys, ["compare", *TINY, "--rules", "osttp,bptt", "--seeds", "0,1", "--epochs", "2",
                                    "--out", str(out), "--resume"])
    assert rc == 0, err
    assert stdout.count("already completed") == 4


def test_list_names_everything(capsys) -> None:
    import osttp.tasks

    rc, stdout, err = _run(capsys, ["list"])
    assert rc == 0 and err == ""
    words = [line.split()[:2] for line in stdout.splitlines()]
    assert [w[1] for w in words if w[0] == "task"] == osttp.tasks.available()
    assert [w[1] for w in words if w[0] == "rule"] == osttp.available_learners()
    assert [w[1] for w in words if w[0] == "cell"] == osttp.available_cells()
    assert "12 steps x 3 inputs" in stdout  # delayed-xor described from the real task


def test_python_m_osttp_list() -> None:
    r = subprocess.run([sys.executable, "-m", "osttp", "list"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "rule  osttp" in r.stdout and "task  smnist-rows" in r.stdout and "cell  snu" in r.stdout


def test_demo_overwrites_only_its_own_directory(tmp_path, capsys) -> None:
    cfg = tmp_path / "demo.toml"
    cfg.write_text('[task]\nname = "delayed-xor"\n[task.params]\nn_train = 32\nn_valid = 16\nn_test = 16\n'
                   '[model]\nhidden = [4]\n[train]\nepochs = 1\nbatch_size = 16\n'
                   '[compare]\nrules = ["osttp", "bptt"]\nseeds = [0]\n')
    out = tmp_path / "demo"
    for _ in range(2):  # the second run replaces the first
        rc, stdout, err = _run(capsys, ["demo", "--config", str(cfg), "--out", str(out), "--quiet"])
        assert rc == 0, err
        assert "| osttp | 1/1 |" in stdout and str(out / "compare.png") in stdout
        assert sorted(p.name for p in (out / "runs").iterdir()) == ["bptt-s0", "osttp-s0"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    rc, _, err = _run(capsys, ["demo", "--config", str(cfg), "--out", str(other), "--quiet"])
    assert rc == 2 and err.count("\n") == 1 and "not made by `osttp demo`" in err
    assert (other / "precious.txt").is_file()


def test_shipped_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    names = sorted(p.name for p in root.glob("*.toml"))
    assert {"demo.toml", "smnist_rows.toml", "jsb_ostl_reference.toml"} <= set(names)
    for p in root.glob("*.toml"):
        cfg = C.resolve((tomlio.read_toml(p), str(p)))
        assert cfg["task"]["name"] in osttp.tasks.available(), p
    jsb = C.resolve((tomlio.read_toml(root / "jsb_ostl_reference.toml"), "jsb"))
    assert jsb["model"] == {**jsb["model"], "cell": "ssnu", "hidden": [150], "recurrent": True,
                            "cell_options": {"g": "identity", "d": 0.4}}
    assert (jsb["train"]["optimizer"], jsb["train"]["lr"], jsb["train"]["batch_size"], jsb["train"]["epochs"],
            jsb["train"]["shuffle"], jsb["train"]["schedule"]) == ("sgd", 5e-4, 1, 100, False, "sequence-end")


def test_toml_writer_round_trips() -> None:
    cfg = {"task": {"name": 'a "quoted" name', "params": {"label": "from:14", "limit": None, "noise": 1e-05}},
           "model": {"hidden": [3, 4], "recurrent": True, "cell_options": {"surrogate": {"kind": "tanh"}}},
           "train": {"lr": 0.1, "big": 1e300, "neg": -2}}
    text = tomlio.dumps_toml(cfg, "header line\nsecond")
    back = tomllib.loads(text)
    assert back["task"] == {"name": 'a "quoted" name', "params": {"label": "from:14", "noise": 1e-05}}
    assert back["model"] == cfg["model"] and back["train"] == cfg["train"]
    assert text.startswith("# header line\n# second\n")


def test_auto_device_is_cpu_without_cuda() -> None:
    from osttp.experiment.build import select_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device("cpu").type == "cpu"


def test_resume_on_a_dataset_task_with_unset_params(tmp_path, capsys) -> None:
    """smnist-rows resolves limit to None, which config.toml leaves out: resume must still match."""
    try:
        osttp.tasks.load("smnist-rows", "valid", limit=1)
    except osttp.DataError as e:
        pytest.skip(f"MNIST files not available: {e}")
    out = tmp_path / "run"
    argv = ["train", "--task", "smnist-rows", "--rule", "osttp", "--hidden", "8", "--batch-size", "16",
            "--max-train-batches", "2", "--eval-batch-size", "64", "--max-valid-batches", "1",
            "--max-test-batches", "1", "--quiet", "--out", str(out)]
    rc, _, err = _run(capsys, [*argv, "--epochs", "1"])
    assert rc == 0, err
    assert "limit" not in tomllib.loads((out / "config.toml").read_text())["task"]["params"]
    rc, _, err = _run(capsys, [*argv, "--epochs", "2", "--resume"])
    assert rc == 0, err
    hist = _lines(out / "metrics.jsonl")
    assert [h["epoch"] for h in hist] == [1, 2] and hist[-1]["valid"]["n_sequences"] == 64
    assert json.loads((out / "results.json").read_text())["test"]["n_sequences"] == 64


def test_differences_ignores_unset_table_entries() -> None:
    a = C.resolve(({"task": {"name": "x", "params": {"limit": None, "label": "last"}}}, "a"))
    b = C.resolve(({"task": {"name": "x", "params": {"label": "last"}}}, "b"))
    assert C.differences(a, b) == []
    b["task"]["params"]["label"] = "every"
    b["train"]["lr"] = 0.5
    assert C.differences(a, b) == ["task.params", "train.lr"]


def test_best_valid_test_params(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc, _, err = _run(capsys, ["train", *TINY, "--rule", "bptt", "--recurrent", "--epochs", "3",
                               "--test-params", "best-valid", "--out", str(out)])
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    vals = [h["valid"]["accuracy"] for h in _lines(out / "metrics.jsonl")]
    assert res["test_params"] == "best-valid"
    assert res["valid_metric"] == max(vals) == res["best_valid_metric"]
    assert res["best_epoch"] == vals.index(max(vals)) + 1
    assert _load(out / "checkpoints" / "best.pt")["epoch"] == res["best_epoch"]


def test_hidden_lr_scale_gives_the_hidden_layers_their_own_learning_rate() -> None:
    from osttp.experiment.build import prepare

    cfg = C.resolve((C.defaults(), "defaults"), ({"task": {"name": "delayed-xor"}, "train": {
        "rule": "osttp", "lr": 2e-3, "hidden_lr_scale": 0.25}, "model": {"hidden": [4]}}, "test"))
    groups = prepare(cfg).backend.optimizer.param_groups
    assert [g["lr"] for g in groups] == [5e-4, 2e-3]
    assert [len(g["params"]) for g in groups] == [2, 2]  # W, b of the layer; weight, bias of the readout
