"""`osttp train` trains exactly what the library loop a user would write trains: the same weights to
the bit after a few JSB chorales (one at a time, file order, SGD), for BPTT, truncated BPTT (the
graph cut mid-sequence) and osttp. Guards the training driver's and the learner's fast paths."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import pytest

import osttp
import osttp.tasks
from cli_helpers import run_cli

DATA = os.environ.get("OSTTP_DATA", "")
pytestmark = pytest.mark.skipif(not (DATA and (Path(DATA) / "jsb/jsb-chorales-quarter.json").is_file()),
                                reason="JSB file not found: set OSTTP_DATA (see docs/data.md)")

JSB_ARGS = ["--config", "configs/jsb_ostl_reference.toml", "--task-param", "limit=3", "--epochs", "1",
            "--max-valid-batches", "1", "--max-test-batches", "1", "--threads", "1", "--quiet"]


def _library_loop(rule: str, schedule: str) -> tuple[dict[str, torch.Tensor], list[float]]:
    """configs/jsb_ostl_reference.toml written against the library: reset, steps, apply per chorale."""
    train = osttp.tasks.load("jsb", "train", limit=3)
    net = osttp.Network.from_sizes([88, 150, 88], cell="ssnu", recurrent=True, seed=0,
                                   cell_options={"g": "identity", "d": 0.4})
    learner = osttp.make_learner(rule, net, optimizer=torch.optim.SGD(net.parameters(), lr=5e-4),
                                 schedule=schedule, loss="bce")
    losses = []
    for b in train.batches(1, shuffle=False):
        learner.reset(1)
        learner.steps(b.xs, b.ys, b.mask)
        learner.apply()
        losses.append(float(learner.loss_sum))
    return net.state_dict(), losses


@pytest.mark.parametrize("rule,schedule", [("bptt", "sequence-end"), ("bptt", "every-16"),
                                           ("osttp", "sequence-end")])
def test_cli_trains_the_same_weights_as_the_library_loop(tmp_path, capsys, monkeypatch, rule: str,
                                                         schedule: str) -> None:
    threads = torch.get_num_threads()
    monkeypatch.chdir(__file__.rsplit("/tests/", 1)[0])  # the config path is relative to the repository
    try:
        rc, _, err = run_cli(capsys, ["train", *JSB_ARGS, "--rule", rule, "--schedule", schedule,
                                      "--out", str(tmp_path / "run")])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0, err
    cli_state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model"]
    lib_state, losses = _library_loop(rule, schedule)
    assert cli_state.keys() == lib_state.keys()
    for k in lib_state:
        assert torch.equal(cli_state[k], lib_state[k]), k
    initial = osttp.Network.from_sizes([88, 150, 88], cell="ssnu", recurrent=True, seed=0,
                                       cell_options={"g": "identity", "d": 0.4}).state_dict()
    assert not torch.equal(initial["layers.0.W"], lib_state["layers.0.W"])  # it did train
    assert all(loss > 0 for loss in losses) and len(losses) == 3
