"""Shared pieces of the interop tests: networks with firing layers, inputs, and a run that keeps spikes."""
from __future__ import annotations

import torch
from torch import Tensor

from osttp import Network


def firing_net(sizes: list[int], cell: str, options: dict, recurrent: bool, readout: str = "linear",
               dtype: torch.dtype = torch.float64, seed: int = 1, vary_thresholds: bool = True) -> Network:
    """A network whose input weights are scaled up, so every layer spikes on a good fraction of its
    units, and (vary_thresholds) whose biases are perturbed, so per-unit thresholds are not all equal."""
    net = Network.from_sizes(sizes, cell=cell, recurrent=recurrent, cell_options=options, readout=readout,
                             dtype=dtype, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers:
            layer.W.mul_(2.0)
            if vary_thresholds:
                layer.b.add_(0.1 * torch.randn(layer.b.shape, generator=gen, dtype=dtype))
    return net


def spike_input(T: int, B: int, n: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=gen) < 0.4).to(dtype) * 1.5


@torch.no_grad()
def run_with_spikes(net: Network, xs: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Outputs (T, B, C) and every hidden layer's spikes (T, B, n_l)."""
    states = net.initial_state(xs.shape[1])
    outs, spikes = [], [[] for _ in net.layers]
    for x in xs:
        o, states = net.step(x, states)
        outs.append(o)
        for l, st in enumerate(states[:-1]):
            spikes[l].append(st.y)
    return torch.stack(outs), [torch.stack(s) for s in spikes]


def train_osttp(net: Network, task, lr: float, epochs: int, batch_size: int) -> None:
    """Train net with the paper's osttp rule and Adam: whole sequences, shuffled batches, epoch e
    shuffled with seed e."""
    import osttp

    learner = osttp.make_learner("osttp", net, optimizer=torch.optim.Adam(net.parameters(), lr=lr))
    for epoch in range(epochs):
        for b in task.batches(batch_size, shuffle=True, seed=epoch):
            learner.reset(b.xs.shape[1])
            learner.steps(b.xs, b.ys, b.mask)
            learner.apply()
