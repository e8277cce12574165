"""Cells: the forward follows docs/math.md §3 literally, and each hand-derived local derivative equals
autograd through the cell's own element-wise step (so traces and BPTT use one surrogate)."""
from __future__ import annotations

import pytest
import torch

import osttp
from osttp.cells import LayerState, make_cell

CELLS = osttp.available_cells()


def _inputs(cell, B: int = 3, n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k = cell.n_states
    I = torch.randn(B, n, generator=g, dtype=torch.float64) * 1.5
    s_prev = torch.rand(B, n, k, generator=g, dtype=torch.float64) * 2.0
    y_prev = (torch.rand(B, n, generator=g) > 0.5).to(torch.float64)
    if cell.name in ("ssnu", "rnn"):
        y_prev = torch.rand(B, n, generator=g, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64) * 0.3 + cell.bias_init
    return I, s_prev, y_prev, b


@pytest.mark.parametrize("name", CELLS)
def test_local_derivatives_equal_autograd(name: str) -> None:
    cell = make_cell(name)
    I, s_prev, y_prev, b = (t.requires_grad_(True) for t in _inputs(cell))
    s = cell.dynamics(I, s_prev, y_prev, b)
    loc = cell.local(I.detach(), s_prev.detach(), y_prev.detach(), s.detach(), b.detach())
    k = cell.n_states
    for a in range(k):
        gI, gs, gy, gb = torch.autograd.grad(s[..., a].sum(), (I, s_prev, y_prev, b), retain_graph=True,
                                             allow_unused=True)
        gI, gs, gy = (torch.zeros_like(t) if g is None else g for g, t in ((gI, I), (gs, s_prev), (gy, y_prev)))
        assert torch.allclose(loc.fI[..., a], gI, atol=1e-14)
        assert torch.allclose(loc.Fs[..., a, :], gs, atol=1e-14)
        assert torch.allclose(loc.Fy[..., a], gy, atol=1e-14)
        # the unit's own b: per-sample partial (autograd sums over the batch)
        fb_sum = loc.fb[..., a].sum(0)
        assert torch.allclose(fb_sum, gb if gb is not None else torch.zeros_like(fb_sum), atol=1e-14)
    s_leaf = s.detach().requires_grad_(True)
    y = cell.output(s_leaf, b)
    gs, gb = torch.autograd.grad(y.sum(), (s_leaf, b), allow_unused=True)
    assert torch.allclose(loc.os, gs, atol=1e-14)
    assert torch.allclose(loc.ob.sum(0), gb if gb is not None else torch.zeros_like(b), atol=1e-14)


def test_snu_step_follows_the_spec_literally() -> None:
    net = osttp.Network.from_sizes([3, 4, 2], cell="snu", recurrent=True, dtype=torch.float64)
    layer = net.layers[0]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, generator=g, dtype=torch.float64) * 3
    s_prev = torch.rand(2, 4, 1, generator=g, dtype=torch.float64) * 2
    y_prev = torch.tensor([[1.0, 0, 1, 0], [0, 0, 1, 1]], dtype=torch.float64)
    with torch.no_grad():
        new = layer(x, LayerState(s_prev, y_prev))
        pre = layer.W @ x.T + layer.H @ y_prev.T + 0.8 * s_prev[..., 0].T * (1 - y_prev.T)
        s = torch.relu(pre).T
        y = (s + layer.b > 0).to(torch.float64)
    assert torch.allclose(new.s[..., 0], s) and torch.equal(new.y, y)


def test_lif_subtractive_reset_and_threshold() -> None:
    cell = make_cell("lif")
    v = cell.dynamics(torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([[[1.2]]], dtype=torch.float64),
                      torch.tensor([[1.0]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    assert float(v) == pytest.approx(0.9 * 1.2 + 0.5 - 1.0)
    assert float(cell.output(torch.tensor([[[1.01]]]), torch.zeros(1))) == 1.0
    assert float(cell.output(torch.tensor([[[0.99]]]), torch.zeros(1))) == 0.0


def test_surrogate_is_used_on_the_backward_path_only() -> None:
    from osttp.cells import Surrogate
    v = torch.tensor([-0.5, 0.0, 0.3], dtype=torch.float64, requires_grad=True)
    sur = Surrogate("tanh")
    y = sur.spike(v)
    assert y.tolist() == [0.0, 0.0, 1.0]
    (g,) = torch.autograd.grad(y.sum(), v)
    assert torch.allclose(g, 1 - torch.tanh(v.detach()) ** 2)
