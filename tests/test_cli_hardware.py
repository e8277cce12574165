"""`osttp train/compare/report` with simulated synapses ([hardware], --synapse ...): files, pulses,
drift, the ideal device against float SGD, resume, bad input. Tiny synthetic runs, no data files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import osttp
from osttp.experiment.backend import _range_factors
from osttp.experiment.cli import main
from osttp.experiment.lr_schedule import cosine_factor

TINY = ["--task", "delayed-xor", "--task-param", "n_train=64", "--task-param", "n_valid=16",
        "--task-param", "n_test=16", "--hidden", "8", "--batch-size", "16", "--quiet", "--rule", "osttp",
        "--lr", "0.05", "--device", "cpu"]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_pcm_run_writes_pulses_and_drift(tmp_path, capsys):
    out = tmp_path / "pcm"
    rc, _, err = _run(capsys, ["train", *TINY, "--synapse", "pcm", "--update", "mixed-precision",
                               "--epochs", "1", "--out", str(out)])
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    assert (res["synapse"], res["update"], res["optimizer"], res["w_range"]) == ("pcm", "mixed-precision", "sgd", 4.0)
    assert res["pulses"]["total"]["pulses"] > 0 and res["pulses"]["total"]["per_synapse"] > 0
    assert {"layers.0.W", "readout.weight"} <= set(res["pulses"])
    rows = json.loads((out / "drift.json").read_text())
    assert {r["compensation"] for r in rows} == {False, True}
    assert len({r["t_s"] for r in rows}) == 8 and len(rows) == 16
    assert all("accuracy" in r for r in rows)
    assert (out / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = res["drift"]
    assert d["metric"] == "accuracy" and d["first"]["t_s"] == 1.0 and d["last"]["t_s"] == 2592000.0
    assert set(d["last"]) == {"t_s", "compensation", "no_compensation"}
    assert "hardware" in _load(out / "model.pt") and _load(out / "checkpoints" / "last.pt")["hardware"]
    # report: one drift plot per run with drift.json, named in the markdown
    rc, stdout, err = _run(capsys, ["report", str(out)])
    assert rc == 0, err
    md = (out / "report.md").read_text()
    assert "## Drift" in md and "(report-drift-pcm.png)" in md
    assert (out / "report-drift-pcm.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "report.json").read_text())["drift"][0]["run"] == "pcm"
    assert "drift plots:" in stdout


def test_recipe_keys_reach_the_devices_and_the_scheme(tmp_path, capsys):
    """readout_w_range, n_pairs, accumulator_threshold, max_pulses, train_reads and eval_reads set what
    HardwareTraining and the evaluation build;
    results.json carries the pulse statistics and the conductance histograms before and after."""
    out = tmp_path / "recipe"
    rc, _, err = _run(capsys, ["train", *TINY, "--synapse", "pcm", "--w-range", "1.5", "--readout-w-range", "8",
                               "--n-pairs", "3", "--accumulator-threshold", "0.5", "--max-pulses", "2",
                               "--train-reads", "per-sample", "--eval-reads", "4", "--decision", "mean", "--task-param", "n_test=256", "--epochs", "1",
                               "--out", str(out)])
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    dev = res["hardware"]["device_params"]
    assert all(d["n_pairs"] == 3 for d in dev.values())
    assert (res["readout_w_range"], res["accumulator_threshold"], res["max_pulses"]) == (8.0, 0.5, 2)
    assert res["train_reads"] == res["hardware"]["read_noise"] == "per-sample" and res["eval_reads"] == 4
    net = osttp.Network.from_sizes([3, 8, 8, 2], cell="lif", seed=0)
    h = {"w_range": 1.5, "readout_w_range": 8.0}
    assert _range_factors(net, h) == {"layers.0.W": 1.5, "layers.1.W": 1.5, "readout.weight": 8.0}
    assert _range_factors(net, {"w_range": 1.5, "readout_w_range": None})["readout.weight"] == 1.5
    assert _range_factors(net, {"w_range": 0.0, "readout_w_range": None}) is None
    p = res["pulses"]["total"]
    assert p["per_synapse_per_sample"] == pytest.approx(p["pulses"] / (p["synapses"] * 64))
    assert 0 < p["fraction_written_per_update"] <= p["fraction_ever_written"] <= 1
    assert res["pulses"]["layers.0.W"]["max_per_synapse"] <= 2 * p["update_steps"]  # the budget holds
    # the drift curve reads the class as the test metric does (decision mean): at 1 s nothing has drifted
    # and the evaluation seed is the test's, so the uncompensated point is the test metric itself
    rows = json.loads((out / "drift.json").read_text())
    first = next(r for r in rows if r["t_s"] == 1.0 and not r["compensation"])
    assert first["accuracy"] == res["test_metric"]
    h = res["conductance_histograms"]
    assert set(h) == {"before", "after"} and set(h["after"]) == set(dev)
    w0 = h["after"]["layers.0.W"]
    assert sum(w0["g_pos"]) == sum(w0["g_neg"]) == 3 * res["pulses"]["layers.0.W"]["synapses"]


def test_no_drift_eval_and_float_runs_have_no_drift(tmp_path, capsys):
    out = tmp_path / "q"
    rc, _, err = _run(capsys, ["train", *TINY, "--synapse", "quantized", "--bits", "6", "--update", "stochastic",
                               "--no-drift-eval", "--epochs", "1", "--out", str(out)])
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["synapse"] == "quantized" and res["bits"] == 6 and "drift" not in res
    assert res["hardware"]["device_params"]["layers.0.W"]["bits"] == 6
    assert not (out / "drift.json").exists()
    out = tmp_path / "f"
    assert _run(capsys, ["train", *TINY, "--optimizer", "sgd", "--epochs", "1", "--out", str(out)])[0] == 0
    res = json.loads((out / "results.json").read_text())
    assert res["synapse"] == "float" and "pulses" not in res and not (out / "drift.json").exists()


def test_ideal_device_reproduces_float_sgd(tmp_path, capsys):
    """The ideal device writes ΔW = -lr·grad exactly and the biases get digital SGD: the same training as
    float SGD up to rounding. Not bit-identical: the device adds the rounded ΔW = -lr·grad, torch's SGD
    fuses p.add_(grad, alpha=-lr) (one rounding instead of two), so the runs differ by about one ulp."""
    a, b = tmp_path / "float", tmp_path / "ideal"
    assert _run(capsys, ["train", *TINY, "--optimizer", "sgd", "--epochs", "2", "--out", str(a)])[0] == 0
    assert _run(capsys, ["train", *TINY, "--synapse", "ideal", "--epochs", "2", "--out", str(b)])[0] == 0
    ma, mb = _load(a / "model.pt")["model"], _load(b / "model.pt")["model"]
    assert ma.keys() == mb.keys()
    for k in ma:
        assert (ma[k] - mb[k]).abs().max() <= 1e-6, k
    assert any(not torch.equal(ma[k], mb[k]) for k in ma)  # if this fails they became bit-identical: say so
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert ra["test_loss"] == pytest.approx(rb["test_loss"], rel=1e-5)


def test_cosine_schedule_reaches_the_devices(tmp_path, capsys, monkeypatch):
    """train.lr_schedule = cosine on a hardware run: every update the crossbars and the digital biases
    receive is made at the scheduled rate. Oracle: the ideal device under cosine equals float SGD under
    cosine (as the constant-rate runs do above), and differs from the ideal device at a constant rate
    (the control: the schedule changed the writes). On PCM, each step's rates as the synapses read them."""
    cos = ["--optimizer", "sgd", "--epochs", "2", "--lr-schedule", "cosine"]
    fl, ideal, const = tmp_path / "float", tmp_path / "ideal", tmp_path / "const"
    assert _run(capsys, ["train", *TINY, *cos, "--out", str(fl)])[0] == 0
    assert _run(capsys, ["train", *TINY, *cos, "--synapse", "ideal", "--out", str(ideal)])[0] == 0
    assert _run(capsys, ["train", *TINY, "--epochs", "2", "--synapse", "ideal", "--out", str(const)])[0] == 0
    mf, mi, mc = (_load(d / "model.pt")["model"] for d in (fl, ideal, const))
    for k in mf:
        assert (mf[k] - mi[k]).abs().max() <= 1e-6, k
    assert max((mi[k] - mc[k]).abs().max().item() for k in mi) > 1e-3
    seen: list[list[float]] = []
    real = osttp.hardware.HardwareOptimizer.step

    def step(self, *a, **k):  # type: ignore[no-untyped-def]
        seen.append([self.synapses.param_groups[0]["lr"], *(g["lr"] for g in self.digital.param_groups)])
        return real(self, *a, **k)

    monkeypatch.setattr(osttp.hardware.HardwareOptimizer, "step", step)
    rc, _, err = _run(capsys, ["train", *TINY, *cos, "--synapse", "pcm", "--no-drift-eval",
                               "--out", str(tmp_path / "pcm")])
    assert rc == 0, err
    batches = 2 * 64 // 16
    assert len(seen) == batches
    for k, rates in enumerate(seen):
        assert rates == [0.05 * cosine_factor(k / batches)] * 2, (k, rates)
    assert seen[-1][0] < 0.05 * 0.2  # the control: the rate did fall


