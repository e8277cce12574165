"""The peer of benchmarks/step_time.py: the same network trained with snnTorch and BPTT.

What a user would write instead of osttp (snnTorch's tutorials' form): `nn.Linear` into
`snn.RLeaky` (recurrent leaky integrate-and-fire, all-to-all recurrent weights, subtractive reset,
surrogate gradient), per hidden layer, then `nn.Linear` into `snn.Leaky` without reset as the
integrator readout; the loss summed over every step, one `backward()` at the sequence end, Adam.
Same sizes, T, batch, inputs and targets as osttp's rules in the same process, so the ratio of
their times is what a user choosing between them sees. The neuron is snnTorch's (a LIF membrane),
not osttp's SNU: the arithmetic per step has the same shape (two matrix products per layer and
element-wise ops), which is what is timed.

snnTorch is an optional extra (`pip install snntorch`, pyproject's `test` extra); without it
`available()` says why and the peer row is left out.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
from torch import Tensor, nn

NAME = "snntorch-bptt"


def available() -> str | None:
    """None when snnTorch imports, else the reason it cannot be timed."""
    try:
        import snntorch  # noqa: F401
    except ImportError as e:
        return f"snntorch is not installed ({e}); pip install snntorch (keeps torch as it is)"
    return None


class SnnTorchNet(nn.Module):
    """[n_in, *hidden, n_out]: Linear + RLeaky per hidden layer, Linear + Leaky (no reset) readout."""

    def __init__(self, sizes: list[int], beta: float = 0.8, kappa: float = 0.9) -> None:
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate

        grad = surrogate.fast_sigmoid()
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-2], sizes[1:-1]))
        self.lifs = nn.ModuleList(snn.RLeaky(beta=beta, linear_features=n, spike_grad=grad,
                                             reset_mechanism="subtract") for n in sizes[1:-1])
        self.out = nn.Linear(sizes[-2], sizes[-1])
        self.readout = snn.Leaky(beta=kappa, reset_mechanism="none", spike_grad=grad)

    def sequence_loss(self, xs: Tensor, ys: Tensor) -> Tensor:
        """Cross-entropy of the readout's membrane at every step, summed over T and B. xs (T, B, n_in)."""
        states = [lif.init_rleaky() for lif in self.lifs]
        mem_out = self.readout.init_leaky()
        loss = xs.new_zeros(())
        for t in range(xs.shape[0]):
            h = xs[t]
            for l, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
                spk, mem = lif(fc(h), *states[l])
                states[l] = (spk, mem)
                h = spk
            _, mem_out = self.readout(self.out(h), mem_out)
            loss = loss + nn.functional.cross_entropy(mem_out, ys[t], reduction="sum")
        return loss


def setup(sizes: list[int], xs: Tensor, ys: Tensor, sync: Callable[[], None]) -> Callable[[], float]:
    """A timed run: one sequence forward, backward, Adam step (seconds), like a learner's reset..apply."""
    torch.manual_seed(0)
    net = SnnTorchNet(sizes).to(xs.device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def once() -> float:
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        net.sequence_loss(xs, ys).backward()
        opt.step()
        sync()
        return time.perf_counter() - t0

    return once
