"""Autograd oracles for every learning rule (docs/math.md §4.5), shared by all rule tests.

Each online rule equals plain autograd on a *modified* graph of the same forward model:
  - every hidden layer's input is detached (spatial paths cut);
  - trace kind "diagonal": off-diagonal recurrent paths detached,
        H y_{t-1} -> (H - diag H) stopgrad(y_{t-1}) + diag(H) * y_{t-1};
  - trace kind "none": previous state and output detached (no path through time);
  - trace kind "factorized": W and H see no path through time, and their gradient enters through a
        current whose value is I_t but whose derivative is that of W x-bar_t + H y-bar_t, with
        x-bar_t = lambda x-bar_{t-1} + x_t, y-bar_t = lambda y-bar_{t-1} + y_{t-1} (constants) and
        lambda = d s_t/d s_{t-1} of the first state component at rest, by autograd; b follows the
        "diagonal" graph (with W and H held fixed there);
  - hidden grads of layer l = grad_theta_l sum_t <stopgrad(L_t^l), y_t^l>, with L_t^l the rule's signal
    computed here independently (target projection from B_l; errors from the forward pass;
    backprop-in-space by autograd through the layers above at step t only);
  - readout grads = grad sum_t m_t E_t with the readout input detached (through the integrator's
    own recurrence o_t = kappa o_{t-1} + V y_t + c when the readout is one).
Signals come in two kinds (osttp.rules.signals):
  - forward-only signals (uses_output_error = False) declare the objective they descend; here
    L_t^l = autograd grad of `local_objective(net, l, y_t^l, ctx)` w.r.t. y_t^l, never their `for_layer`
    (target projection: sum m_t <y*_t B_l, y>; centred: y*_t - p; none: 0);
  - output-error signals name in their registry metadata `oracle` one of the forms written out here:
    random error L = m_t (y_hat_t - y*_t) B_l (dfa, eprop-rand); symmetric error
    L^{K-1} = m_t (y_hat_t - y*_t) V and L^l = L^{l+1} W^{l+1} below (eprop-sym); backprop-in-space
    L = dE_t/dy_t^l at step t (ostl). y_hat_t - y*_t is dE_t/do_t for softmax-CE and sigmoid-BCE, taken
    from the unmodified forward values.
These use only the cells' forward functions (dynamics/output), the signals' declared objectives and
autograd -- none of the hand-derived local derivatives, trace algebra or `for_layer` code they check.

The modified graphs are known here by name ("exact", "diagonal", "none", "factorized"); a trace kind states in
its registry metadata (`oracle`) which one it must equal, and an unknown graph is refused.
"""
from __future__ import annotations

import torch
from torch import Tensor

from osttp.cells import LayerState
from osttp.network import Network


def one_hot_targets(net: Network, ys: Tensor) -> Tensor:
    if ys.is_floating_point():
        return ys
    return torch.nn.functional.one_hot(ys, net.n_out).to(net.dtype)


def step_loss(o: Tensor, target: Tensor, kind: str) -> Tensor:
    """Per-sample E_t written out from docs/math.md §2 (independent of osttp.rules.losses)."""
    if kind == "ce":
        return -(target * torch.log_softmax(o, -1)).sum(-1)
    return torch.nn.functional.binary_cross_entropy_with_logits(o, target, reduction="none").sum(-1)


def prediction(o: Tensor, kind: str) -> Tensor:
    return torch.softmax(o, -1) if kind == "ce" else torch.sigmoid(o)


def loss_kind(ys: Tensor) -> str:
    return "bce" if ys.is_floating_point() else "ce"


def bptt_oracle(net: Network, xs: Tensor, ys: Tensor, mask: Tensor | None = None, window: int | None = None,
                rate_reg: tuple[float, float] | None = None) -> dict[str, Tensor]:
    """Plain autograd through the unrolled sequence: grad of sum_t m_t E_t.

    With `window` = k: truncated BPTT, the states detached every k steps (tbptt-k)."""
    kind = loss_kind(ys)
    target = one_hot_targets(net, ys)
    mask = torch.ones(xs.shape[:2], dtype=net.dtype) if mask is None else mask.to(net.dtype)
    states = net.initial_state(xs.shape[1])
    E = xs.new_zeros(())
    for t in range(xs.shape[0]):
        if window is not None and t > 0 and t % window == 0:
            states = [LayerState(s.s.detach(), s.y.detach()) for s in states]
        o, states = net.step(xs[t], states)
        E = E + (mask[t] * step_loss(o, target[t], kind)).sum()
        if rate_reg is not None:
            lam, r0 = rate_reg
            E = E + sum(lam * xs.shape[1] * ((st.y.mean(0) - r0) ** 2).sum() for st in states[:-1])
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(E, list(params.values()))
    return dict(zip(params, grads))


