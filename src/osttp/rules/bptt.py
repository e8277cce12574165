"""BPTT by autograd over the unrolled sequence: the baseline every online rule is measured against.

It stores the graph of every step until the schedule fires (at `apply()` for sequence-end), then
backpropagates through time and truncates: with schedule every-k this is truncated BPTT (tbptt-k).
The forward pass is `Network.step`, with the learner's `matvec` when one is set. The task loss of
the stored steps is evaluated once over their stacked outputs when the graph is backpropagated (or
`loss_sum` is read), not at every step: its gradient reaching each o_t is the same, and a step costs
a forward pass only.
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
from osttp.rules.losses import Loss, binary_cross_entropy
from osttp.rules.schedules import Schedule


@dataclass
class BPTTStream(Stream):
    states: list[LayerState] = field(default_factory=list)
    pending_loss: Tensor | None = None  # sum of the losses whose graph is still stored
    # steps since the last fold (`BPTTLearner._fold_losses`): outputs o_t (in the graph), targets, masks
    pending_outputs: list[Tensor] = field(default_factory=list)
    pending_targets: list[Tensor] = field(default_factory=list)
    pending_masks: list[Tensor] = field(default_factory=list)
    pending_loss_kind: Loss | None = None  # the loss of those steps (one target kind per sequence)
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


class _StepBCE(torch.autograd.Function):
    """E_t = sum_b m_t,b sum_c BCEWithLogits(o_t,b,c, y*_t,b,c) for stacked steps (T, B, C) -> (T,).

    Its backward is autograd's, dE/do_t = (sigmoid(o_t) - y*_t) g_t m_t, with the sigmoid taken on
    each step's own (B, C) slice: a vectorized sigmoid over the whole stack rounds the elements that
    fall in a slice's scalar tail differently in float32, and the gradients would no longer equal
    the per-step loss's to the bit."""

    @staticmethod
    def forward(ctx, O: Tensor, Y: Tensor, M: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(O, Y, M)
        return (M * binary_cross_entropy(O, Y)).sum(-1)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        O, Y, M = ctx.saved_tensors
        sig = torch.stack([torch.sigmoid(o) for o in O.unbind()])
        return (sig - Y) * (g.unsqueeze(-1) * M).unsqueeze(-1), None, None


def stacked_step_losses(loss: Loss, O: Tensor, Y: Tensor, M: Tensor) -> Tensor:
    """Each step's task loss E_t = sum_b m_t,b E_t,b over stacked outputs O (T, B, C): (T,), with the
    gradient a per-step evaluation gives (cross-entropy's stacked autograd already equals it)."""
    if loss.name == "bce":
        return _StepBCE.apply(O, Y, M)
    return (M * loss.value(O, Y)).sum(-1)


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
        st.pending_outputs, st.pending_targets, st.pending_masks = [], [], []
        st.pending_loss_kind = None
        st.graph_nbytes = 0
        st.saved_storages = {}
        st.counted_steps = st.step_nbytes = 0
        # the network's own storages, never the graph's (the optimizer updates them in place)
        self._param_keys = {p.untyped_storage().data_ptr() for p in self.params.values()}

    def _count_saved(self, t: Tensor) -> Tensor:
        """Count what the graph holds: each storage once (a weight is saved at every step but held
        once, and it is the network's, not the graph's), plus autograd's per-saved-tensor overhead."""
        self.stream.graph_nbytes += AUTOGRAD_BYTES_PER_SAVED
        self._count_kept(t)
        return t

    def _count_kept(self, t: Tensor) -> None:
        """Count a tensor the stream keeps (the graph's saved tensors, and the outputs, targets and
        masks held for the loss's fold): its storage once, never a parameter's."""
        st = self.stream
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in st.saved_storages and key not in self._param_keys:
            st.saved_storages[key] = storage.nbytes()
            st.graph_nbytes += storage.nbytes()

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
            if self.rate_regulariser is not None:  # not part of the reported task loss
                penalty = sum(self.rate_regulariser.penalty(s.y) for s in st.states[:-1])
                st.pending_loss = penalty if st.pending_loss is None else st.pending_loss + penalty
        st.pending_outputs.append(o)
        st.pending_targets.append(target)
        st.pending_masks.append(mask)
        st.pending_loss_kind = loss
        if count:
            for t in (o, target, mask):
                self._count_kept(t)
            st.counted_steps += 1
            st.step_nbytes = st.graph_nbytes - before
        else:
            st.graph_nbytes += st.step_nbytes
        return o.detach()

    def _fold_losses(self) -> None:
        """The task loss of the steps since the last fold, over their stacked outputs:
        E = sum_t sum_b m_t,b E_t,b, added to the stored graph's loss; loss_sum gains each step's sum
        in step order (as a per-step sum would have reported it)."""
        st = self.stream
        if not st.pending_outputs:
            return
        assert st.pending_loss_kind is not None
        with torch.enable_grad():
            per_step = stacked_step_losses(st.pending_loss_kind, torch.stack(st.pending_outputs),
                                           torch.stack(st.pending_targets), torch.stack(st.pending_masks))
            E = per_step.sum()
        loss_sum = st.loss_sum
        for e in per_step.detach().unbind():
            loss_sum = loss_sum + e
        st.loss_sum = loss_sum
        st.pending_loss = E if st.pending_loss is None else st.pending_loss + E
        st.pending_outputs, st.pending_targets, st.pending_masks = [], [], []
        st.pending_loss_kind = None

    @property
    def loss_sum(self) -> Tensor | float:
        """The task loss since reset, with the stored steps' losses evaluated first."""
        self._fold_losses()
        return self.stream.loss_sum

    def _flush(self) -> None:
        """Backpropagate the stored window into the accumulators and cut the graph."""
        self._fold_losses()
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
