from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
# The tests use tiny tensors: one thread avoids the inter-op overhead that dominates them on 2 cores.
torch.set_num_threads(1)

import osttp  # noqa: E402
from oracles import spike_statistics  # noqa: E402


def is_spiking(cell: str) -> bool:
    """Registry metadata: spiking cells get firing-rate-tuned cases and spike checks."""
    return bool(osttp.cells.CELLS.get(cell).meta.get("spiking"))


@dataclass
class Case:
    net: osttp.Network
    xs: torch.Tensor
    ys: torch.Tensor
    mask: torch.Tensor | None


def make_case(cell: str, sizes: list[int], recurrent: bool, seed: int = 0, T: int = 24, B: int = 3,
              targets: str = "index", masked: bool = True, **net_kw) -> Case:
    """A float64 network and data on which every spiking layer really spikes and resets.

    Per layer, the input gain whose firing rate is closest to 30% is chosen; if some layer still
    fires on fewer than 8% or more than 70% of steps, the next network seed is tried
    (deterministically), so the surrogate, reset and recurrent paths are all exercised."""
    for attempt in range(20):
        case = _make_case(cell, sizes, recurrent, seed + 7919 * attempt, T, B, targets, masked, net_kw)
        if not is_spiking(cell) or all(0.08 <= r <= 0.7 for r, _ in spike_statistics(case.net, case.xs)):
            return case
    raise RuntimeError(f"no spiking case found for {cell} {sizes}")


def _make_case(cell: str, sizes: list[int], recurrent: bool, seed: int, T: int, B: int, targets: str,
               masked: bool, net_kw: dict) -> Case:
    net = osttp.Network.from_sizes(sizes, cell=cell, recurrent=recurrent, seed=seed, dtype=torch.float64, **net_kw)
    g = torch.Generator().manual_seed(1000 + seed)
    xs = torch.rand(T, B, sizes[0], generator=g, dtype=torch.float64) * 2.0
    C = sizes[-1]
    if targets == "index":
        ys = torch.randint(0, C, (T, B), generator=g)
    else:
        ys = (torch.rand(T, B, C, generator=g) < 0.3).to(torch.float64)
    mask = (torch.rand(T, B, generator=g) > 0.3).to(torch.float64) if masked else None
    if is_spiking(cell):
        with torch.no_grad():
            for l, layer in enumerate(net.layers):
                W0 = layer.W.clone()
                best = (float("inf"), 1.0)
                for gain in (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 14.0, 20.0):
                    layer.W.copy_(W0 * gain)
                    best = min(best, (abs(spike_statistics(net, xs)[l][0] - 0.3), gain))
                layer.W.copy_(W0 * best[1])
    return Case(net, xs, ys, mask)


def assert_really_spikes(case: Case) -> None:
    for rate, resets in spike_statistics(case.net, case.xs):
        assert 0.05 <= rate <= 0.8, f"firing rate {rate:.2f} outside [0.05, 0.8]"


@pytest.fixture
def case_factory():
    return make_case
