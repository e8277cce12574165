"""osttp.streams: the prequential score is from before the update, sources are reproducible, a
stream and a learner resume mid-stream bit for bit, bad stream parameters are one clear error."""
from __future__ import annotations

import io
from typing import Any

import pytest
import torch

import osttp
import osttp.tasks
from osttp.errors import OsttpError
from osttp.streams import (DataStream, PermutedInputs, Prequential, RemappedLabels, Sequence, Source,
                           SwitchedTasks, TaskSource, can_snapshot, prequential, with_drift)


class CycleSource(Source):
    """Sequences of T steps with zero input and the constant class n % C: a network whose hidden
    layer stays silent outputs exactly its readout bias c, so o_t is a function of c alone."""

    name, n_in, n_out, target_kind, loss = "cycle", 2, 3, "class", "ce"
    metric_name, higher_is_better = "accuracy", True

    def __init__(self, T: int = 3, lengths: list[int] | None = None) -> None:
        self.fixed_length = None if lengths else T
        self.T, self.lengths = T, lengths

    def sequence(self, lane: int, n: int) -> Sequence:
        T = self.lengths[n % len(self.lengths)] if self.lengths else self.T
        return Sequence(torch.zeros(T, self.n_in), torch.full((T,), n % self.n_out, dtype=torch.long),
                        torch.ones(T), 0)

    def describe(self) -> dict[str, Any]:
        return {"kind": "cycle"}


# (rule, schedule, window): the per-step rules of the issue, truncated BPTT updating every k steps,
# and BPTT over whole sequences
RULES = [("osttp", "per-step", None), ("eprop-rand", "per-step", None), ("ostl", "per-step", None),
         ("drtp", "per-step", None), ("tbptt", None, 3), ("bptt", "sequence-end", None)]


def _fast_learner(rule: str, schedule: str | None, window: int | None) -> osttp.Learner:
    """A learner whose readout bias jumps to the class of its last update (SGD lr 50 on the readout,
    0 on the hidden layer, so the hidden layer stays silent on the zero input)."""
    net = osttp.Network.from_sizes([2, 4, 3], cell="snu", seed=0)
    groups = [{"params": list(net.readout.parameters()), "lr": 50.0},
              {"params": [p for n, p in net.named_parameters() if not n.startswith("readout")], "lr": 0.0}]
    kw: dict[str, Any] = {"window": window} if window else {"schedule": schedule}
    return osttp.make_learner(rule, net, optimizer=torch.optim.SGD(groups), **kw)


