"""The online learner: network x trace kind x learning signal x schedule (SPEC §4.4).

One step runs each layer forward, updates its traces, and -- for a signal that needs only the
target -- contracts them with its learning signal at once, before the next layer has run. Signals
that need the output error are asked after the readout, top layer first. Nothing of the sequence
is kept: the stored state is the layers' states and traces, flat in T.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from osttp.cells import synaptic_current
from osttp.network import Network
from osttp.rules.learner import Learner
from osttp.rules.losses import Loss
from osttp.rules.schedules import Schedule
from osttp.rules.signals import LearningSignal, StepContext, make_signal
from osttp.rules.traces import TraceKind, TraceState, make_trace


class OnlineState(NamedTuple):
    """A layer's state between steps, with the output derivatives the next step's traces need."""

    s: Tensor  # (B, n, k)
    y: Tensor  # (B, n)
    os: Tensor  # dy/ds of the last step (B, n, k)
    ob: Tensor  # dy/db of the last step (B, n)


class OnlineLearner(Learner):
    """A rule composed of a trace kind and a learning signal; the readout learns from its local error."""

    _stream_attrs = ("states", "traces")

    def __init__(self, net: Network, trace: "str | TraceKind" = "diagonal",
                 signal: "str | LearningSignal" = "target-projection",
                 optimizer: torch.optim.Optimizer | None = None,
                 schedule: "str | int | Schedule" = "sequence-end", loss: str = "auto",
                 k: int | None = None, name: str | None = None) -> None:
        super().__init__(net, optimizer, schedule, loss, k)
        self.trace = make_trace(trace) if isinstance(trace, str) else trace
        self.signal = make_signal(signal) if isinstance(signal, str) else signal
        self.name = name or f"{self.trace.name}+{self.signal.name}"
        self.states: list[OnlineState] | None = None
        self.traces: list[TraceState] | None = None

    def _reset_stream(self, batch_size: int) -> None:
        self.states, self.traces = [], []
        for layer in self.net.layers:
            s0 = layer.initial_state(batch_size)
            self.states.append(OnlineState(s0.s, s0.y, torch.zeros_like(s0.s), torch.zeros_like(s0.y)))
            self.traces.append(self.trace.init(layer, batch_size))

    def _layer_acc_views(self) -> list[dict[str, Tensor]]:
        return [{k: self.acc[f"layers.{l}.{k}"] for k in tr} for l, tr in enumerate(self.traces or [])]

    @torch.no_grad()
    def _step(self, x: Tensor, target: Tensor, mask: Tensor, loss: Loss) -> Tensor:
        assert self.states is not None and self.traces is not None
        net, signal = self.net, self.signal
        ctx = StepContext(target=target, mask=mask)
        layer_acc = self._layer_acc_views()
        # Every signal carries the factor m_t: an unsupervised step only advances states and traces.
        supervised = bool(mask.any())
        inp = x
        for l, layer in enumerate(net.layers):
            st = self.states[l]
            I = synaptic_current(layer.W, inp, layer.H, st.y)
            s = layer.cell.dynamics(I, st.s, st.y, layer.b)
            y = layer.cell.output(s, layer.b)
            loc = layer.cell.local(I, st.s, st.y, s, layer.b)
            self.trace.update(self.traces[l], layer, loc, st.os, st.ob, inp, st.y)
            if supervised and not signal.uses_output_error:  # no spatial locking: learn before the layers above run
                self.trace.contract(self.traces[l], loc, signal.for_layer(net, l, ctx, None), layer_acc[l])
            ctx.locals.append(loc)
            self.states[l] = OnlineState(s, y, loc.os, loc.ob)
            inp = y
        o = net.readout(inp)
        if not supervised:
            return o
        error = mask.unsqueeze(-1) * loss.output_error(o, target)
        self.acc["readout.weight"] += error.T @ inp
        self.acc["readout.bias"] += error.sum(0)
        if signal.uses_output_error:  # spatially locked: wait for the output error, top layer first
            ctx.error = error
            above = None
            for l in reversed(range(len(net.layers))):
                above = signal.for_layer(net, l, ctx, above)
                self.trace.contract(self.traces[l], ctx.locals[l], above, layer_acc[l])
        self.loss_sum = self.loss_sum + (mask * loss.value(o, target)).sum()  # a tensor: no device sync
        return o

    def _stored_tensors(self) -> list[Tensor]:
        out = super()._stored_tensors()
        for st in self.states or []:
            out.extend(st)
        for tr in self.traces or []:
            out.extend(tr.values())
        return out
