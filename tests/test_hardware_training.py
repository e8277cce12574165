"""Hardware-in-the-loop training and inference: HardwareTraining, the learner wrapper,
evaluate / evaluate_drift / plot_drift, checkpoints and bad input."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor
from conftest import make_case

import osttp
import osttp.tasks
from osttp.errors import OsttpError
from osttp.hardware import (HardwareForward, HardwareTraining, PCMDevice, evaluate, evaluate_drift,
                            forward_hardware, plot_drift)
from osttp.hardware.crossbar import Crossbar
from osttp.hardware.evaluation import _crossbars

F64 = torch.float64


def batches(case, n: int, seed: int = 0):
    """n batches of random sequences shaped like case.xs (inputs scaled as the case's, labels random)."""
    g = torch.Generator().manual_seed(seed)
    T, B, n_in = case.xs.shape
    C = case.net.n_out
    for _ in range(n):
        xs = torch.rand(T, B, n_in, generator=g, dtype=F64) * 2.0
        ys = torch.randint(0, C, (T, B), generator=g)
        mask = (torch.rand(T, B, generator=g) > 0.3).to(F64)
        yield xs, ys, mask


def train(learner, data) -> None:
    for xs, ys, mask in data:
        learner.reset(xs.shape[1])
        for t in range(xs.shape[0]):
            learner.step(xs[t], ys[t], mask[t])
        learner.apply()


@pytest.mark.parametrize("rule,recurrent,schedule,reads", [("osttp", False, "sequence-end", "auto"),
                                                           ("osttp", True, "per-step", "auto"),
                                                           ("bptt", True, "sequence-end", "auto"),
                                                           ("osttp", True, "sequence-end", "per-sample"),
                                                           ("bptt", True, "sequence-end", "per-sample")])
def test_ideal_device_reproduces_float_training(rule: str, recurrent: bool, schedule: str, reads: str) -> None:
    """Acceptance: the ideal device equals plain torch SGD with the same learner (float64, rel <= 1e-12),
    whichever way the training reads the crossbars."""
    case = make_case("snu", [4, 8, 6, 3], recurrent, seed=0, T=12, B=3)
    net_ref, net_hw = case.net, copy.deepcopy(case.net)
    lr = 0.05
    ref = osttp.make_learner(rule, net_ref, optimizer=torch.optim.SGD(net_ref.parameters(), lr=lr),
                             schedule=schedule)
    hw = HardwareTraining(net_hw, device="ideal", lr=lr, seed=1, read_noise=reads)
    learner = hw.wrap(osttp.make_learner(rule, net_hw, optimizer=hw.optimizer, schedule=schedule))
    start = {k: p.detach().clone() for k, p in net_ref.named_parameters()}
    train(ref, batches(case, 4))
    train(learner, batches(case, 4))
    hw_params = dict(net_hw.named_parameters())
    for name, p in net_ref.named_parameters():
        assert not torch.equal(p.detach(), start[name]), f"{name} did not train"
        err = float((hw_params[name].detach() - p.detach()).abs().max())
        assert err <= 1e-12 * max(1.0, float(p.detach().abs().max())), f"{name}: {err}"
    assert hw.pulse_counts()["total"]["pulses"] == 0


def test_ideal_hardware_forward_equals_network_forward() -> None:
    case = make_case("snu", [4, 8, 6, 3], True, seed=0, T=12, B=3)
    hw = HardwareTraining(case.net, device="ideal")
    bars = _crossbars(case.net, hw, 1e5, True, True, torch.Generator().manual_seed(0), None, 12.0)
    out = forward_hardware(case.net, case.xs, bars)
    with torch.no_grad():
        ref = case.net(case.xs)
    assert float((out - ref).abs().max()) <= 1e-12


def pcm_setup(recurrent: bool = True, scheme: str = "mixed-precision", **kw):
    case = make_case("snu", [4, 8, 6, 3], recurrent, seed=0, T=12, B=3)
    hw = HardwareTraining(case.net, device="pcm", scheme=scheme, lr=0.2, seed=0, **kw)
    return case, hw


def test_pcm_training_counts_pulses_per_layer_and_changes_weights() -> None:
    case, hw = pcm_setup()
    learner = hw.wrap(osttp.make_learner("osttp", case.net, optimizer=hw.optimizer))
    assert learner.read_mode == "per-step"
    programmed = {k: v.clone() for k, v in hw.read(read_noise=False).items()}
    bias0 = case.net.layers[0].b.detach().clone()
    train(learner, batches(case, 4))
    counts = hw.pulse_counts()
    assert set(counts) == {"layers.0.W", "layers.0.H", "layers.1.W", "layers.1.H", "readout.weight", "total"}
    for name in hw.hardware_names:
        c = counts[name]
        assert c["pulses"] > 0 and c["synapses"] == dict(case.net.named_parameters())[name].numel()
        assert c["per_synapse"] == pytest.approx(c["pulses"] / c["synapses"])
        assert not torch.equal(hw.read(read_noise=False)[name], programmed[name]), name
    assert counts["total"]["pulses"] == sum(counts[n]["pulses"] for n in hw.hardware_names)
    assert not torch.equal(case.net.layers[0].b.detach(), bias0)  # digital SGD trains the biases
    assert hw.digital_names == ["layers.0.b", "layers.1.b", "readout.bias"]


def test_read_noise_makes_forward_passes_differ_ideal_does_not() -> None:
    case, hw = pcm_setup()
    ideal = HardwareTraining(copy.deepcopy(case.net), device="ideal")
    for h, noisy in ((hw, True), (ideal, False)):
        outs = [forward_hardware(h.net, case.xs,
                                 _crossbars(h.net, h, 0.0, False, True, torch.Generator().manual_seed(s),
                                            None, 12.0)) for s in (0, 1)]
        assert (not torch.equal(outs[0], outs[1])) is noisy
        r1, r2 = h.read(), h.read()
        assert all((not torch.equal(r1[k], r2[k])) is noisy for k in r1)


def test_wrapper_loads_a_fresh_read_per_step_online_and_per_sequence_bptt() -> None:
    case, hw = pcm_setup()
    online = hw.wrap(osttp.make_learner("osttp", case.net, optimizer=hw.optimizer))
    W = case.net.layers[0].W
    programmed = W.detach().clone()
    online.reset(3)
    seen = []
    for t in range(3):
        online.step(case.xs[t], case.ys[t])
        seen.append(online.reads["layers.0.W"].clone())
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    assert torch.equal(W.detach(), programmed)  # the parameter keeps the programmed weight; reads go to matvec

    case, hw = pcm_setup()
    bptt = hw.wrap(osttp.make_learner("bptt", case.net, optimizer=hw.optimizer))
    assert bptt.read_mode == "per-sequence"
    for _ in range(2):
        bptt.reset(3)
        first = bptt.reads["layers.0.W"].clone()
        assert not torch.equal(first, hw.read(read_noise=False)["layers.0.W"])  # a noisy read, not the program
        for t in range(case.xs.shape[0]):
            bptt.step(case.xs[t], case.ys[t])
            assert torch.equal(bptt.reads["layers.0.W"], first)  # fixed within the sequence: BPTT's graph stays valid
        bptt.apply()
    assert hw.pulse_counts()["total"]["pulses"] > 0
    strict = HardwareTraining(case.net, device="pcm", read_noise="per-step")
    with pytest.raises(OsttpError, match="per-step"):
        strict.wrap(osttp.make_learner("bptt", case.net, optimizer=strict.optimizer))


def test_drift_evaluation_rows_and_plot(tmp_path) -> None:
    task = osttp.tasks.load("delayed-xor", "test", n_test=64)
    net = osttp.Network.from_sizes([task.n_in, 16, task.n_out], cell="snu", recurrent=True, seed=0)
    hw = HardwareTraining(net, device="pcm", lr=0.01, seed=0, auto_w_max=2.0)
    times = [1.0, 100.0, 1e4]
    rows = evaluate_drift(net, hw, task, times=times, batch_size=32)
    assert [(r["t_s"], r["compensation"]) for r in rows] == [(t, c) for t in times for c in (False, True)]
    assert all(set(r) >= {"t_s", "compensation", "accuracy", "loss"} for r in rows)
    assert math.isfinite(rows[1]["accuracy"]) and 0.0 <= rows[1]["accuracy"] <= 1.0
    # Noise-free reads: drift shrinks the outputs' scale, compensation restores the programmed weights.
    bars = {c: _crossbars(net, hw, 1e6, c, False, torch.Generator(), None, 12.0) for c in (False, True)}
    programmed = hw.read(read_noise=False)
    w = {c: bars[c]["layers.0.W"].mean for c in bars}
    assert float(w[False].abs().sum()) < 0.7 * float(programmed["layers.0.W"].abs().sum())
    assert torch.allclose(w[True], programmed["layers.0.W"], rtol=1e-5, atol=1e-6)
    # Reproducible: evaluation draws from its own seeded stream.
    assert evaluate(net, hw, task, t=10.0, batch_size=32) == evaluate(net, hw, task, t=10.0, batch_size=32)
    # HardwareForward is the same forward as a module (xs -> outputs) for any evaluation loop.
    b = next(task.batches(32))
    model = HardwareForward(net, hw, t=10.0)
    metric = task.new_metric()
    metric.update(model(b.xs), b)
    assert model(b.xs).shape == (task.T, 32, task.n_out) and math.isfinite(metric.compute()["accuracy"])
    with pytest.raises(OsttpError, match="xs must have shape"):
        model(b.xs[..., :1])
    path = plot_drift(rows, str(tmp_path / "drift.png"), reference={"float": 0.5})
    assert (tmp_path / "drift.png").stat().st_size > 1000 and path.endswith("drift.png")


def test_io_quantisation() -> None:
    task = osttp.tasks.load("delayed-xor", "test", n_test=64)
    net = osttp.Network.from_sizes([task.n_in, 16, task.n_out], cell="rnn", recurrent=True, seed=0,
                                   dtype=F64)
    hw = HardwareTraining(net, device="ideal")
    xs = next(task.batches(16, dtype=F64)).xs
    with torch.no_grad():
        ref = net(xs)
    outs = {}
    for bits in (None, 8, 3):
        bars = _crossbars(net, hw, 0.0, False, True, torch.Generator(), bits, 12.0)
        outs[bits] = forward_hardware(net, xs, bars)
    assert float((outs[None] - ref).abs().max()) <= 1e-12
    err8, err3 = (float((outs[b] - ref).abs().max()) for b in (8, 3))
    assert 0 < err8 < err3
    # One crossbar: the input is rounded to 255 levels of its row's max, the output to the ADC grid
    # (step = bound/127 in units of in_scale·w_max) within half a step of the product of quantised input.
    W = net.layers[0].W.detach()
    bar = Crossbar(W, None, 0.5, torch.Generator(), 8, 2.0)
    x = torch.rand(5, task.n_in, generator=torch.Generator().manual_seed(0), dtype=F64) * 3
    out = bar(x)
    scale = x.abs().amax(-1, keepdim=True)
    xq = torch.round(x / scale * 127) / 127 * scale
    unit, step = scale * 0.5, 2.0 / 127
    assert torch.allclose(out / (unit * step), torch.round(out / (unit * step)), atol=1e-9)
    assert bool(((out - xq @ W.T).abs() <= unit * step / 2 + 1e-12).all())
    assert math.isfinite(evaluate(net, hw, task, io_bits=8)["accuracy"])


def test_state_dict_round_trip_continues_identically() -> None:
    case, hw = pcm_setup(scheme="stochastic")
    learner = hw.wrap(osttp.make_learner("osttp", case.net, optimizer=hw.optimizer))
    data = list(batches(case, 4, seed=3))
    train(learner, data[:2])
    state, net_state = copy.deepcopy(hw.state_dict()), copy.deepcopy(case.net.state_dict())
    train(learner, data[2:])
    expected = {k: p.detach().clone() for k, p in case.net.named_parameters()}

    net2 = osttp.Network.from_sizes([4, 8, 6, 3], cell="snu", recurrent=True, seed=5, dtype=F64)
    hw2 = HardwareTraining(net2, device="pcm", scheme="stochastic", lr=0.5, seed=9)
    net2.load_state_dict(net_state)
    hw2.load_state_dict(state)
    learner2 = hw2.wrap(osttp.make_learner("osttp", net2, optimizer=hw2.optimizer))
    train(learner2, data[2:])
    for k, p in net2.named_parameters():
        assert torch.equal(p.detach(), expected[k]), k
    assert hw2.pulse_counts() == hw.pulse_counts()
    with pytest.raises(OsttpError, match="differs"):
        HardwareTraining(net2, device=PCMDevice(nu=0.0)).load_state_dict(state)


def test_weights_selection_and_digital_optimizer() -> None:
    case = make_case("snu", [4, 8, 6, 3], True, seed=0, T=12, B=3)
    hw = HardwareTraining(case.net, device="quantized", weights=("layers.1.W", "readout.weight"),
                          digital_optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-3))
    assert hw.hardware_names == ["layers.1.W", "readout.weight"]
    assert "layers.0.W" in hw.digital_names and isinstance(hw.digital, torch.optim.Adam)
    learner = hw.wrap(osttp.make_learner("osttp", case.net, optimizer=hw.optimizer))
    train(learner, batches(case, 2))
    assert len(hw.optimizer.param_groups) == 2 and hw.optimizer.steps == 2


