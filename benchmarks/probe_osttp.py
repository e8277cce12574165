"""Plain-PyTorch probe of OSTTP (docs/learning.md: how the probes were run) (autograd-oracle form), DRTP, BPTT, readout-only on
smnist-rows, JSB, delayed XOR and any registered classification task (e.g. spoken-digits). One process, one thread. Prints one JSON line per epoch.

rule:
  bptt     plain autograd
  osttp    layer inputs detached; off-diagonal recurrent paths detached; hidden loss
           sum_t <stopgrad(L_t), y_t>, L_t = m_t * tgt(y*_t) @ B_l ; readout input detached
  drtp     as osttp plus previous state/output detached
  readout  hidden frozen (not trained), readout trained on its loss
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
import osttp.tasks  # noqa: E402

DATA = None  # the osttp search path: $OSTTP_DATA (see docs/data.md)

p = argparse.ArgumentParser()
a = p.add_argument
a("--task", default="smnist")  # smnist | jsb | xor | any registered classification task
a("--task_param", action="append", default=[])  # KEY=VALUE for a registered task, read as --task-param
a("--rule", default="osttp")
a("--cell", default="lif")  # lif | snu | ssnu | rnn
a("--hidden", default="256")  # comma list
a("--recurrent", type=int, default=1)
a("--alpha", type=float, default=0.9)  # LIF leak / SNU d / rnn leak
a("--g", default="relu")  # snu g
a("--slope", type=float, default=10.0)  # fast-sigmoid slope (lif)
a("--surr", default="fast-sigmoid")  # lif surrogate: fast-sigmoid | tanh
a("--in_gain", type=float, default=1.0)  # W of first layer x gain at init
a("--rec_gain", type=float, default=1.0)
a("--bias_init", type=float, default=None)
a("--readout", default="linear")  # linear | integrator
a("--kappa", type=float, default=0.9)
a("--classify", default="last")  # last | mean | max  (evaluated: all three reported)
a("--label", default="half")  # every | half | last | from:k (smnist)
a("--opt", default="adam")
a("--lr", type=float, default=1e-3)
a("--hid_opt", default=None)  # optimizer for hidden params (default: same)
a("--hid_lr", type=float, default=None)
a("--wd", type=float, default=0.0)  # decoupled (AdamW-style) on hidden W,H
a("--rate_reg", type=float, default=0.0)  # lambda * sum_t mean_b (rate_t - target)^2 -- local
a("--rate_target", type=float, default=0.1)
a("--fb_dist", default="uniform")  # uniform | gauss | sign
a("--fb_scale", type=float, default=None)  # bound (uniform) / std (gauss) / magnitude (sign)
a("--center", default="none")  # none | mean (y*-1/C or y*-pbar) | pm1 (2y*-1)
a("--fb_norm", type=int, default=0)  # 1: columns of B orthonormal-ish (rows orthogonalised)
a("--epochs", type=int, default=2)
a("--n_train", type=int, default=20000)
a("--bs", type=int, default=128)
a("--seed", type=int, default=0)
a("--clip", type=float, default=0.0)
a("--delay", type=int, default=5)
a("--xor_ntrain", type=int, default=2048)
a("--tag", default="")
a("--eval_every", type=int, default=1)
a("--loss_mean_time", type=int, default=0)
a("--train_bias", type=int, default=1)
a("--train_H", type=int, default=1)
a("--signal", default="tp")  # tp: target projection (with --center) | local: local-error projection
a("--beta", type=float, default=1.0)  # local: logit scale of the layer's local prediction beta * u B^T
a("--local_in", default="y")  # local: u = y (this step's output) | trace (low-pass of y, factor --local_kappa)
a("--local_kappa", type=float, default=0.9)
a("--local_fb", default="B")  # local: B (the layer's feedback matrix) | G (a second fixed random matrix)
args = p.parse_args()

torch.manual_seed(args.seed)
gen = torch.Generator().manual_seed(args.seed)

# ---------------------------------------------------------------- data
if args.task == "smnist":
    label = {"half": None}.get(args.label, args.label)
    train = osttp.tasks.load("smnist-rows", "train", root=DATA, label=label, limit=args.n_train)
    valid = osttp.tasks.load("smnist-rows", "valid", root=DATA, label=label)
    kind, C = "ce", 10
elif args.task == "jsb":
    train = osttp.tasks.load("jsb", "train", root=DATA)
    valid = osttp.tasks.load("jsb", "valid", root=DATA)
    kind, C = "bce", 88
elif args.task == "xor":
    train = osttp.tasks.load("delayed-xor", "train", delay=args.delay, n_train=args.xor_ntrain)
    valid = osttp.tasks.load("delayed-xor", "test", delay=args.delay)  # the test's own setting
    kind, C = "ce", 2
else:  # any registered classification task, e.g. spoken-digits; --task_param KEY=VALUE passes its options
    from osttp.experiment.tomlio import parse_scalar  # the CLI's reading of --task-param values

    params = {k: parse_scalar(v) for k, v in (kv.split("=", 1) for kv in args.task_param)}
    train = osttp.tasks.load(args.task, "train", root=DATA, **params)
    valid = osttp.tasks.load(args.task, "valid", root=DATA, **params)
    kind, C = "ce", train.n_out
n_in = train.n_in
sizes = [n_in] + [int(h) for h in args.hidden.split(",")]

pbar = None
if kind == "bce" and args.center == "mean":
    s, n = torch.zeros(C), 0
    for b in train.batches(32):
        s += (b.ys * b.mask[..., None]).sum((0, 1)); n += b.mask.sum()
    pbar = s / n


def glorot(n_out, n_in_):
    bound = math.sqrt(6.0 / (n_in_ + n_out))
    return torch.empty(n_out, n_in_).uniform_(-bound, bound, generator=gen)


class SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v > 0).float()

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        if args.surr == "tanh":
            return g * (1 - torch.tanh(v) ** 2)
        return g / (1 + args.slope * v.abs()) ** 2


spike = SpikeFn.apply

# ---------------------------------------------------------------- params
hid_params, layers = [], []
for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
    W = glorot(o, i) * (args.in_gain if l == 0 else 1.0)
    H = glorot(o, o) * args.rec_gain if args.recurrent else None
    binit = args.bias_init if args.bias_init is not None else (-1.0 if args.cell in ("snu", "ssnu") else 0.0)
    bb = torch.full((o,), binit)
    ps = [W] + ([H] if (H is not None and args.train_H) else []) + ([bb] if args.train_bias else [])
    for t in ps:
        t.requires_grad_(True)
    hid_params += ps
    layers.append({"W": W, "H": H, "b": bb})
V = glorot(C, sizes[-1]).requires_grad_(True)
c = torch.zeros(C, requires_grad=True)
out_params = [V, c]

fgen = torch.Generator().manual_seed(1000 + args.seed)
Bs = []
for n in sizes[1:]:
    if args.fb_dist == "uniform":
        s = args.fb_scale if args.fb_scale else math.sqrt(6.0 / n)
        B = torch.empty(C, n).uniform_(-s, s, generator=fgen)
    elif args.fb_dist == "gauss":
        s = args.fb_scale if args.fb_scale else math.sqrt(2.0 / n)
        B = torch.randn(C, n, generator=fgen) * s
    elif args.fb_dist == "sign":
        s = args.fb_scale if args.fb_scale else math.sqrt(2.0 / n)
        B = (torch.randint(0, 2, (C, n), generator=fgen).float() * 2 - 1) * s
    else:
        raise SystemExit(args.fb_dist)
    Bs.append(B)
Gs = [torch.empty_like(B).uniform_(-math.sqrt(6.0 / B.shape[1]), math.sqrt(6.0 / B.shape[1]), generator=fgen)
      for B in Bs] if args.local_fb == "G" else Bs


def make_opt(name, params, lr, wd=0.0):
    if name == "adam":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd) if wd else torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if name == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    raise SystemExit(name)


opts = [make_opt(args.opt, out_params, args.lr)]
if args.rule != "readout":
    opts.append(make_opt(args.hid_opt or args.opt, hid_params,
                         args.hid_lr if args.hid_lr is not None else args.lr, args.wd))


# ---------------------------------------------------------------- model
def layer_step(L, x, s_prev, y_prev, rule):
    if rule == "drtp":
        s_prev, y_prev = s_prev.detach(), y_prev.detach()
    if rule in ("osttp", "drtp"):
        x = x.detach()
    I = x @ L["W"].T
    H = L["H"]
    if H is not None:
        if rule == "osttp":
            Hd = torch.diagonal(H)
            I = I + y_prev.detach() @ (H - torch.diag(Hd)).T + y_prev * Hd
        else:
            I = I + y_prev @ H.T
    if args.cell == "lif":
        v = args.alpha * s_prev + I + L["b"] - y_prev
        return v, spike(v - 1.0)
    if args.cell in ("snu", "ssnu"):
        pre = I + args.alpha * s_prev * (1 - y_prev)
        s = torch.relu(pre) if args.g == "relu" else pre
        y = torch.sigmoid(s + L["b"]) if args.cell == "ssnu" else spike(s + L["b"])
        return s, y
    if args.cell == "rnn":
        s = args.alpha * s_prev + (1 - args.alpha) * (I + L["b"])
        return s, torch.tanh(s)
    raise SystemExit(args.cell)


def tgt_signal(y):  # y: (B,C) one-hot/multi-hot
    if args.center == "mean":
        return y - (1.0 / C if pbar is None else pbar)
    if args.center == "pm1":
        return 2 * y - 1
    return y


def local_error(u, target, l):
    """(sigma(beta u G^T) - y*) G: the gradient of the layer's local CE / beta w.r.t. u (u = y or its trace)."""
    z = args.beta * (u @ Gs[l].T)
    p = z.softmax(-1) if kind == "ce" else torch.sigmoid(z)
    return (p - target) @ Gs[l]


