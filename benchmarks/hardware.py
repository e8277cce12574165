"""OSTTP (and BPTT as a reference) on smnist-rows with simulated synapses (issue 6): float, PCM + mixed
precision, PCM + stochastic updates, 4-bit quantised weights; test accuracy, pulses per synapse, and
accuracy against drift.

    python benchmarks/hardware.py [--train-limit 10000] [--test-limit 2000] [--epochs 3] [--batch 16]
        [--sizes 28,128,10] [--cell rnn] [--cell-options JSON] [--recurrent] [--lr 3e-4]
        [--input-gain 1] [--auto-w-max 2] [--rules osttp,bptt] [--configs ...] [--jobs 2] [--out results/hardware.json]
        [--plot docs/hardware_drift.png] [--replot results/hardware.json]
    python benchmarks/hardware.py --config configs/delayed_xor_pcm.toml --rules osttp,osttp-local,bptt \
        --seeds 0,1,2 --out results/hardware_xor.json --plot docs/hardware_xor_drift.png [-- extra train flags]

The --config form (benchmarks/hardware_config.py) trains a shipped hardware config and its float
reference through `osttp train`; the rest of this docstring is about the smnist-rows form.

Every configuration starts from the same network (same seed) and sees the same batches; the
hardware ones use `osttp.hardware.HardwareTraining` (weight matrices in devices, biases digital SGD,
a fresh noisy read before every step) and plain SGD semantics, like the float baseline
(`torch.optim.SGD`). Test accuracy is read right after training (t = 0, read noise on); the drift curve
reads the PCM + mixed-precision network from 1 s to 1 day later, with and without global drift
compensation. Configurations run in parallel worker processes (`--jobs`), one thread each.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
from typing import Any

CONFIGS: dict[str, dict[str, Any]] = {
    "float": {"device": None, "scheme": None},
    "pcm-mixed-precision": {"device": "pcm", "scheme": "mixed-precision", "drift": True},
    "pcm-stochastic": {"device": "pcm", "scheme": "stochastic"},
    "quantized-4bit": {"device": "quantized-4bit", "scheme": "mixed-precision"},
}


def build(settings: dict[str, Any]):
    import torch

    import osttp

    net = osttp.Network.from_sizes(settings["sizes"], cell=settings["cell"], recurrent=settings["recurrent"],
                                   seed=settings["seed"], cell_options=settings["cell_options"])
    with torch.no_grad():  # input gain: a stronger first-layer drive than Glorot gives (see docs)
        net.layers[0].W.mul_(settings["input_gain"])
    return net


def run_config(job: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    rule, name, settings = job
    import torch

    torch.set_num_threads(1)
    import osttp
    import osttp.tasks
    from osttp.hardware import HardwareTraining, QuantizedDevice, evaluate, evaluate_drift

    spec = CONFIGS[name]
    t_start = time.perf_counter()
    train = osttp.tasks.load("smnist-rows", "train", limit=settings["train_limit"])
    test = osttp.tasks.load("smnist-rows", "test", limit=settings["test_limit"])
    net = build(settings)
    lr = settings["lr"]
    hw = None
    if spec["device"] is None:
        optimizer: Any = torch.optim.SGD(net.parameters(), lr=lr)
    else:
        device = QuantizedDevice(bits=4) if spec["device"] == "quantized-4bit" else spec["device"]
        hw = HardwareTraining(net, device=device, scheme=spec["scheme"], lr=lr, seed=settings["seed"],
                              auto_w_max=settings["auto_w_max"])
        optimizer = hw.optimizer
    learner = osttp.make_learner(rule, net, optimizer=optimizer)
    if hw is not None:
        learner = hw.wrap(learner)
    curve = []
    for epoch in range(settings["epochs"]):
        loss_sum, steps = 0.0, 0.0
        for batch in train.batches(settings["batch"], shuffle=True, seed=epoch):
            learner.reset(batch.xs.shape[1])
            for t in range(batch.xs.shape[0]):
                learner.step(batch.xs[t], batch.ys[t], batch.mask[t])
            loss_sum += float(learner.loss_sum)
            steps += float(batch.mask.sum())
            learner.apply()
        m = evaluate(net, hw, test, batch_size=500, seed=settings["seed"])
        curve.append({"epoch": epoch + 1, "train_loss": loss_sum / steps, "test_accuracy": m["accuracy"],
                      "test_loss": m["loss"], "elapsed_s": time.perf_counter() - t_start})
        print(f"[{rule}/{name}] epoch {epoch + 1}: train loss {loss_sum / steps:.4f}, test accuracy "
              f"{m['accuracy']:.4f} ({time.perf_counter() - t_start:.0f} s)", flush=True)
    train_s = time.perf_counter() - t_start
    out: dict[str, Any] = {"rule": rule, "name": name, "device": spec["device"] or "float", "scheme": spec["scheme"],
                           "test_accuracy": curve[-1]["test_accuracy"], "test_loss": curve[-1]["test_loss"],
                           "curve": curve, "train_and_eval_s": train_s,
                           "weight_max_abs": {n: float(p.detach().abs().max()) for n, p in net.named_parameters()
                                              if p.dim() == 2}}
    if hw is not None:
        out["hardware"] = hw.describe()
        out["pulses"] = hw.pulse_counts()
        out["range"] = {n: (a.max_holdable_weight if hasattr(a, "max_holdable_weight") else a.config.w_max)
                        for n, a in hw.synapses.arrays.items()}
        # Read noise off: what precision alone costs (and, for PCM, how much read noise costs on top).
        out["test_accuracy_noise_free_read"] = evaluate(net, hw, test, batch_size=500, read_noise=False,
                                                        seed=settings["seed"])["accuracy"]
        if spec.get("drift"):
            t0 = time.perf_counter()
            out["drift"] = evaluate_drift(net, hw, test, batch_size=500, seed=settings["seed"])
            out["drift_eval_s"] = time.perf_counter() - t0
    out["wall_s"] = time.perf_counter() - t_start
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-limit", type=int, default=10000)
    ap.add_argument("--test-limit", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--sizes", default="28,128,10")
    ap.add_argument("--cell", default="rnn")
    ap.add_argument("--cell-options", default="{}")
    ap.add_argument("--recurrent", action="store_true")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--input-gain", type=float, default=1.0)
    ap.add_argument("--auto-w-max", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rules", default="osttp,bptt")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="results/hardware.json")
    ap.add_argument("--plot", default="docs/hardware_drift.png")
    ap.add_argument("--replot", metavar="RESULTS_JSON", help="only redraw --plot from a results file")
    ap.add_argument("--config", metavar="TOML", help="a shipped hardware config against its float reference, "
                    "through `osttp train` (benchmarks/hardware_config.py); uses --rules, --seeds, --out, --plot")
    ap.add_argument("--seeds", default="0,1,2", help="with --config: seeds of every rule")
    ap.add_argument("--runs", default="runs/hw", help="with --config: where the run directories go")
    ap.add_argument("--redrift", action="store_true",
                    help="with --config: recompute drift.json of finished hardware runs from their model.pt")
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.config:
        import hardware_config

        command = "python benchmarks/hardware.py " + " ".join(shlex.quote(a) for a in argv)
        hardware_config.main(args.config, args.rules.split(","), [int(s) for s in args.seeds.split(",")],
                             args.runs, args.out, args.plot, extra, command, args.redrift)
        return
    rules = args.rules.split(",")
    settings = {"task": "smnist-rows", "rules": rules, "train_limit": args.train_limit,
                "test_limit": args.test_limit, "epochs": args.epochs, "batch": args.batch,
                "sizes": [int(s) for s in args.sizes.split(",")], "cell": args.cell,
                "cell_options": json.loads(args.cell_options), "recurrent": args.recurrent, "lr": args.lr,
                "input_gain": args.input_gain, "auto_w_max": args.auto_w_max, "seed": args.seed,
                "optimizer": "SGD (plain; loss summed over supervised steps and batch)",
                "schedule": "sequence-end", "read_noise_training": "per-step (one read per step, shared by "
                "the batch)", "test_read": "t = 0 after training, read noise on, per-sequence reads"}
    if args.replot:
        with open(args.replot) as f:
            saved = json.load(f)
        drifts = {r: res[n]["drift"] for r, res in saved["results"].items() for n in res if "drift" in res[n]}
        plot_all(drifts, saved["results"], saved["settings"], args.plot)
        print(f"wrote {args.plot} from {args.replot}")
        return
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; expected some of {list(CONFIGS)}")
    t0 = time.perf_counter()
    # Longest first (PCM, BPTT), so the workers finish together.
    jobs = sorted(((r, n, settings) for r in rules for n in names),
                  key=lambda j: (CONFIGS[j[1]]["device"] != "pcm", j[0] != "bptt", j[1]))
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        done = pool.map(run_config, jobs, chunksize=1)
    wall = time.perf_counter() - t0
    results = {r: {n: next(d for d in done if d["rule"] == r and d["name"] == n) for n in names} for r in rules}

    import torch

    command = "python benchmarks/hardware.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    report = {"command": command, "settings": settings, "wall_s": wall,
              "machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__, "cpus": os.cpu_count(), "jobs": args.jobs},
              "results": results}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nwrote {args.out} ({wall:.0f} s)\n")
    print("| rule | configuration | test accuracy | noise-free read | update pulses per synapse | max | time (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in rules:
        for n in names:
            res = results[r][n]
            p = res.get("pulses", {}).get("total", {})
            nf = res.get("test_accuracy_noise_free_read")
            print(f"| {r} | {n} | {res['test_accuracy']:.4f} | {'-' if nf is None else f'{nf:.4f}'} "
                  f"| {p.get('per_synapse', 0.0):.1f} | {p.get('max_per_synapse', 0)} | {res['wall_s']:.0f} |")
    drifts = {r: results[r][n]["drift"] for r in rules for n in names if "drift" in results[r][n]}
    for r, drift in drifts.items():
        print(f"\n{r}, PCM + mixed precision\n| t (s) | accuracy, no compensation | accuracy, compensation |"
              "\n|---|---|---|")
        for t in sorted({row["t_s"] for row in drift}):
            acc = {row["compensation"]: row["accuracy"] for row in drift if row["t_s"] == t}
            print(f"| {t:.0f} | {acc.get(False, float('nan')):.4f} | {acc.get(True, float('nan')):.4f} |")
    if args.plot and drifts:
        plot_all(drifts, results, settings, args.plot)
        print(f"\nwrote {args.plot}")


def plot_all(drifts: dict[str, list[dict[str, Any]]], results: dict[str, Any], settings: dict[str, Any],
             path: str) -> None:
    """One panel per rule: `osttp.hardware.plot_drift` draws one; several rules go side by side."""
    from osttp.hardware import plot_drift

    if len(drifts) == 1:
        (r, drift), = drifts.items()
        ref = {"float (digital)": results[r]["float"]["test_accuracy"]} if "float" in results[r] else None
        plot_drift(drift, path, reference=ref, title=f"{r}, smnist-rows, PCM + mixed precision")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(drifts), figsize=(5.0 * len(drifts), 3.6), sharey=True)
    for ax, (r, drift) in zip(axes, drifts.items()):
        for comp, style in ((False, "o-"), (True, "s--")):
            sel = [row for row in drift if row["compensation"] is comp]
            ax.plot([row["t_s"] for row in sel], [row["accuracy"] for row in sel], style,
                    label="global drift compensation" if comp else "no compensation")
        if "float" in results[r]:
            ax.axhline(results[r]["float"]["test_accuracy"], color="C2", linestyle=":", label="float (digital)")
        ax.set_xscale("log")
        ax.set_xlabel("time after programming (s)")
        ax.set_title(f"{r}: PCM + mixed precision", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=8)
    kind = "recurrent " if settings["recurrent"] else ""
    fig.suptitle(f"smnist-rows, {kind}{settings['cell']} {'-'.join(map(str, settings['sizes']))}, "
                 f"{settings['train_limit']} training sequences x {settings['epochs']} epochs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