def test_bad_input() -> None:
    case = make_case("snu", [4, 8, 6, 3], False, seed=0, T=12, B=3)
    net = case.net
    bad = [dict(device="flash"), dict(scheme="adam"), dict(read_noise="sometimes"), dict(lr=-1.0),
           dict(weights=("b",)), dict(weights=("layers.9.W",)), dict(weights="W"), dict(weights=()),
           dict(weights=("H",)),  # a feed-forward net has no H: selects nothing
           dict(seed=1.5), dict(digital_optimizer=torch.optim.SGD(net.parameters(), lr=0.1)),
           dict(digital_optimizer="sgd")]
    for kw in bad:
        with pytest.raises(OsttpError):
            HardwareTraining(net, **kw)
    with pytest.raises(OsttpError):
        HardwareTraining("net")  # type: ignore[arg-type]
    hw = HardwareTraining(net, device="pcm")
    with pytest.raises(OsttpError, match="optimizer=hardware.optimizer"):
        hw.wrap(osttp.make_learner("osttp", net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1)))
    with pytest.raises(OsttpError, match="learner"):
        hw.wrap("osttp")
    task = osttp.tasks.load("delayed-xor", "test", n_test=8)
    net2 = osttp.Network.from_sizes([task.n_in, 8, task.n_out], seed=0)
    hw2 = HardwareTraining(net2, device="pcm")
    for kw in (dict(times=[]), dict(times=[-1.0]), dict(drift_compensation=True), dict(batch_size=0),
               dict(io_bits=1)):
        with pytest.raises(OsttpError):
            evaluate_drift(net2, hw2, task, **kw)
    with pytest.raises(OsttpError, match="another network"):
        evaluate(net, hw2, task)
    with pytest.raises(OsttpError, match="t ="):
        evaluate(net2, hw2, task, t=float("nan"))


