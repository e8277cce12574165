"""What every learner shares: streaming steps, gradient accumulators, schedules, `.grad` output.

Use as a stream:
    learner.reset(batch_size)
    for x_t, y_t, m_t in stream:
        o_t = learner.step(x_t, y_t, m_t)     # applies on its own under per-step / every-k
    learner.apply()                            # sequence end: write .grad, optimizer.step()
or ask for one sequence's descent direction: `learner.sequence_gradients(xs, ys, mask)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from osttp.cells import MatVec
from osttp.errors import OsttpError
from osttp.network import Network
from osttp.rules.inputs import check_inputs, check_mask, check_targets
from osttp.rules.regularisers import RateRegulariser
from osttp.rules.losses import Loss, make_loss
from osttp.rules.schedules import Schedule, make_schedule
from osttp.rules.signals import TrainingSplit


@dataclass
class Stream:
    """Everything a learner carries from one step to the next. Subclasses add their own fields, so
    `sequence_gradients` can swap in a fresh stream and put the caller's back -- no field forgotten."""

    acc: dict[str, Tensor]  # gradient accumulated and not yet applied, per parameter name
    batch_size: int | None = None
    steps_since_reset: int = 0
    pending_steps: int = 0  # steps whose gradient is accumulated but not yet applied
    loss_sum: Tensor | float = 0.0  # sum of m_t E_t since reset (for reporting)

    def tensors(self) -> list[Tensor]:
        """The tensors held between steps (for `state_nbytes`)."""
        return list(self.acc.values())