def run(xs, ys, mask, rule, train_mode):
    T, Bn = xs.shape[:2]
    ubar = [torch.zeros(Bn, n) for n in sizes[1:]]
    s = [torch.zeros(Bn, n) for n in sizes[1:]]
    y = [torch.zeros(Bn, n) for n in sizes[1:]]
    o = torch.zeros(Bn, C)
    outs, hid_loss, rates = [], 0.0, torch.zeros(len(s))
    tgt = torch.nn.functional.one_hot(ys, C).float() if kind == "ce" else ys
    for t in range(T):
        inp = xs[t]
        for l, L in enumerate(layers):
            s[l], y[l] = layer_step(L, inp, s[l], y[l], rule if train_mode else "bptt")
            inp = y[l]
            rates[l] += float(y[l].detach().mean())
        ro_in = inp.detach() if rule in ("osttp", "drtp", "readout") else inp
        if args.readout == "integrator":
            o = args.kappa * o + ro_in @ V.T + c
        else:
            o = ro_in @ V.T + c
        outs.append(o)
        if train_mode and rule in ("osttp", "drtp"):
            m = mask[t][:, None]
            for l in range(len(layers)):
                if args.signal == "local":
                    ubar[l] = args.local_kappa * ubar[l] + y[l].detach()
                    u = ubar[l] if args.local_in == "trace" else y[l].detach()
                    Lsig = m * local_error(u, tgt[t], l)
                else:
                    Lsig = (m * tgt_signal(tgt[t])) @ Bs[l]
                hid_loss = hid_loss + (Lsig.detach() * y[l]).sum() / Bn
                if args.rate_reg:
                    hid_loss = hid_loss + args.rate_reg * ((y[l].mean(0) - args.rate_target) ** 2).sum()
        elif train_mode and rule == "bptt" and args.rate_reg:
            for l in range(len(layers)):
                hid_loss = hid_loss + args.rate_reg * ((y[l].mean(0) - args.rate_target) ** 2).sum()
    return torch.stack(outs), hid_loss, rates / T


