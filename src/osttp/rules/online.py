"""The online learner: network x trace kind x learning signal x schedule (docs/math.md §4.4).

One step runs each layer forward (the same `cell_step_with_current` as `Network.step`, with the
learner's `matvec`), updates its traces, and -- for a signal that needs only the target --
contracts them with its learning signal at once, before the next layer has run. Signals that need
the output error are asked after the readout, top layer first. Nothing of the sequence is kept:
the stored state is the layers' states and traces and the readout's eligibility, flat in T.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from osttp.cells import LayerState
from osttp.network import Network
from osttp.rules.learner import Learner, Stream
from osttp.rules.losses import Loss
from osttp.rules.schedules import Schedule
from osttp.rules.signals import LearningSignal, StepContext, TrainingSplit, make_signal
from osttp.rules.traces import TraceKind, TraceState, make_trace


class OnlineState(NamedTuple):
    """A layer's state between steps, with the output derivatives the next step's traces need."""

    s: Tensor  # (B, n, k)
    y: Tensor  # (B, n)
    os: Tensor  # dy/ds of the last step (B, n, k)
    ob: Tensor  # dy/db of the last step (B, n)


@dataclass
class OnlineStream(Stream):
    states: list[OnlineState] = field(default_factory=list)
    traces: list[TraceState] = field(default_factory=list)
    signal_states: list[Tensor | None] = field(default_factory=list)  # per layer: the signal's own state
    readout: LayerState | None = None  # o_{t-1} of the integrator readout
    readout_eligibility: Tensor | None = None  # y-bar_t = kappa y-bar_{t-1} + y_t (B, n_{K-1})
    bias_eligibility: float = 0.0  # c-bar_t = kappa c-bar_{t-1} + 1

    def tensors(self) -> list[Tensor]:
        out = super().tensors() + [t for st in self.states for t in st]
        out += [t for tr in self.traces for t in tr.tensors()]
        out += [t for t in self.signal_states if t is not None]
        if self.readout is not None:
            out += [self.readout.y]
        if self.readout_eligibility is not None:
            out.append(self.readout_eligibility)
        return out


def readout_eligibility(prev: Tensor | None, y: Tensor, kappa: float) -> Tensor:
    """y-bar_t = kappa y-bar_{t-1} + y_t: do_t/dV = y-bar_t exactly for o_t = kappa o_{t-1} + V y_t + c."""
    return y if prev is None or kappa == 0.0 else kappa * prev + y


class OnlineLearner(Learner):
    """A rule composed of a trace kind and a learning signal; the readout learns from its local error."""

    stream: OnlineStream

    def __init__(self, net: Network, trace: "str | TraceKind" = "diagonal",
                 signal: "str | LearningSignal" = "target-projection",
                 optimizer: torch.optim.Optimizer | None = None,
                 schedule: "str | int | Schedule" = "sequence-end", loss: str = "auto",
                 k: int | None = None, name: str | None = None) -> None:
        super().__init__(net, optimizer, schedule, loss, k)
        self.trace = make_trace(trace) if isinstance(trace, str) else trace
        self.signal = make_signal(signal) if isinstance(signal, str) else signal
        self.name = name or f"{self.trace.name}+{self.signal.name}"
        # Per layer, views of the accumulators by short parameter name ("W", "H", "b"): what a
        # trace kind's `contract` writes into, whatever tensors its own state holds.
        self._layer_acc = [{short: self.stream.acc[f"layers.{l}.{short}"]
                            for short, _ in layer.named_parameters()} for l, layer in enumerate(net.layers)]

    def fit(self, task: TrainingSplit) -> None:
        self.signal.fit(self.net, task)

    def _new_stream(self) -> OnlineStream:
        return OnlineStream(acc=self._zero_acc())

    def _reset_stream(self, batch_size: int) -> None:
        st = self.stream
        old_traces = st.traces
        st.states, st.traces, st.signal_states = [], [], []
        # A kind with `reinit` may reuse the last sequences' trace tensors (not filling them again).
        reinit = getattr(self.trace, "reinit", None)
        for l, layer in enumerate(self.net.layers):
            s0 = layer.initial_state(batch_size)
            st.states.append(OnlineState(s0.s, s0.y, torch.zeros_like(s0.s), torch.zeros_like(s0.y)))
            tr = reinit(old_traces[l], layer, batch_size) if reinit is not None and l < len(old_traces) else None
            st.traces.append(tr if tr is not None else self.trace.init(layer, batch_size))
            st.signal_states.append(self.signal.init_state(self.net, l, batch_size))
        st.readout = self.net.readout.initial_state(batch_size)
        st.readout_eligibility = None
        st.bias_eligibility = 0.0

    def _layer_acc_views(self) -> list[dict[str, Tensor]]:
        if self._layer_acc and self._layer_acc[0]["W"] is not self.stream.acc["layers.0.W"]:
            self._layer_acc = [{short: self.stream.acc[f"layers.{l}.{short}"] for short in views}
                               for l, views in enumerate(self._layer_acc)]
        return self._layer_acc

    def _layer_matvecs(self) -> list:
        """The per-layer products for `self.matvec`, built once per matvec rather than at every step."""
        if getattr(self, "_matvecs_for", None) is not self.matvec or not hasattr(self, "_matvecs"):
            self._matvecs_for = self.matvec
            self._matvecs = self.net.layer_matvecs(self.matvec)
        return self._matvecs

    @property
    def acc(self) -> dict[str, Tensor]:
        """The accumulated gradients, with the steps a trace kind has deferred added in first."""
        self._flush_traces(when_full=False)
        return self.stream.acc

    def _flush(self) -> None:
        self._flush_traces(when_full=False)

    def _flush_traces(self, when_full: bool) -> None:
        """Let a trace kind that defers work (TraceKind's optional `flush`) run it."""
        flush = getattr(self.trace, "flush", None)
        if flush is not None:
            for tr, acc in zip(self.stream.traces, self._layer_acc_views()):
                flush(tr, acc, when_full)

    def _step(self, x: Tensor, target: Tensor, mask: Tensor, loss: Loss) -> Tensor:
        o = self._layers_step(x, target, mask, loss)
        self._flush_traces(when_full=True)
        return o

    @torch.no_grad()
    def _layers_step(self, x: Tensor, target: Tensor, mask: Tensor, loss: Loss) -> Tensor:
        st = self.stream
        net, signal = self.net, self.signal
        ctx = StepContext(target=target, mask=mask, loss=loss, states=st.signal_states)
        layer_acc = self._layer_acc_views()
        # Every signal carries the factor m_t: an unsupervised step only advances states and traces
        # (unless a rate regulariser, which acts at every step, is set). Skipping the contraction is
        # only a saving, so off the CPU -- where asking would be a host sync -- the step contracts
        # anyway (a zero mask contributes zero).
        supervised = mask.device.type != "cpu" or bool(mask.any())
        reg = self.rate_regulariser
        learn_hidden = (supervised or reg is not None) and signal.trains_hidden
        local: list[Tensor | None] = []  # per layer: the regulariser's own term of L (never sent down)
        inp = x
        for l, (layer, mv) in enumerate(zip(net.layers, self._layer_matvecs())):
            prev = st.states[l]
            I, new = layer.step_with_current(inp, LayerState(prev.s, prev.y), mv)
            loc = layer.cell.local(I, prev.s, prev.y, new.s, layer.b)
            self.trace.update(st.traces[l], layer, loc, prev.os, prev.ob, inp, prev.y)
            st.signal_states[l] = signal.advance(st.signal_states[l], new.y)  # at every step, supervised or not
            local.append(reg.signal(new.y) if reg is not None and learn_hidden else None)
            ctx.outputs.append(new.y)
            if learn_hidden and not signal.uses_output_error:  # no spatial locking: learn before the layers above run
                L = signal.for_layer(net, l, ctx, None)
                self.trace.contract(st.traces[l], loc, L if local[l] is None else L + local[l], layer_acc[l])
            ctx.locals.append(loc)
            st.states[l] = OnlineState(new.s, new.y, loc.os, loc.ob)
            inp = new.y
        readout = net.readout
        assert st.readout is not None
        st.readout = readout.step(inp, st.readout, self.matvec)
        o = st.readout.y
        st.readout_eligibility = readout_eligibility(st.readout_eligibility, inp, readout.kappa)
        st.bias_eligibility = readout.kappa * st.bias_eligibility + 1.0
        error_needed = learn_hidden and signal.uses_output_error
        if not (supervised or error_needed):
            return o
        error = mask.unsqueeze(-1) * loss.output_error(o, target)
        if supervised:
            acc_w = st.acc["readout.weight"]  # >= float32 whatever the network's dtype (Learner._acc_dtype)
            acc_w.addmm_(error.T.to(acc_w.dtype), st.readout_eligibility.to(acc_w.dtype))
            st.acc["readout.bias"].add_(error.sum(0), alpha=st.bias_eligibility)
            st.loss_sum = st.loss_sum + (mask * loss.value(o, target)).sum()  # a tensor: no device sync
        if error_needed:  # spatially locked: wait for the output error, top layer first
            ctx.error = error
            above = None
            for l in reversed(range(len(net.layers))):
                above = signal.for_layer(net, l, ctx, above)
                L = above if local[l] is None else above + local[l]
                self.trace.contract(st.traces[l], ctx.locals[l], L, layer_acc[l])
        return o