ORACLE_GRAPHS = ("exact", "diagonal", "none", "factorized")
ERROR_FORMS = ("random-error", "symmetric-error", "backprop-in-space")  # output-error signals' `oracle` values


def oracle_graph(trace: str) -> str:
    """The modified graph a registered trace kind declares; unknown kinds and graphs are refused."""
    from osttp.rules import TRACE_KINDS

    graph = TRACE_KINDS.get(trace).meta.get("oracle")
    if graph not in ORACLE_GRAPHS:
        raise ValueError(f"trace kind {trace!r} declares oracle graph {graph!r}; the oracles know {ORACLE_GRAPHS}")
    return graph


def signal_form(signal: str) -> str:
    """How the oracle computes a registered signal: "objective" (forward-only: its declared objective)
    or the output-error form its `oracle` metadata names; unknown forms are refused."""
    from osttp.rules import SIGNALS

    entry = SIGNALS.get(signal)
    if not entry.meta.get("uses_output_error"):
        return "objective"
    form = entry.meta.get("oracle")
    if form not in ERROR_FORMS:
        raise ValueError(f"signal {signal!r} uses the output error and declares oracle form {form!r}; the oracles "
                         f"know {ERROR_FORMS}")
    return form


class FixedPrior:
    """A stand-in training split for `fit`: its target prior is given."""

    def __init__(self, prior: Tensor) -> None:
        self.prior = prior

    def target_prior(self) -> Tensor:
        return self.prior


def objective_signal(sig, net: Network, l: int, y: Tensor, ctx) -> Tensor:
    """L = d J^l_t / d y for the signal's declared objective J (zero where J does not depend on y); the
    signal's own state is in ctx.states, advanced by the caller."""
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        J = sig.local_objective(net, l, y, ctx)
        (g,) = torch.autograd.grad(J, y, allow_unused=True)
    return torch.zeros_like(y) if g is None else g


def _readout_step(net: Network, y: Tensor, o_prev: Tensor) -> Tensor:
    """o_t = kappa o_{t-1} + V y_t + c, written out here (independent of Readout.step)."""
    return net.readout.kappa * o_prev + y @ net.readout.weight.T + net.readout.bias


def _layer_step(layer, x: Tensor, state: LayerState, graph: str) -> LayerState:
    """One step of a layer on the modified graph `graph`."""
    if graph not in ORACLE_GRAPHS:
        raise ValueError(f"unknown oracle graph {graph!r}; expected one of {ORACLE_GRAPHS}")
    trace = graph
    y_prev, s_prev = state.y, state.s
    if trace == "none":
        y_prev, s_prev = y_prev.detach(), s_prev.detach()
    I = x @ layer.W.T
    if layer.H is not None:
        if trace == "diagonal":
            Hd = torch.diagonal(layer.H)
            I = I + y_prev.detach() @ (layer.H - torch.diag(Hd)).T + y_prev * Hd
        else:
            I = I + y_prev @ layer.H.T
    s = layer.cell.dynamics(I, s_prev, y_prev, layer.b)
    return LayerState(s, layer.cell.output(s, layer.b))


def resting_decay_by_autograd(cell) -> float:
    """d s_t,0/d s_{t-1},0 of the cell's forward function at rest (s = y = 0, input 1, initial bias)."""
    k = cell.n_states
    s_prev = torch.zeros(1, 1, k, dtype=torch.float64, requires_grad=True)
    s = cell.dynamics(torch.ones(1, 1, dtype=torch.float64), s_prev, torch.zeros(1, 1, dtype=torch.float64),
                      torch.full((1,), float(cell.bias_init), dtype=torch.float64))
    (g,) = torch.autograd.grad(s[0, 0, 0], s_prev)
    return float(g[0, 0, 0])


