"""Bad input raises ValueError naming the value and what was expected."""
from __future__ import annotations

import pytest
import torch

import osttp


@pytest.fixture
def net() -> osttp.Network:
    return osttp.Network.from_sizes([3, 5, 4], cell="snu", dtype=torch.float64)


def _xs(T: int = 4, B: int = 2, n: int = 3, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.rand(T, B, n, dtype=dtype)


@pytest.mark.parametrize("rule", ["osttp", "bptt"])
@pytest.mark.parametrize("xs, ys, match", [
    (_xs(n=5), torch.zeros(4, 2, dtype=torch.int64), r"xs has shape \(4, 2, 5\); expected \(\*, \*, 3\)"),
    (_xs(dtype=torch.float32), torch.zeros(4, 2, dtype=torch.int64), "dtype torch.float32; expected"),
    (_xs(), torch.zeros(4, 3, dtype=torch.int64), r"ys \(class indices\) has shape \(4, 3\); expected \(4, 2\)"),
    (_xs(), torch.full((4, 2), 4), r"label 4; expected class indices in \[0, 3\]"),
    (_xs(), torch.full((4, 2), -1), r"label -1"),
    (_xs(), torch.zeros(4, 2, 5, dtype=torch.float64), r"expected \(4, 2, 4\)"),
    (_xs(), torch.zeros(4, 2, dtype=torch.bool), "expected int64 class indices or float target vectors"),
    (_xs().index_fill(0, torch.tensor([1]), float("nan")), torch.zeros(4, 2, dtype=torch.int64), "NaN"),
])
def test_sequence_gradients_rejects_bad_input(net, rule, xs, ys, match) -> None:
    with pytest.raises(ValueError, match=match):
        osttp.make_learner(rule, net).sequence_gradients(xs, ys)


def test_bad_mask_and_bad_step_input(net) -> None:
    learner = osttp.make_learner("osttp", net)
    with pytest.raises(ValueError, match="mask has shape"):
        learner.sequence_gradients(_xs(), torch.zeros(4, 2, dtype=torch.int64), torch.ones(3, 2))
    with pytest.raises(ValueError, match="reset"):
        learner.step(torch.rand(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.int64))
    learner.reset(2)
    with pytest.raises(ValueError, match=r"x_t has shape \(3, 3\); expected \(2, 3\)"):
        learner.step(torch.rand(3, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="y_t contains label 9"):
        learner.step(torch.rand(2, 3, dtype=torch.float64), torch.full((2,), 9))
    with pytest.raises(ValueError, match="m_t has negative, NaN"):
        learner.step(torch.rand(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.int64),
                     torch.tensor([1.0, float("nan")], dtype=torch.float64))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        learner.reset(0)


@pytest.mark.parametrize("call, match", [
    (lambda net: osttp.make_learner("nope", net), r"unknown learner 'nope'; expected one of bptt, tbptt"),
    (lambda net: osttp.make_learner("osttp", net, schedule="sometimes"), "unknown schedule 'sometimes'"),
    (lambda net: osttp.make_learner("osttp", net, schedule="every-k", k=0), "k must be an integer >= 1, got 0"),
    (lambda net: osttp.make_learner("osttp", net, loss="mse"), "unknown loss 'mse'"),
    (lambda net: osttp.make_learner("tbptt", net, window=0), "tbptt window must be an integer >= 1, got 0"),
    (lambda net: osttp.make_learner("osttp", net, optimizer="adam"), "optimizer must be"),
    (lambda net: osttp.Network.from_sizes([3, 5, 4], cell="izhikevich"), r"unknown cell 'izhikevich'; expected one of"),
    (lambda net: osttp.Network.from_sizes([3, 4]), "at least|>= 1 hidden layer"),
    (lambda net: osttp.Network.from_sizes([3, 0, 4]), "positive"),
    (lambda net: osttp.Network.from_sizes([3, 5, 4], cell_options={"d": 1.5}), r"leak d must be in \[0, 1\], got 1.5"),
    (lambda net: osttp.Network.from_sizes([3, 5, 4], cell_options={"bogus": 1}), "bad option for cell 'snu'"),
    (lambda net: osttp.make_cell("lif", surrogate={"kind": "erf"}), "unknown surrogate 'erf'"),
])
def test_unknown_names_and_bad_values(net, call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call(net)
