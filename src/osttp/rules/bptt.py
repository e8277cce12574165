"""BPTT by autograd over the unrolled sequence: the baseline every online rule is measured against.

It stores the graph of every step until the schedule fires (at `apply()` for sequence-end), then
backpropagates through time and truncates: with schedule every-k this is truncated BPTT (tbptt-k).
The forward pass is `Network.step`, with the learner's `matvec` when one is set.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

from osttp.cells import LayerState
from osttp.errors import OsttpError
from osttp.network import Network
from osttp.rules.learner import Learner, Stream
from osttp.rules.losses import Loss
from osttp.rules.schedules import Schedule


@dataclass
class BPTTStream(Stream):
    states: list[LayerState] = field(default_factory=list)
    pending_loss: Tensor | None = None  # sum of the losses whose graph is still stored
    graph_nbytes: int = 0  # bytes the stored graph holds (graph_saved_nbytes), for state_nbytes
    # storages already counted in graph_nbytes (key -> bytes); a dict, not a set, so that a snapshot
    # (osttp.streams.learner_state, taken when no graph is held: empty) holds plain containers only
    saved_storages: dict[int, int] = field(default_factory=dict)
    counted_steps: int = 0  # steps since the graph was cut whose saved tensors were counted one by one
    step_nbytes: int = 0  # what the last counted step added to graph_nbytes

    def tensors(self) -> list[Tensor]:
        return super().tensors() + [t for st in self.states for t in st]


# What autograd keeps per saved tensor beyond its data: the graph node, the SavedVariable and the tensor
# object. Measured with benchmarks/bptt_memory.py (RSS growth per step of a B=1, 12-unit net, whose
# data is ~300 B a step, is ~24 kB for its 12 saved tensors); without it a small net's graph was
# reported 20x too small.
AUTOGRAD_BYTES_PER_SAVED = 2048
# Steps after each cut of the graph whose saved tensors are counted one by one (BPTTLearner._step).
COUNTED_STEPS = 2


class BPTTLearner(Learner):
    stream: BPTTStream

    def __init__(self, net: Network, optimizer: torch.optim.Optimizer | None = None,
                 schedule: "str | int | Schedule" = "sequence-end", loss: str = "auto",
                 k: int | None = None, name: str = "bptt") -> None:
        super().__init__(net, optimizer, schedule, loss, k)
        self.name = name

    def _new_stream(self) -> BPTTStream:
        return BPTTStream(acc=self._zero_acc())

    def _reset_stream(self, batch_size: int) -> None:
        st = self.stream
        st.states = self.net.initial_state(batch_size)
        st.pending_loss = None
        st.graph_nbytes = 0
        st.saved_storages = {}
        st.counted_steps = st.step_nbytes = 0
        # the network's own storages, never the graph's (the optimizer updates them in place)
        self._param_keys = {p.untyped_storage().data_ptr() for p in self.params.values()}

    def _count_saved(self, t: Tensor) -> Tensor:
        """Count what the graph holds: each storage once (a weight is saved at every step but held
        once, and it is the network's, not the graph's), plus autograd's per-saved-tensor overhead."""
        st = self.stream
        st.graph_nbytes += AUTOGRAD_BYTES_PER_SAVED
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in st.saved_storages and key not in self._param_keys:
            st.saved_storages[key] = storage.nbytes()
            st.graph_nbytes += storage.nbytes()
        return t


    def _step(self, x: Tensor, target: Tensor, mask: Tensor, loss: Loss) -> Tensor:
        if torch.is_inference_mode_enabled():
            raise OsttpError("bptt stores an autograd graph, which torch.inference_mode() forbids; expected "
                             "the steps outside inference_mode (the online rules need no graph and run inside it)")
        # Tensors made under inference_mode cannot be saved for backward; a plain copy can.
        x, target, mask = (v.clone() if v.is_inference() else v for v in (x, target, mask))
        st = self.stream
        # Every step saves the same tensors (shapes), so the saved-tensor hook -- a Python call per
        # saved tensor, ~10 % of a small network's step -- counts the first two steps after the graph
        # was cut (the first may share storages with the initial state) and later steps add the second's.
        count = st.counted_steps < COUNTED_STEPS
        before = st.graph_nbytes
        hooks = torch.autograd.graph.saved_tensors_hooks(self._count_saved, lambda t: t) if count \
            else contextlib.nullcontext()
        with torch.enable_grad(), hooks:
            o, st.states = self.net.step(x, st.states, self.matvec)
            E = (mask * loss.value(o, target)).sum()
            st.loss_sum = st.loss_sum + E.detach()  # the task loss; a regulariser is not reported in it
            if self.rate_regulariser is not None:
                E = E + sum(self.rate_regulariser.penalty(s.y) for s in st.states[:-1])
        st.pending_loss = E if st.pending_loss is None else st.pending_loss + E
        if count:
            st.counted_steps += 1
            st.step_nbytes = st.graph_nbytes - before
        else:
            st.graph_nbytes += st.step_nbytes
        return o.detach()

    def _flush(self) -> None:
        """Backpropagate the stored window into the accumulators and cut the graph."""
        st = self.stream
        if st.pending_loss is None:
            return
        names = list(self.params)
        grads = torch.autograd.grad(st.pending_loss, [self.params[n] for n in names], allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                st.acc[n] += g
        st.pending_loss = None
        st.graph_nbytes = 0
        st.saved_storages = {}
        st.counted_steps = st.step_nbytes = 0
        st.states = [LayerState(s.s.detach(), s.y.detach()) for s in st.states]

    def state_nbytes(self) -> int:
        return super().state_nbytes() + self.stream.graph_nbytes