def _factorized_layer_step(layer, x: Tensor, state: LayerState, bars: tuple[Tensor, Tensor | None] | None
                           ) -> tuple[LayerState, tuple[Tensor, Tensor | None], Tensor]:
    """One step on the "factorized" graph. Returns the b-path state (carried to the next step), the
    filtered presynaptic vectors, and the output whose gradient the signal is contracted with:
    its value is y_t, its W/H gradient that of the factorized path, its b gradient the diagonal one."""
    lam = resting_decay_by_autograd(layer.cell)
    W, H, b = layer.W, layer.H, layer.b
    y_prev, s_prev = state.y, state.s
    xbar = x.detach() if bars is None else lam * bars[0] + x.detach()
    ybar = None
    # b path: the diagonal graph with the weights held fixed.
    I = x @ W.detach().T
    if H is not None:
        Hd = torch.diagonal(H).detach()
        I = I + y_prev.detach() @ (H.detach() - torch.diag(Hd)).T + y_prev * Hd
        ybar = y_prev.detach() if bars is None else lam * bars[1] + y_prev.detach()
    s_b = layer.cell.dynamics(I, s_prev, y_prev, b)
    y_b = layer.cell.output(s_b, b)
    # W/H path: one step, no history; d I/d W_ij = x-bar_j, d I/d H_ij = y-bar_j, value unchanged.
    drive = xbar @ W.T
    if H is not None:
        drive = drive + ybar @ H.T
    I_w = I.detach() + (drive - drive.detach())
    s_w = layer.cell.dynamics(I_w, s_prev.detach(), y_prev.detach(), b.detach())
    y_w = layer.cell.output(s_w, b.detach())
    return LayerState(s_b, y_b), (xbar, ybar), y_b + (y_w - y_w.detach())


def _spatial_signal_at_step(net: Network, l: int, y_l: Tensor, prev_states: list[LayerState],
                            o_prev: Tensor, target: Tensor, mask: Tensor, kind: str) -> Tensor:
    """dE_t/dy_t^l through the layers above at step t only (their previous states held fixed)."""
    y = y_l.detach().requires_grad_(True)
    inp = y
    for k in range(l + 1, len(net.layers)):
        st = LayerState(prev_states[k].s.detach(), prev_states[k].y.detach())
        inp = net.layers[k](inp, st).y
    E = (mask * step_loss(_readout_step(net, inp, o_prev.detach()), target, kind)).sum()
    (g,) = torch.autograd.grad(E, y)
    return g


def _local_error_at_step(y_l: Tensor, u_prev: Tensor, B: Tensor, target: Tensor, mask: Tensor, kind: str,
                         beta: float, kappa: float, prior: Tensor | None) -> Tensor:
    """d/dy_t of the layer's local loss sum_b m_t E(beta u_t B^T + b_p, y*_t) / beta, u_t = kappa u_{t-1} + y_t
    (u_{t-1} a constant), by autograd; b_p = log p (ce) or log(p / (1 - p)) (bce), p clipped to [1e-4, 1 - 1e-4]."""
    y = y_l.detach().requires_grad_(True)
    z = beta * ((kappa * u_prev + y) @ B.T)
    if prior is not None:
        p = torch.clamp(prior, 1e-4, 1 - 1e-4)
        z = z + (torch.log(p) if kind == "ce" else torch.log(p / (1 - p)))
    E = (mask * step_loss(z, target, kind)).sum() / beta
    (g,) = torch.autograd.grad(E, y)
    return g


