"""The library under bad input: dataset readers that refuse malformed files, API errors as OsttpError,
and the numerics of half-precision networks."""
from __future__ import annotations

import gzip
import json
import resource
import struct
import time

import pytest
import torch

import osttp
from osttp.errors import DataError, OsttpError
from osttp.tasks import data


# ---------------------------------------------------------------------------------------------
# JSB JSON: malformed files


@pytest.mark.parametrize("content,needle", [
    (b"[" * 200000, "nested too deeply"),
    (b'{"train": [[[' + b"1" * 5000 + b"]]], \"valid\": [], \"test\": []}", "integer literal"),
])
def test_jsb_hostile_json_is_a_data_error(tmp_path, content, needle) -> None:
    p = tmp_path / data.JSB_FILE
    p.parent.mkdir(parents=True)
    p.write_bytes(content)
    data.clear_cache()
    with pytest.raises(DataError, match=needle):
        data.load_jsb(tmp_path)


# ---------------------------------------------------------------------------------------------
# MNIST: a gzip that expands past the file's size


def test_mnist_gz_bomb_stops_at_the_announced_size(tmp_path) -> None:
    """A valid label header for 60000 labels followed by 200 MB of zeros: refused after reading about
    60 kB of payload, not after decompressing everything."""
    rel = "mnist/train-labels-idx1-ubyte.gz"
    p = tmp_path / rel
    p.parent.mkdir(parents=True)
    with gzip.open(p, "wb", compresslevel=1) as f:
        f.write(struct.pack(">II", 0x00000801, 60000))
        chunk = b"\0" * (1 << 20)
        for _ in range(200):
            f.write(chunk)
    data.clear_cache()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="more than the 60008 bytes"):
        data._load_idx(rel, 0x00000801, (60000,), tmp_path)
    assert time.perf_counter() - t0 < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 50 * 1024  # KiB: far below 200 MB


# ---------------------------------------------------------------------------------------------
# API errors


def _net(dtype=torch.float32, seed: int = 0) -> osttp.Network:
    return osttp.Network.from_sizes([3, 5, 2], cell="snu", seed=seed, dtype=dtype)


def test_inputs_on_another_device() -> None:
    learner = osttp.make_learner("osttp", _net())
    learner.reset(2)
    with pytest.raises(OsttpError, match="device"):
        learner.step(torch.zeros(2, 3, device="meta"), torch.zeros(2, dtype=torch.long))


def test_network_converted_after_the_learner_was_built() -> None:
    net = _net()
    learner = osttp.make_learner("bptt", net)
    net.double()
    with pytest.raises(OsttpError, match="new learner"):
        learner.reset(2)


def test_reset_with_an_impossible_batch() -> None:
    learner = osttp.make_learner("osttp", _net())
    with pytest.raises(OsttpError, match="batch_size = 1000000000000"):
        learner.reset(10**12)
    learner.reset(2)  # still usable
    learner.step(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))


def _grads_under(rule: str, inference: str) -> dict[str, torch.Tensor]:
    """One sequence's gradient, with the steps (inference="steps") or only the data
    (inference="data") made under torch.inference_mode(), or neither ("none")."""
    g = torch.Generator().manual_seed(3)
    net = osttp.Network.from_sizes([3, 5, 2], cell="snu", recurrent=True, seed=0, dtype=torch.float64)
    learner = osttp.make_learner(rule, net)
    with torch.inference_mode(inference != "none"):
        xs = torch.rand(6, 2, 3, generator=g, dtype=torch.float64)
        ys = torch.randint(0, 2, (6, 2), generator=g)
    with torch.inference_mode(inference == "steps"):
        return learner.sequence_gradients(xs, ys)


def test_bptt_under_inference_mode_is_an_osttp_error() -> None:
    with pytest.raises(OsttpError, match="inference_mode"):
        _grads_under("bptt", "steps")


@pytest.mark.parametrize("rule,inference", [("bptt", "data"), ("osttp", "data"), ("osttp", "steps"),
                                            ("ostl-exact", "steps")])
def test_inference_mode_gives_the_same_gradient(rule, inference) -> None:
    """BPTT trains on tensors made under inference_mode; online rules need no graph and run inside it."""
    ref, got = _grads_under(rule, "none"), _grads_under(rule, inference)
    assert any(g.abs().max() > 0 for g in ref.values())
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=0, atol=0)