class Learner:
    """Base class. Subclasses implement `_new_stream`, `_reset_stream`, `_step` and, if they defer
    work, `_flush`.

    `matvec(name, weight, input)`, when set (simulated crossbars, osttp.hardware), does every matrix
    product of the forward pass, exactly as in `Network.step`."""

    name: str = "learner"

    def __init__(self, net: Network, optimizer: torch.optim.Optimizer | None = None,
                 schedule: "str | int | Schedule" = "sequence-end", loss: str = "auto",
                 k: int | None = None) -> None:
        if not isinstance(net, Network):
            raise OsttpError(f"net must be an osttp.Network, got {type(net).__name__}")
        if optimizer is not None and not callable(getattr(optimizer, "step", None)):
            raise OsttpError("optimizer must be a torch.optim.Optimizer (or any object with a step() method) "
                             f"or None, got {type(optimizer).__name__}")
        if isinstance(optimizer, torch.optim.Optimizer):
            held = {id(p) for g in optimizer.param_groups for p in g["params"]}
            if not any(id(p) in held for p in net.parameters()):
                raise OsttpError("optimizer holds none of the network's parameters (built over another "
                                 "network?); expected e.g. torch.optim.Adam(net.parameters())")
        self.net = net
        self.optimizer = optimizer
        self._built_as = (net.dtype, net.device)  # what states, traces and accumulators are made for
        self._index_targets: bool | None = None  # the target kind of the current sequences
        self.schedule = make_schedule(schedule, k)
        self.loss_name = loss if loss == "auto" else make_loss(loss).name
        self.params: dict[str, torch.nn.Parameter] = dict(net.named_parameters())
        self.matvec: MatVec | None = None
        # A local firing-rate term added to every hidden layer's objective (rules/regularisers.py).
        self.rate_regulariser: RateRegulariser | None = None
        # Called on the accumulated gradients before they become .grad (osttp.distributed: their sum
        # over the processes of a data-parallel group).
        self.gradient_reducer: Callable[[dict[str, Tensor]], None] | None = None
        self.stream: Stream = self._new_stream()
        self._apply_enabled = True

    # The stream's fields, read as the learner's own.
    @property
    def acc(self) -> dict[str, Tensor]:
        return self.stream.acc

    @property
    def batch_size(self) -> int | None:
        return self.stream.batch_size

    @property
    def steps_since_reset(self) -> int:
        return self.stream.steps_since_reset

    @property
    def pending_steps(self) -> int:
        return self.stream.pending_steps

    @property
    def loss_sum(self) -> Tensor | float:
        return self.stream.loss_sum

    # ----------------------------------------------------------------- public API
    def fit(self, task: TrainingSplit) -> None:
        """Learn what the rule needs from the training split, once, before training (its signal's
        class prior, for the centred target projection); most rules need nothing."""

    def reset(self, batch_size: int) -> None:
        """Start new sequences: zero states and traces. Unapplied gradients are kept."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise OsttpError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self._check_built_as()
        self._flush()
        st = self.stream
        st.batch_size = batch_size
        st.steps_since_reset = 0
        st.loss_sum = torch.zeros((), dtype=self._acc_dtype(), device=self.net.device)  # >= float32, see _zero_acc
        self._index_targets = None
        try:
            self._reset_stream(batch_size)
        except (RuntimeError, MemoryError) as e:  # the allocator refused the states and traces
            st.batch_size = None
            raise OsttpError(f"batch_size = {batch_size}: cannot allocate this learner's states and traces "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); expected a smaller "
                             "batch") from None

    def step(self, x_t: Tensor, y_t: Tensor, m_t: Tensor | None = None) -> Tensor:
        """Consume one time step: x_t (B, n_in); y_t (B,) int64 or (B, C) float; m_t (B,) or None.

        Returns the readout o_t (B, C), detached."""
        if self.batch_size is None:
            raise OsttpError("call learner.reset(batch_size) before learner.step(...)")
        B, net = self.batch_size, self.net
        self._check_built_as()
        # Values are read on the CPU at every step (cheap); on an accelerator, where reading them is
        # a host sync, at the first step of each sequence only.
        values = not isinstance(x_t, Tensor) or x_t.device.type == "cpu" or self.stream.steps_since_reset == 0
        x_t = check_inputs("x_t", x_t, (B, net.n_in), net.dtype, net.device, values)
        target, is_index = check_targets("y_t", y_t, (B,), net.n_out, net.dtype, values)
        self._check_target_kind("y_t", is_index)
        mask = check_mask("m_t", m_t, (B,), net.dtype, net.device, values)
        return self._checked_step(x_t, target, mask, self._loss_for(is_index))

    def steps(self, xs: Tensor, ys: Tensor, mask: Tensor | None = None) -> Tensor:
        """`step` at every t of a batch of sequences, with the inputs checked once for the whole batch
        instead of at every step: xs (T, B, n_in); ys (T, B) int64 or (T, B, C) float; mask (T, B) or
        None. The schedule applies as it fires. Returns the readouts (T, B, C), detached."""
        if self.batch_size is None:
            raise OsttpError("call learner.reset(batch_size) before learner.steps(...)")
        B, net = self.batch_size, self.net
        self._check_built_as()
        xs = check_inputs("xs", xs, (-1, B, net.n_in), net.dtype, net.device)
        T = xs.shape[0]
        targets, is_index = check_targets("ys", ys, (T, B), net.n_out, net.dtype)
        self._check_target_kind("ys", is_index)
        masks = check_mask("mask", mask, (T, B), net.dtype, net.device)
        loss = self._loss_for(is_index)
        return torch.stack([self._checked_step(xs[t], targets[t], masks[t], loss) for t in range(T)])

    def _check_target_kind(self, name: str, is_index: bool) -> None:
        """One kind of target per sequence: class labels or float vectors, as its first step had."""
        if self._index_targets is not None and is_index != self._index_targets:
            kinds = ("float target vectors", "integer class labels")
            raise OsttpError(f"{name} holds {kinds[is_index]} but this sequence started with "
                             f"{kinds[not is_index]}; expected one kind of target per sequence (call reset() "
                             "between them)")
        self._index_targets = is_index

    def apply(self) -> None:
        """Write the accumulated gradients into `.grad` and, with an optimizer, take its step."""
        self._flush()
        if self.pending_steps == 0:
            return
        if self.gradient_reducer is not None:
            self.gradient_reducer(self.acc)
        self.write_grads()
        if self.optimizer is not None:
            self.optimizer.step()
        for a in self.acc.values():
            a.zero_()
        self.stream.pending_steps = 0

    def write_grads(self) -> None:
        """Set p.grad to the accumulated gradient of every parameter (replacing what was there)."""
        for name, p in self.params.items():
            p.grad = self.acc[name].to(p.dtype, copy=True)

    def gradients(self) -> dict[str, Tensor]:
        """A copy of the gradients accumulated and not yet applied."""
        self._flush()
        return {name: a.clone() for name, a in self.acc.items()}

    def sequence_gradients(self, xs: Tensor, ys: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """The direction the rule descends for one batch of sequences (loss summed over T and B).

        xs (T, B, n_in); ys (T, B) int64 or (T, B, C) float; mask (T, B) or None. Parameters and
        this learner's streaming state are left unchanged."""
        net = self.net
        self._check_built_as()
        xs = check_inputs("xs", xs, (-1, -1, net.n_in), net.dtype, net.device)
        T, B = xs.shape[:2]
        if T == 0 or B == 0:
            raise OsttpError(f"xs has shape {tuple(xs.shape)}; expected T >= 1 and B >= 1")
        targets, is_index = check_targets("ys", ys, (T, B), net.n_out, net.dtype)
        masks = check_mask("mask", mask, (T, B), net.dtype, net.device)
        loss = self._loss_for(is_index)
        saved = self.stream
        self.stream = self._new_stream()  # a fresh stream; the caller's is put back below
        try:
            self._apply_enabled = False
            self.reset(B)
            for t in range(T):
                self._checked_step(xs[t], targets[t], masks[t], loss)
            self._flush()
            return {name: a.clone() for name, a in self.acc.items()}
        finally:
            self._apply_enabled = True
            self.stream = saved

    def state_nbytes(self) -> int:
        """Bytes of everything the learner keeps between steps (states, traces, accumulators, graph)."""
        return sum(t.numel() * t.element_size() for t in self.stream.tensors())

    # ----------------------------------------------------------------- internals
    def _check_built_as(self) -> None:
        if (self.net.dtype, self.net.device) != self._built_as:
            raise OsttpError(f"the network is now {self.net.dtype} on {self.net.device} but this learner was built "
                             f"for {self._built_as[0]} on {self._built_as[1]}; expected a new learner after "
                             "net.to(...) / net.double()")

    def _loss_for(self, is_index: bool) -> Loss:
        if self.loss_name == "auto":
            return make_loss("ce" if is_index else "bce")
        return make_loss(self.loss_name)

    def _checked_step(self, x: Tensor, target: Tensor, mask: Tensor, loss: Loss) -> Tensor:
        o = self._step(x, target, mask, loss)
        st = self.stream
        st.steps_since_reset += 1
        st.pending_steps += 1
        if self.schedule.due(st.steps_since_reset):
            self._flush()
            if self._apply_enabled:
                self.apply()
        return o

    def _acc_dtype(self) -> torch.dtype:
        """Sums over many steps (gradients, loss) are kept in at least float32: in float16/bfloat16
        each addition would round to 3/2 significant digits and a sum over thousands of steps
        drifts far from the true gradient. .grad is cast back to the parameter's dtype."""
        return torch.promote_types(self.net.dtype, torch.float32)

    def _zero_acc(self) -> dict[str, Tensor]:
        return {name: torch.zeros(p.shape, dtype=self._acc_dtype(), device=p.device)
                for name, p in self.net.named_parameters()}

    def _new_stream(self) -> Stream:
        """An empty stream of this learner's kind (zero accumulators, no states yet)."""
        raise NotImplementedError

    def _reset_stream(self, batch_size: int) -> None:
        raise NotImplementedError

    def _step(self, x: Tensor, target: Tensor, mask: Tensor, loss: Loss) -> Tensor:
        raise NotImplementedError

    def _flush(self) -> None:
        """Turn deferred work (BPTT's stored graph) into accumulated gradients."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, schedule={self.schedule.name!r})"
