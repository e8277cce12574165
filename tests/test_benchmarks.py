"""The benchmark scripts' own code, on the CPU: benchmarks/gpu.py's sequence that a CUDA graph records
(against the learner's public path) and its whole run but the device; the snnTorch peer of
benchmarks/step_time.py (skipped, with the reason, without snnTorch)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import osttp
from conftest import make_case

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu  # noqa: E402
import peer_snntorch  # noqa: E402
import step_time  # noqa: E402


@pytest.mark.parametrize("rule", ["bptt", "osttp", "osttp-fact"])
def test_the_recorded_sequence_updates_as_the_learner_does(rule: str) -> None:
    """SequenceGraph.run (what a capture records: unchecked steps from static inputs) and an update from
    its accumulators move the parameters exactly as reset + steps + apply."""
    case = make_case("snu", [4, 6, 3], True, seed=81, T=7, B=3)
    ys = case.ys
    params = []
    for graphed in (False, True):
        net = osttp.Network.from_sizes([4, 6, 3], cell="snu", recurrent=True, seed=81, dtype=torch.float64)
        learner = osttp.make_learner(rule, net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
        for _ in range(2):  # two batches: the second replays on reused state
            if graphed:
                seq = gpu.SequenceGraph(learner, 7, 3, 4, "cpu")
                seq.load(case.xs, ys)
                seq.run()
                gpu._apply_accumulated(learner)
            else:
                learner.reset(3)
                learner.steps(case.xs, ys)
                learner.apply()
        params.append({k: v.detach().clone() for k, v in net.named_parameters()})
    assert params[0].keys() == params[1].keys()
    for k in params[0]:
        torch.testing.assert_close(params[0][k], params[1][k], rtol=1e-12, atol=1e-14)
    moved = osttp.Network.from_sizes([4, 6, 3], cell="snu", recurrent=True, seed=81, dtype=torch.float64)
    assert any(not torch.equal(p, params[0][k]) for k, p in moved.named_parameters())


def test_sequence_graph_refuses_capture_off_cuda() -> None:
    case = make_case("snu", [4, 6, 3], False, seed=82, T=3, B=2)
    seq = gpu.SequenceGraph(osttp.make_learner("osttp", case.net), 3, 2, 4, "cpu")
    with pytest.raises(RuntimeError, match="CUDA"):
        seq.capture()


def test_gpu_script_runs_on_the_cpu_but_for_the_graphs(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(gpu, "EPOCH_RULES", ["bptt", "osttp"])
    monkeypatch.setitem(step_time.GROUPS["target"], "rules", ["bptt", "osttp"])
    monkeypatch.setitem(step_time.GROUPS["spoken"], "rules", ["bptt", "osttp-fact"])
    # the groups' kinds of network (feed-forward; recurrent soft-reset SNU with an integrator) at toy
    # sizes: the test checks the script, not the machine
    monkeypatch.setitem(step_time.GROUPS["target"], "hidden", [8, 8])
    monkeypatch.setitem(step_time.GROUPS["spoken"], "hidden", [8])
    monkeypatch.setitem(step_time.GROUPS["spoken"], "n_in", 12)
    out = tmp_path / "gpu.json"
    assert gpu.main(["--device", "cpu", "--repeats", "1", "--batches", "1", "--T", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [(r["group"], r["rule"]) for r in res["table"]] == [("target", "bptt"), ("target", "osttp"),
                                                                ("spoken", "bptt"), ("spoken", "osttp-fact")]
    assert all(r["ms_per_step"] > 0 for r in res["table"])
    assert [(r["rule"], r["mode"]) for r in res["epochs"]] == [("bptt", "eager"), ("osttp", "eager")]
    assert "not CUDA" in res["graphs"]


def test_gpu_script_without_cuda_says_so_in_one_line(capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert gpu.main(["--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0]


def test_the_snntorch_peer_learns_and_is_timed_beside_our_rules() -> None:
    reason = peer_snntorch.available()
    if reason is not None:
        pytest.skip(reason)
    torch.manual_seed(0)
    xs = (torch.rand(6, 4, 10) < 0.3).float()
    ys = torch.randint(0, 10, (6, 4))
    net = peer_snntorch.SnnTorchNet([10, 8, 10])
    loss = net.sequence_loss(xs, ys)
    loss.backward()
    assert float(loss.detach()) > 0
    assert float(net.lifs[0].recurrent.weight.grad.abs().sum()) > 0  # BPTT reaches the recurrent weights
    assert float(net.fcs[0].weight.grad.abs().sum()) > 0
    spoken = {**{k: step_time.GROUPS["spoken"][k] for k in step_time.NET_KEYS}, "hidden": [8], "n_in": 10}
    rows = step_time.time_group(["bptt", "osttp-fact", peer_snntorch.NAME], 3, 2, spoken, "cpu", 1)
    peer = rows[-1]
    assert peer["rule"] == peer_snntorch.NAME and peer["ms_per_step"] > 0 and peer["ratio_to_peer"] == 1.0
    assert rows[1]["ratio_to_peer"] > 0