def test_bptt_state_nbytes_tracks_the_memory_the_graph_takes() -> None:
    """A B=1 net of 12 units stores ~300 B of data a step but ~24 kB of autograd nodes: the old count
    (data only, each weight counted at every step) reported 1/20 of the RSS growth. Measured in a
    fresh process: in this one, memory that earlier tests freed absorbs the graph without RSS growing."""
    import subprocess
    import sys

    code = """
import gc
from pathlib import Path
import torch, osttp
def rss():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096
torch.manual_seed(0)
net = osttp.Network.from_sizes([10, 12, 5], cell="snu", recurrent=True, seed=0)
learner = osttp.make_learner("bptt", net)
learner.reset(1)
xs, ys = torch.rand(3000, 1, 10), torch.randint(0, 5, (3000, 1))
for t in range(20):
    learner.step(xs[t], ys[t])
gc.collect()
rss0, rep0 = rss(), learner.state_nbytes()
for t in range(20, 3000):
    learner.step(xs[t], ys[t])
gc.collect()
print((learner.state_nbytes() - rep0) / (rss() - rss0))
learner.apply()
print(learner.state_nbytes())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    ratio, after = float(out[0]), int(out[1])
    assert 0.5 < ratio < 2.0, ratio
    assert after < 10_000  # the graph is released at apply


def test_optimizer_over_another_network_is_refused() -> None:
    other = _net(seed=1)
    with pytest.raises(OsttpError, match="none of the network's parameters"):
        osttp.make_learner("osttp", _net(), optimizer=torch.optim.SGD(other.parameters(), lr=0.1))


def test_int_labels_mixed_with_float_targets() -> None:
    learner = osttp.make_learner("osttp", _net())
    learner.reset(2)
    learner.step(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(OsttpError, match="one kind of target per sequence"):
        learner.step(torch.zeros(2, 3), torch.zeros(2, 2))
    learner.reset(2)
    learner.step(torch.zeros(2, 3), torch.zeros(2, 2))  # a new sequence may use the other kind


@pytest.mark.parametrize("value,needle", [(float("nan"), "expected a kind name"), ("bogus", "unknown surrogate"),
                                          ({"kind": "tanh", "width": 2}, "expected keys kind and slope")])
def test_surrogate_option_of_the_wrong_kind(value, needle) -> None:
    """Found by benchmarks/fuzz.py: `--cell-option surrogate=nan` was accepted and crashed in the first step."""
    with pytest.raises(OsttpError, match=needle):
        osttp.make_cell("snu", surrogate=value)


def test_surrogate_option_by_name() -> None:
    from osttp.cells import Surrogate
    assert osttp.make_cell("lif", surrogate="tanh").surrogate == Surrogate("tanh")


def test_feedback_scale_beyond_the_dtype() -> None:
    with pytest.raises(OsttpError, match="feedback_scale = 1e\\+308"):
        osttp.Network.from_sizes([3, 5, 2], feedback_scale=1e308)


def test_cell_option_of_the_wrong_type() -> None:
    with pytest.raises(OsttpError, match="option d = \"abc\": expected a finite number"):
        osttp.make_cell("snu", d="abc")


# ---------------------------------------------------------------------------------------------
# numerics


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_same_seed_same_initial_weights_in_every_dtype(dtype) -> None:
    a, b = _net(torch.float32), _net(dtype)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p.detach().to(dtype), q.detach()), name
    for name, buf in a.named_buffers():  # feedback B_l: drawn in float64, so equal after rounding to the lower dtype
        low = torch.float32 if dtype == torch.float64 else dtype
        assert torch.equal(buf.to(low), dict(b.named_buffers())[name].to(low)), name


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 0.02), (torch.bfloat16, 0.1)])
def test_half_precision_gradients_accumulate_in_float32(dtype, tol) -> None:
    """T = 2000 steps of a leaky RNN: the gradient of the half-precision network is within rounding
    of the forward pass of the float64 one (before: relative error 0.075 fp16 / 0.80 bf16)."""
    T, B = 2000, 4
    g = torch.Generator().manual_seed(0)
    xs = torch.rand(T, B, 3, generator=g)
    ys = torch.randint(0, 2, (T, B), generator=g)
    grads = {}
    for dt in (torch.float64, dtype):
        net = osttp.Network.from_sizes([3, 6, 2], cell="rnn", seed=0, dtype=dt)
        learner = osttp.make_learner("osttp", net)
        grads[dt] = learner.sequence_gradients(xs.to(dt), ys)
        assert all(v.dtype == torch.promote_types(dt, torch.float32) for v in grads[dt].values())
    for name, ref in grads[torch.float64].items():
        err = (grads[dtype][name].double() - ref).norm() / ref.norm()
        assert err < tol, (name, float(err))


def test_loss_sum_is_float32_in_half_precision() -> None:
    learner = osttp.make_learner("osttp", _net(torch.float16))
    learner.reset(2)
    for _ in range(3):
        learner.step(torch.zeros(2, 3, dtype=torch.float16), torch.zeros(2, dtype=torch.long))
    assert learner.loss_sum.dtype == torch.float32
    json.dumps(float(learner.loss_sum))