@pytest.mark.parametrize("rule", ["osttp", "bptt"])
def test_training_forward_goes_through_the_quantised_crossbar_matvec(rule: str, monkeypatch) -> None:
    """With io_bits the learner's own step multiplies through the converters (DAC/ADC), as inference does."""
    import osttp.hardware.io as hio
    import osttp.hardware.training as htr

    case, _ = pcm_setup()
    hw = HardwareTraining(case.net, device="pcm", io_bits=8, seed=3)
    learner = hw.wrap(osttp.make_learner(rule, case.net, optimizer=hw.optimizer))
    calls: list[tuple[str, int]] = []
    real = hio.quantize_output

    def spy(out, in_scale, full_scale, bits, bound):
        calls.append((out.shape[-1], bits))
        return real(out, in_scale, full_scale, bits, bound)

    monkeypatch.setattr(hio, "quantize_output", spy)
    learner.reset(3)
    o = learner.step(case.xs[0], case.ys[0])
    n_matrices = len(hw.hardware_names)
    assert len(calls) == n_matrices and all(bits == 8 for _, bits in calls)
    # The same step without converters differs: the quantisation acts on the training forward pass.
    case2, _ = pcm_setup()
    hw2 = HardwareTraining(case2.net, device="pcm", io_bits=None, seed=3)
    learner2 = hw2.wrap(osttp.make_learner(rule, case2.net, optimizer=hw2.optimizer))
    learner2.reset(3)
    o2 = learner2.step(case2.xs[0], case2.ys[0])
    assert not torch.equal(o, o2)
    assert htr.converted_matvec is hio.converted_matvec