def step_losses(out, ys, mask):
    if kind == "ce":
        l = torch.nn.functional.cross_entropy(out.reshape(-1, C), ys.reshape(-1), reduction="none")
        l = l.view(ys.shape)
    else:
        l = torch.nn.functional.binary_cross_entropy_with_logits(out, ys, reduction="none").sum(-1)
    return l * mask


def evaluate():
    tot = {"last": 0, "mean": 0, "max": 0}
    n, nll, steps, rate = 0, 0.0, 0.0, 0.0
    nb = 0
    with torch.no_grad():
        for b in valid.batches(256 if kind == "ce" else 16):
            out, _, r = run(b.xs, b.ys, b.mask, "bptt", False)
            rate += float(r.mean()); nb += 1
            if kind == "ce":
                lab = b.ys[-1]
                m = b.mask
                last_idx = (m * torch.arange(m.shape[0])[:, None]).argmax(0)
                tot["last"] += int((out[last_idx, torch.arange(len(lab))].argmax(-1) == lab).sum())
                ms = (out * m[..., None]).sum(0) / m.sum(0)[:, None]
                tot["mean"] += int((ms.argmax(-1) == lab).sum())
                mx = (out.softmax(-1) * m[..., None]).amax(0)
                tot["max"] += int((mx.argmax(-1) == lab).sum())
                n += len(lab)
            else:
                nll += float(step_losses(out, b.ys, b.mask).sum()); steps += float(b.mask.sum())
    res = {"rate": rate / nb}
    if kind == "ce":
        res.update({k: v / n for k, v in tot.items()})
    else:
        res["nll"] = nll / steps
    return res


hist = []
t0 = time.time()
for ep in range(args.epochs):
    trate, nbat, tl = 0.0, 0, 0.0
    for b in train.batches(args.bs, shuffle=True, seed=ep + 100 * args.seed):
        out, hl, r = run(b.xs, b.ys, b.mask, args.rule, True)
        loss = step_losses(out, b.ys, b.mask).sum() / b.xs.shape[1]
        if args.loss_mean_time:
            loss = loss / b.xs.shape[0]
        for op in opts:
            op.zero_grad()
        (loss + hl).backward() if torch.is_tensor(hl) else loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(hid_params + out_params, args.clip)
        for op in opts:
            op.step()
        trate += float(r.mean()); nbat += 1; tl += float(loss.detach())
    if (ep + 1) % args.eval_every == 0 or ep == args.epochs - 1:
        ev = evaluate()
        ev.update({"ep": ep + 1, "train_loss": tl / nbat, "train_rate": trate / nbat,
                   "wall": round(time.time() - t0, 1)})
        hist.append(ev)
        print(json.dumps(ev), flush=True)
summary = {"args": vars(args), "hist": hist}
with open(Path(__file__).resolve().parent.parent / "results" / "probes_osttp.jsonl", "a") as f:
    f.write(json.dumps(summary) + "\n")