def test_resume_pcm_equals_uninterrupted(tmp_path, capsys):
    a, b = tmp_path / "two", tmp_path / "resumed"
    args = ["train", *TINY, "--synapse", "pcm", "--no-drift-eval"]
    assert _run(capsys, [*args, "--epochs", "2", "--out", str(a)])[0] == 0
    assert _run(capsys, [*args, "--epochs", "1", "--out", str(b)])[0] == 0
    rc, _, err = _run(capsys, [*args, "--epochs", "2", "--out", str(b), "--resume", "--drift-eval"])
    assert rc == 0, err  # drift_eval may change on resume
    ma, mb = _load(a / "model.pt"), _load(b / "model.pt")
    for k in ma["model"]:
        assert torch.equal(ma["model"][k], mb["model"][k]), k
    for n, arr in ma["hardware"]["arrays"].items():
        for k, v in arr["array"].items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, mb["hardware"]["arrays"][n]["array"][k]), (n, k)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert ra["pulses"] == rb["pulses"] and ra["pulses"]["total"]["pulses"] > 0
    assert ra["test_metric"] == rb["test_metric"] and "drift" in rb and "drift" not in ra


@pytest.mark.parametrize("argv, needle", [
    (["--synapse", "nope"], "--synapse"),
    (["--synapse", "pcm", "--update", "nope"], "--update"),
    (["--synapse", "pcm", "--optimizer", "adam"], "train.optimizer"),
    (["--synapse", "pcm", "--optimizer", "sgd", "--momentum", "0.9"], "momentum"),
    (["--synapse", "pcm", "--test-params", "best-valid"], "test_params"),
    (["--synapse", "pcm", "--w-range", "-1"], "--w-range"),
    (["--synapse", "quantized", "--bits", "1"], "--bits"),
    (["--synapse", "pcm", "--update", "stochastic", "--accumulator-threshold", "0.5"], "accumulator_threshold"),
    (["--synapse", "pcm", "--update", "sign", "--max-pulses", "2"], "max_pulses"),
    (["--synapse", "pcm", "--w-range", "0", "--readout-w-range", "8"], "readout_w_range"),
    (["--synapse", "pcm", "--readout-w-range", "1e-5"], "readout_w_range"),
    (["--synapse", "pcm", "--n-pairs", "0"], "--n-pairs"),
    (["--synapse", "pcm", "--train-reads", "sometimes"], "--train-reads"),
    (["--synapse", "pcm", "--eval-reads", "0"], "--eval-reads"),
    (["--synapse", "pcm", "--accumulator-threshold", "0"], "--accumulator-threshold"),
])
def test_bad_hardware_input(tmp_path, capsys, argv, needle):
    out = tmp_path / "run"
    rc, _, err = _run(capsys, ["train", *TINY, *argv, "--epochs", "1", "--out", str(out)])
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("osttp: error:") and needle in err, err
    assert not out.exists()


def test_config_file_hardware_table_and_compare(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[hardware]\nsynapse = "pcm"\nupdate = "sign"\nw_range = 0\ndrift_eval = false\n')
    out = tmp_path / "cmp"
    rc, _, err = _run(capsys, ["compare", *[a for a in TINY if a not in ("--rule", "osttp")], "--config", str(cfg),
                               "--rules", "osttp,bptt", "--epochs", "1", "--out", str(out)])
    assert rc == 0, err
    for rule in ("osttp", "bptt"):
        res = json.loads((out / "runs" / f"{rule}-s0" / "results.json").read_text())
        assert (res["synapse"], res["update"], res["w_range"]) == ("pcm", "sign", 0.0)
    bad = tmp_path / "bad.toml"
    bad.write_text('[hardware]\nsynapse = "pcm"\n[train]\noptimizer = "adam"\n')
    rc, _, err = _run(capsys, ["train", *TINY, "--config", str(bad), "--out", str(tmp_path / "x")])
    assert rc == 2 and "train.optimizer" in err and str(bad) in err