def test_per_sample_reads_give_every_sequence_its_own_read() -> None:
    """read_noise="per-sample": the product of each sequence at each step is its own read. Oracle: over
    many copies of one input the product's mean is x W_prog^T and its variance x^2 sigma^2^T (sigma the
    array's weight_std, the devices' independent read noises), within 5 standard errors; control: the
    per-step mode gives every copy the same product. The ideal device reads exactly."""
    case, hw = pcm_setup(read_noise="per-sample")
    learner = hw.wrap(osttp.make_learner("osttp", case.net, optimizer=hw.optimizer))
    learner.reset(3)
    W = case.net.layers[0].W
    x = case.xs[0, :1].expand(20000, -1)
    out = learner.matvec("layers.0.W", W, x).detach()
    array = hw.synapses.arrays["layers.0.W"]
    mean, var = x[0] @ W.detach().T, (x[0] ** 2) @ (array.weight_std() ** 2).T
    assert torch.equal(W.detach(), array.weight(read_noise=False))  # the parameter: the programmed weight
    n = x.shape[0]
    assert float(((out.mean(0) - mean) / (var / n).sqrt()).abs().max()) < 5.0
    assert float(((out.var(0) - var) / (var * math.sqrt(2.0 / n))).abs().max()) < 5.0
    assert float(var.min()) > 0
    _, shared = pcm_setup(read_noise="per-step")
    control = shared.wrap(osttp.make_learner("osttp", shared.net, optimizer=shared.optimizer))
    control.reset(3)
    control.step(case.xs[0], case.ys[0])
    same = control.matvec("layers.0.W", shared.net.layers[0].W, x[:50])
    assert torch.equal(same, same[:1].expand_as(same))
    ideal = HardwareTraining(copy.deepcopy(case.net), device="ideal", read_noise="per-sample")
    exact = ideal.wrap(osttp.make_learner("osttp", ideal.net, optimizer=ideal.optimizer))
    exact.reset(3)
    Wi = ideal.net.layers[0].W
    assert torch.equal(exact.matvec("layers.0.W", Wi, x[:50]), x[:50] @ Wi.detach().T)


