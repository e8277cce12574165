"""BPTT by autograd over the unrolled sequence: the baseline every online rule is measured against.

It stores the graph of every step until the schedule fires (at `apply()` for sequence-end), then
backpropagates through time and truncates: with schedule every-k this is truncated BPTT (tbptt-k).
"""
from __future__ import annotations

import torch
from torch import Tensor

from osttp.cells import LayerState
from osttp.network import Network
from osttp.rules.learner import Learner
from osttp.rules.losses import Loss
from osttp.rules.schedules import Schedule


class BPTTLearner(Learner):
    _stream_attrs = ("states", "pending_loss", "graph_nbytes")

    def __init__(self, net: Network, optimizer: torch.optim.Optimizer | None = None,
                 schedule: "str | int | Schedule" = "sequence-end", loss: str = "auto",
                 k: int | None = None, name: str = "bptt") -> None:
        super().__init__(net, optimizer, schedule, loss, k)
        self.name = name
        self.states: list[LayerState] | None = None
        self.pending_loss: Tensor | None = None
        self.graph_nbytes: int | None = 0  # bytes autograd saved for the pending backward pass

    def _reset_stream(self, batch_size: int) -> None:
        self.states = self.net.initial_state(batch_size)
        self.pending_loss = None
        self.graph_nbytes = 0

    def _count_saved(self, t: Tensor) -> Tensor:
        self.graph_nbytes = (self.graph_nbytes or 0) + t.numel() * t.element_size()
        return t

    def _step(self, x: Tensor, target: Tensor, mask: Tensor, loss: Loss) -> Tensor:
        assert self.states is not None
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(self._count_saved, lambda t: t):
            o, self.states = self.net.step(x, self.states)
            E = (mask * loss.value(o, target)).sum()
        self.pending_loss = E if self.pending_loss is None else self.pending_loss + E
        self.loss_sum = self.loss_sum + E.detach()
        return o.detach()

    def _flush(self) -> None:
        """Backpropagate the stored window into the accumulators and cut the graph."""
        if self.pending_loss is None:
            return
        names = list(self.params)
        grads = torch.autograd.grad(self.pending_loss, [self.params[n] for n in names], allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                self.acc[n] += g
        self.pending_loss = None
        self.graph_nbytes = 0
        if self.states is not None:
            self.states = [LayerState(s.s.detach(), s.y.detach()) for s in self.states]

    def _stored_tensors(self) -> list[Tensor]:
        out = super()._stored_tensors()
        for st in self.states or []:
            out.extend(st)
        return out

    def state_nbytes(self) -> int:
        return super().state_nbytes() + (self.graph_nbytes or 0)