def online_oracle(net: Network, xs: Tensor, ys: Tensor, mask: Tensor | None, trace: str, signal: str,
                  rate_reg: tuple[float, float] | None = None, prior: Tensor | None = None,
                  fit=None, local: tuple[float, float] | None = None) -> dict[str, Tensor]:
    """Gradients of an online rule (registered trace kind x signal) by autograd on its modified graph.

    The signal instance the oracle asks for objectives is fitted with `fit` (a training split), or with a
    split whose target prior is `prior`; `local` = (beta, kappa) builds the local-error signal with those
    parameters. A signal's own state (init_state/advance) is carried here step by step, as the learner does."""
    from osttp.rules import SIGNALS
    from osttp.rules.losses import Loss
    from osttp.rules.signals import StepContext

    graph, form = oracle_graph(trace), signal_form(signal)
    sig = SIGNALS.build(signal, **({} if local is None else {"beta": local[0], "kappa": local[1]}))
    if fit is not None or prior is not None:
        sig.fit(net, fit if fit is not None else FixedPrior(prior))
    kind = loss_kind(ys)
    targets = one_hot_targets(net, ys)
    T, B = xs.shape[:2]
    masks = torch.ones(T, B, dtype=net.dtype) if mask is None else mask.to(net.dtype)
    states = net.initial_state(B)[:-1]
    bars: list = [None] * len(net.layers)  # the factorized graph's filtered presynaptic vectors
    o = torch.zeros(B, net.n_out, dtype=net.dtype)
    sig_states = [sig.init_state(net, l, B) for l in range(len(net.layers))]
    total = xs.new_zeros(())
    for t in range(T):
        target, m = targets[t], masks[t]
        prev, o_prev = states, o
        new_states, ys_t = [], []
        inp = xs[t]
        for l, (layer, st) in enumerate(zip(net.layers, states)):
            if graph == "factorized":
                st, bars[l], y_signal = _factorized_layer_step(layer, inp.detach(), st, bars[l])
            else:
                st = _layer_step(layer, inp.detach(), st, graph)
                y_signal = st.y
            new_states.append(st)
            ys_t.append(y_signal)
            inp = st.y
        o = _readout_step(net, inp.detach(), o_prev)
        total = total + (m * step_loss(o, target, kind)).sum()
        error = (m.unsqueeze(-1) * (prediction(o, kind) - target)).detach()
        for l in range(len(net.layers)):
            sig_states[l] = sig.advance(sig_states[l], ys_t[l].detach().clone())
        ctx = StepContext(target=target, mask=m, loss=Loss(kind), states=sig_states,
                          outputs=[y.detach() for y in ys_t])
        above = None
        for l in reversed(range(len(net.layers))):
            if form == "objective":
                L = objective_signal(sig, net, l, ys_t[l], ctx)
            elif form == "random-error":
                L = error @ net.feedback[l]
            elif form == "symmetric-error":
                L = error @ net.readout.weight if above is None else above @ net.layers[l + 1].W
            else:  # backprop-in-space
                L = _spatial_signal_at_step(net, l, ys_t[l], prev, o_prev, target, m, kind)
            L = L.detach()
            above = L
            total = total + (L * ys_t[l]).sum()
            if rate_reg is not None:  # lam * B * sum_i (batch-mean y_i - target)^2, on the layer's own graph
                lam, r0 = rate_reg
                total = total + lam * B * ((ys_t[l].mean(0) - r0) ** 2).sum()
        states = new_states
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(total, list(params.values()), allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(p)) for (n, p), g in zip(params.items(), grads)}


def relative_error(a: Tensor, b: Tensor) -> float:
    scale = max(float(b.norm()), float(a.norm()), 1e-300)
    return float((a - b).norm()) / scale


def assert_grads_close(got: dict[str, Tensor], want: dict[str, Tensor], tol: float = 1e-10) -> None:
    assert set(got) == set(want), (sorted(got), sorted(want))
    for name in want:
        assert float(want[name].norm()) > 0 or float(got[name].norm()) == 0, name
        err = relative_error(got[name], want[name])
        assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.0e}"


def spike_statistics(net: Network, xs: Tensor) -> list[tuple[float, int]]:
    """Per layer: the firing rate, and the number of spikes followed by another step (each one
    exercises the reset path at the next step)."""
    stats = []
    with torch.no_grad():
        states = net.initial_state(xs.shape[1])
        ys: list[list[Tensor]] = [[] for _ in net.layers]
        for x in xs:
            _, states = net.step(x, states)
            for seq, st in zip(ys, states):  # hidden layers only (the readout's state comes last)
                seq.append(st.y)
    for seq in ys:
        y = torch.stack(seq)
        stats.append((float(y.mean()), int((y[:-1] > 0.5).sum())))
    return stats