@pytest.mark.parametrize("rule, schedule, window", RULES)
def test_score_is_from_before_the_update(rule: str, schedule: str | None, window: int | None) -> None:
    learner = _fast_learner(rule, schedule, window)
    net = learner.net
    run = Prequential(learner, DataStream(CycleSource(T=3)), window=1000, record_every=1000)
    biases: list[torch.Tensor] = []
    step = learner.step

    def spy(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
        biases.append(net.readout.bias.detach().clone())  # the parameters this step is predicted with
        return step(x, y, m)

    learner.step = spy  # type: ignore[method-assign]
    steps = 30
    run.run(steps)
    biases.append(net.readout.bias.detach().clone())
    ys = [(t // 3) % 3 for t in range(steps)]
    scored = run.meter.ring[:steps]
    before = [float(int(biases[t].argmax()) == ys[t]) for t in range(steps)]
    after = [float(int(biases[t + 1].argmax()) == ys[t]) for t in range(steps)]
    updated = [t for t in range(steps) if not torch.equal(biases[t], biases[t + 1])]
    assert scored == before  # the score is the prediction from the parameters before the step
    assert updated, "the learner never updated: the test shows nothing"
    assert all(after[t] == 1.0 for t in updated)  # after its update the learner predicts the step right
    assert any(scored[t] == 0.0 for t in updated)  # ... but the scores are from before: not perfect
    if schedule == "per-step":
        assert set(range(0, steps, 3)) <= set(updated)  # (later steps may round to no change)
        assert scored[3:] == [0.0, 1.0, 1.0] * 9  # first step of each sequence: the old class
    else:  # windowed / sequence-end: updated at sequence ends only, never scored as updated
        assert updated == list(range(2, steps, 3)) and sum(scored[3:]) == 0.0  # (c = 0 first: class 0)


def _xor(split: str = "valid", **params: Any) -> osttp.tasks.Task:
    return osttp.tasks.load("delayed-xor", split, n_valid=64, **params)


def _steps(stream: DataStream, n: int) -> list[tuple]:
    return [(s.x.clone(), s.y.clone(), s.mask.clone(), s.ends, s.drift, s.phase) for s in
            (stream.next() for _ in range(n))]


def _same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(all(torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v
                                        for u, v in zip(p, q)) for p, q in zip(a, b))


def test_sources_are_deterministic_per_seed() -> None:
    task = _xor()
    a, b, c = TaskSource(task, seed=1), TaskSource(task, seed=1), TaskSource(task, seed=2)
    items = lambda s, lane: [s.item(lane, n) for n in range(64)]  # noqa: E731
    assert items(a, 0) == items(b, 0) and items(a, 0) != items(c, 0) and items(a, 0) != items(a, 1)
    assert sorted(items(a, 0)) == list(range(64))  # a pass visits every sequence once
    assert items(a, 0) != [a.item(0, n) for n in range(64, 128)]  # the next pass in a new order
    assert [TaskSource(task, order="file").item(0, n) for n in range(3)] == [0, 1, 2]
    for make in (lambda s: PermutedInputs(TaskSource(task, seed=s), 4, s),
                 lambda s: RemappedLabels(TaskSource(task, seed=s), 4, s),
                 lambda s: SwitchedTasks(TaskSource(task, seed=s),
                                         TaskSource(osttp.tasks.load("store-recall", "valid", bits=1, n_valid=64),
                                                    seed=s), 4, s)):
        s1 = _steps(DataStream(make(3), batch=2), 12 * 20)
        assert _same(s1, _steps(DataStream(make(3), batch=2), 12 * 20))
        assert not _same(s1, _steps(DataStream(make(4), batch=2), 12 * 20))
        assert [p[4] for p in s1].count(True) == 4 and s1[12 * 4][4] and s1[12 * 4][5] == 1  # phase every 4 seqs


def test_drift_scenarios_change_what_they_say() -> None:
    task = _xor()
    base = TaskSource(task, seed=0)
    perm = PermutedInputs(base, every=2, seed=0)
    assert perm.axis == "inputs"
    s0, s2, s4 = base.sequence(0, 2), perm.sequence(0, 2), perm.sequence(0, 4)
    assert torch.equal(perm.sequence(0, 1).xs, base.sequence(0, 1).xs)  # phase 0: the task itself
    p2 = perm._perm(1, 3)
    assert torch.equal(s2.xs, s0.xs[:, p2]) and torch.equal(s2.ys, s0.ys) and s2.phase == 1
    assert not torch.equal(perm._perm(2, 3), p2) or not torch.equal(s4.xs, base.sequence(0, 4).xs[:, p2])
    steps = PermutedInputs(base, every=2, seed=0, axis="steps").sequence(0, 2)
    assert torch.equal(torch.sort(steps.xs, 0).values, torch.sort(s0.xs, 0).values)
    remap = RemappedLabels(base, every=2, seed=5)
    maps = {int(p): None for p in range(1, 6)}
    for p in maps:
        seq = remap.sequence(0, 2 * p)
        assert torch.equal(seq.xs, base.sequence(0, 2 * p).xs)
        maps[p] = remap._cache[p].tolist()
    assert any(m != [0, 1] for m in maps.values())
    other = TaskSource(osttp.tasks.load("cue-accumulation", "valid", n_valid=64), seed=0)
    sw = SwitchedTasks(base, other, every=2, seed=0)
    assert sw.fixed_length is None and sw.sequence(0, 2).xs.shape[0] == 34 and sw.sequence(0, 4).xs.shape[0] == 12


def test_stream_position_seeks_mid_sequence() -> None:
    src = RemappedLabels(TaskSource(_xor(), seed=0), every=3, seed=0)
    a = DataStream(src, batch=3)
    _steps(a, 41)
    pos = a.position()
    rest = _steps(a, 60)
    b = DataStream(RemappedLabels(TaskSource(_xor(), seed=0), every=3, seed=0), batch=3).seek(pos)
    assert b.index == 41 and _same(rest, _steps(b, 60))


def _build(rule: str, schedule: str, window: int | None = None) -> Prequential:
    task = _xor("train", n_train=256)
    net = osttp.Network.from_sizes([3, 16, 2], cell="snu", recurrent=True, seed=0)
    kw: dict[str, Any] = {"window": window} if rule == "tbptt" else {"schedule": schedule}
    learner = osttp.make_learner(rule, net, optimizer=torch.optim.Adam(net.parameters(), lr=1e-2), **kw)
    src = with_drift(TaskSource(task, seed=0), "permute", 5, 0)
    return Prequential(learner, DataStream(src, batch=2), window=50, record_every=25)


@pytest.mark.parametrize("rule, schedule", [("osttp", "per-step"), ("eprop-rand", "per-step"),
                                            ("tbptt", "every-k"), ("bptt", "sequence-end")])
def test_resume_mid_stream_is_bit_identical(rule: str, schedule: str) -> None:
    full = _build(rule, schedule, 7)
    full.run(400)
    part = _build(rule, schedule, 7)
    part.run(131)  # mid-sequence, and mid-window for tbptt
    part.run_until_saveable(100)
    assert part.ready_to_save and (rule not in ("tbptt", "bptt") or part.steps > 131)
    buf = io.BytesIO()
    torch.save(part.state_dict(), buf)
    buf.seek(0)
    resumed = _build(rule, schedule, 7)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    resumed.run(400 - resumed.steps)
    for (n, a), (_, b) in zip(full.learner.net.state_dict().items(), resumed.learner.net.state_dict().items()):
        assert torch.equal(a, b), n
    assert full.meter.state_dict() == resumed.meter.state_dict()
    assert full.meter.records and full.summary()["n_drifts"] == 6  # 33 sequences of 12 steps, 5 per phase


def test_bptt_holds_a_graph_until_the_sequence_ends() -> None:
    run = _build("bptt", "sequence-end")
    run.run(5)
    assert not can_snapshot(run.learner)
    with pytest.raises(OsttpError, match="autograd graph"):
        run.state_dict()
    assert run.run_until_saveable(100) == 7 and run.ready_to_save  # sequences of 12 steps


def test_prequential_function_and_nll_on_multilabel_targets() -> None:
    class Notes(CycleSource):
        target_kind, loss, metric_name, higher_is_better, n_out = "multilabel", "bce", "nll", False, 3

        def sequence(self, lane: int, n: int) -> Sequence:
            seq = super().sequence(lane, n)
            return seq._replace(ys=torch.nn.functional.one_hot(seq.ys, 3).to(torch.float32))

    net = osttp.Network.from_sizes([2, 4, 3], cell="snu", seed=0)
    out = prequential(osttp.make_learner("osttp", net, optimizer=torch.optim.SGD(net.parameters(), lr=0.0),
                                         schedule="per-step"), DataStream(Notes()), 12, record_every=4)
    # lr 0: o = c = 0 at every step, so every step's NLL is 3 log 2 (one hot, two cold keys at p = 1/2)
    assert out["cumulative"] == pytest.approx(3 * torch.log(torch.tensor(2.0)).item(), rel=1e-6)
    assert [r["step"] for r in out["records"]] == [4, 8, 12] and out["events"] == 12


def test_recovery_and_drop_after_a_drift_point() -> None:
    from osttp.streams import PrequentialMeter

    m = PrequentialMeter("accuracy", True, window=4, tolerance=0.1, record_every=100)
    values = [1, 1, 1, 1] + [0, 0, 0, 1, 1, 1, 1]
    for t, v in enumerate(values):
        if t == 4:
            m.drift(t, 1)
        m.add([float(v)], [0.0])
        m.end_step(t)
    d = m.summary()["drifts"][0]
    assert d["pre"] == 1.0 and d["drop"] == 0.75 and d["recovered"]
    assert d["recovery_steps"] == 7  # the window is all ones again at step 10 = drift step 4 + 7 - 1


def test_bad_stream_parameters_are_one_clear_error() -> None:
    task = _xor()
    src = TaskSource(task)
    net = osttp.Network.from_sizes([3, 4, 2], seed=0)
    cases = [
        (lambda: with_drift(src, "rotate", 3, 0), "drift scenario"),
        (lambda: with_drift(src, "permute", None, 0), "needs `every`"),
        (lambda: with_drift(src, "permute", 0, 0), "drift every = 0"),
        (lambda: with_drift(src, "switch", 3, 0), "needs `other`"),
        (lambda: SwitchedTasks(src, TaskSource(osttp.tasks.load("store-recall", "valid", bits=2)), 3, 0), "n_in"),
        (lambda: RemappedLabels(type("M", (CycleSource,), {"target_kind": "multilabel"})(), 3, 0), "classification"),
        (lambda: PermutedInputs(type("O", (CycleSource,), {"n_in": 1})(), 3, 0, axis="inputs"), "input channel"),
        (lambda: PermutedInputs(CycleSource(lengths=[2, 3]), 3, 0, axis="steps"), "different lengths"),
        (lambda: TaskSource(task, order="random"), "stream order"),
        (lambda: DataStream(src, batch=0), "batch"),
        (lambda: Prequential(osttp.make_learner("osttp", net), DataStream(src), window=0), "PrequentialMeter window"),
        (lambda: Prequential(osttp.make_learner("osttp", net), DataStream(src), score="first"), "Prequential score"),
        (lambda: Prequential(osttp.make_learner("osttp", osttp.Network.from_sizes([3, 4, 5])), DataStream(src)),
         "outputs"),
        (lambda: Prequential(osttp.make_learner("osttp", osttp.Network.from_sizes([2, 4, 3])),
                             DataStream(CycleSource(lengths=[2, 3]), batch=2), reset_at_boundary=True),
         "equal length"),
        (lambda: DataStream(src).seek({"index": 0, "lanes": [[0, 99]]}), "outside its sequence"),
    ]
    for call, needle in cases:
        with pytest.raises(OsttpError) as e:
            call()
        msg = str(e.value)
        assert needle in msg and "\n" not in msg, msg