@pytest.mark.parametrize("rule", ["osttp", "bptt"])
def test_per_sample_training_sees_a_read_per_sequence(rule: str) -> None:
    """A batch of three copies of one sequence: under per-sample reads the copies' outputs differ (each
    its own reads), under the batch-shared modes they are equal (the control); training still programs."""
    outs = {}
    for mode in ("per-sample", "auto"):
        case, hw = pcm_setup(read_noise=mode)
        learner = hw.wrap(osttp.make_learner(rule, case.net, optimizer=hw.optimizer))
        xs = case.xs[:, :1].expand(-1, 3, -1).contiguous()
        learner.reset(3)
        outs[mode] = torch.stack([learner.step(xs[t], case.ys[t, :1].expand(3)) for t in range(xs.shape[0])])
        learner.apply()
        assert hw.pulse_counts()["total"]["pulses"] > 0
    o = outs["per-sample"].detach()
    assert not torch.equal(o[:, 0], o[:, 1]) and not torch.equal(o[:, 1], o[:, 2])
    c = outs["auto"].detach()
    assert torch.equal(c[:, 0], c[:, 1]) and torch.equal(c[:, 1], c[:, 2])


def test_per_sample_bptt_gradient_is_autograd_with_the_reads_noise_as_constants(monkeypatch) -> None:
    """BPTT under per-sample reads against autograd on a modified graph (float64): the same network with
    the programmed weights, every crossbar product x W^T plus the noise this run drew for it, held
    constant. Equal gradients (<= 1e-12) for every parameter; control: without the noise they differ."""
    import osttp.hardware.crossbar as crossbar

    case, hw = pcm_setup(read_noise="per-sample")
    noise: dict[int, list[Tensor]] = {}
    real_call = crossbar.Crossbar.__call__

    def record(self, x):  # type: ignore[no-untyped-def]
        out = real_call(self, x)
        noise.setdefault(id(self.mean), []).append((out - x @ self.mean.T).detach())
        return out

    monkeypatch.setattr(crossbar.Crossbar, "__call__", record)
    grads: list[dict[str, Tensor]] = []
    real_step = osttp.hardware.HardwareOptimizer.step

    def capture(self, *a, **k):  # type: ignore[no-untyped-def]
        grads.append({n: p.grad.detach().clone() for n, p in case.net.named_parameters()})
        return real_step(self, *a, **k)

    monkeypatch.setattr(osttp.hardware.HardwareOptimizer, "step", capture)
    ref_net = copy.deepcopy(case.net)  # the programmed weights, before the update
    learner = hw.wrap(osttp.make_learner("bptt", case.net, optimizer=hw.optimizer))
    train(learner, [(case.xs, case.ys, case.mask)])
    by_name = {n: noise[id(bar.mean)] for n, bar in learner.crossbars.items() if id(bar.mean) in noise}
    assert set(by_name) == set(hw.hardware_names)
    for with_noise in (True, False):
        queues = {n: list(v) for n, v in by_name.items()}
        net = copy.deepcopy(ref_net)
        sgd = torch.optim.SGD(net.parameters(), lr=0.0)
        ref = osttp.make_learner("bptt", net, optimizer=sgd)
        ref.matvec = lambda name, w, x: x @ w.T + (queues[name].pop(0) if with_noise else 0.0)
        seen: list[dict[str, Tensor]] = []
        monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: seen.append(
            {n: p.grad.detach().clone() for n, p in net.named_parameters()}))
        train(ref, [(case.xs, case.ys, case.mask)])
        monkeypatch.undo()
        errs = [float((seen[0][n] - grads[0][n]).abs().max()) for n in grads[0]]
        if with_noise:
            assert all(not q for q in queues.values())  # every recorded product replayed, in order
            assert max(errs) <= 1e-12, errs
        else:
            assert max(errs) > 1e-6, errs


def test_averaged_reads_divide_the_read_noise_variance() -> None:
    """HardwareForward(reads=K): every product the mean of K independent reads, variance x^2 sigma^2^T / K
    (oracle within 5 standard errors over many copies of one input); K = 1 is the control."""
    case, hw = pcm_setup()
    array = hw.synapses.arrays["layers.0.W"]
    x = case.xs[0, :1].expand(20000, -1)
    var1 = (x[0] ** 2) @ (array.weight_std() ** 2).T
    n = x.shape[0]
    for k in (1, 4):
        bars = _crossbars(case.net, hw, 0.0, False, True, torch.Generator().manual_seed(k), None, 12.0, reads=k)
        out = bars["layers.0.W"](x)
        assert float(((out.var(0) - var1 / k) / (var1 / k * math.sqrt(2.0 / n))).abs().max()) < 5.0, k
        assert float(((out.mean(0) - x[0] @ array.weight(read_noise=False).T) / (var1 / k / n).sqrt()).abs().max()) < 5.0
    with pytest.raises(OsttpError, match="reads"):
        HardwareForward(case.net, hw, reads=0)
