"""`benchmarks/hardware.py --config`: a shipped hardware config against its float reference.

    python benchmarks/hardware.py --config configs/delayed_xor_pcm.toml --rules osttp,osttp-local,bptt \
        --seeds 0,1,2 --out results/hardware_xor.json --plot docs/hardware_xor_drift.png

For every rule and seed two `osttp train` runs from the same config, one after the other, one thread
each: the config as it stands (simulated synapses, its [hardware] recipe) and the same with
``--synapse float`` (plain SGD at the same lr: what the devices are trained by). Both keep their run
directories under --runs. The report holds each run's valid/test metric, wall time, the hardware run's
pulse statistics, conductance histograms (before/after training) and drift rows, and per rule the
float-minus-hardware gaps per seed. Extra flags after ``--`` go to every run (e.g. ``-- --epochs 5``).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPORT_TIMES = (1.0, 3600.0, 86400.0, 2592000.0)  # 1 s, 1 h, 1 day, 1 month
TIME_NAMES = {1.0: "1 s", 3600.0: "1 h", 86400.0: "1 day", 2592000.0: "1 month"}


def train(config: str, rule: str, seed: int, out: Path, extra: list[str]) -> dict[str, Any]:
    """One `osttp train` run (reused when its results.json exists); its results and drift rows."""
    if not (out / "results.json").exists():
        cmd = [sys.executable, "-m", "osttp", "train", "--config", config, "--rule", rule, "--seed", str(seed),
               "--threads", "1", "--quiet", "--out", str(out), *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        print(f"  {out.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    res = json.loads((out / "results.json").read_text())
    drift = json.loads((out / "drift.json").read_text()) if (out / "drift.json").exists() else []
    return {"results": res, "drift": drift}


def recompute_drift(out: Path) -> None:
    """drift.json of a finished hardware run again, from its model.pt (the devices' final state), with
    the code as it is now: for runs trained before a change to the drift evaluation."""
    import torch

    from osttp.experiment import config as C
    from osttp.experiment.build import prepare
    from osttp.experiment.evaluate import drift_rows, drift_summary
    from osttp.experiment.tomlio import read_toml

    setup = prepare(C.resolve((read_toml(out / "config.toml"), str(out / "config.toml"))))
    saved = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    setup.net.load_state_dict(saved["model"])
    setup.backend.load_checkpoint_state({"hardware": saved["hardware"]})
    rows = drift_rows(setup)
    (out / "drift.json").write_text(json.dumps(rows, indent=1))
    results = json.loads((out / "results.json").read_text())
    results["drift"] = drift_summary(rows, results["metric_name"])  # the summary of the rows now written
    (out / "results.json").write_text(json.dumps(results, indent=1))


def _run_record(rule: str, seed: int, kind: str, run: dict[str, Any], out: Path) -> dict[str, Any]:
    res = run["results"]
    rec: dict[str, Any] = {"rule": rule, "seed": seed, "synapse": res["synapse"], "dir": str(out),
                           "valid_metric": res["valid_metric"], "test_metric": res["test_metric"],
                           "wall_s": res["wall_s"], "lr": res["lr"], "schedule": res["schedule"],
                           "batch_size": res["batch_size"], "kind": kind, "metric_name": res["metric_name"]}
    for key in ("pulses", "conductance_histograms", "hardware", "w_range", "readout_w_range", "n_pairs",
                "accumulator_threshold", "max_pulses", "train_reads", "eval_reads"):
        if key in res:
            rec[key] = res[key]
    if run["drift"]:
        rec["drift"] = run["drift"]
    return rec


def drift_table(runs: list[dict[str, Any]], metric: str) -> dict[str, dict[str, list[float]]]:
    """Per rule: metric at each REPORT_TIMES point, without ("none") and with ("global") compensation,
    one value per seed."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        if "drift" not in r:
            continue
        table = out.setdefault(r["rule"], {})
        for row in r["drift"]:
            if row["t_s"] in REPORT_TIMES:
                key = f"{TIME_NAMES[row['t_s']]}, {'global' if row['compensation'] else 'none'}"
                table.setdefault(key, []).append(row[metric])
    return out


def summarise(runs: list[dict[str, Any]], rules: list[str]) -> dict[str, Any]:
    """Per rule: float and hardware test metrics per seed, their gaps, mean ± std, pulses per synapse."""
    out: dict[str, Any] = {}
    for rule in rules:
        by = {k: {r["seed"]: r for r in runs if r["rule"] == rule and r["kind"] == k} for k in ("float", "hardware")}
        seeds = sorted(set(by["float"]) & set(by["hardware"]))
        gaps = [by["float"][s]["test_metric"] - by["hardware"][s]["test_metric"] for s in seeds]
        entry: dict[str, Any] = {"seeds": seeds, "gap_float_minus_hardware": gaps}
        for k in ("float", "hardware"):
            for split in ("valid", "test"):
                vals = [by[k][s][f"{split}_metric"] for s in seeds]
                entry[f"{k}_{split}"] = vals
                entry[f"{k}_{split}_mean"] = statistics.fmean(vals) if vals else None
                entry[f"{k}_{split}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        entry["pulses_per_synapse"] = [by["hardware"][s]["pulses"]["total"]["per_synapse"] for s in seeds]
        out[rule] = entry
    return out


def run_all(config: str, rules: list[str], seeds: list[int], runs_dir: Path, extra: list[str],
            redrift: bool = False) -> list[dict[str, Any]]:
    runs = []
    for rule in rules:
        for seed in seeds:
            for kind, flags in (("float", ["--synapse", "float", "--optimizer", "sgd"]), ("hardware", [])):
                out = runs_dir / f"{rule}-s{seed}-{kind}"
                if redrift and kind == "hardware" and (out / "drift.json").exists():
                    recompute_drift(out)
                runs.append(_run_record(rule, seed, kind, train(config, rule, seed, out, [*flags, *extra]), out))
    return runs


def print_tables(summary: dict[str, Any], drift: dict[str, dict[str, list[float]]]) -> None:
    print("| rule | float test (per seed) | hardware test (per seed) | gap per seed | pulses / synapse |")
    print("|---|---|---|---|---|")
    for rule, e in summary.items():
        f = ", ".join(f"{v:.3f}" for v in e["float_test"])
        h = ", ".join(f"{v:.3f}" for v in e["hardware_test"])
        g = ", ".join(f"{v:+.3f}" for v in e["gap_float_minus_hardware"])
        p = ", ".join(f"{v:.1f}" for v in e["pulses_per_synapse"])
        print(f"| {rule} | {f} | {h} | {g} | {p} |")
    for rule, table in drift.items():
        print(f"\n{rule}: " + "; ".join(f"{k} {statistics.fmean(v):.3f}" for k, v in table.items()))


def plot_drift_rules(runs: list[dict[str, Any]], summary: dict[str, Any], metric: str, path: str, title: str) -> None:
    """Drift curves, one panel per rule: mean over seeds without and with compensation, float as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = [r for r in summary if any("drift" in x for x in runs if x["rule"] == r)]
    if not rules:
        return
    fig, axes = plt.subplots(1, len(rules), figsize=(4.4 * len(rules), 3.4), sharey=True, squeeze=False)
    for ax, rule in zip(axes[0], rules):
        sel = [x for x in runs if x["rule"] == rule and "drift" in x]
        for comp, style in ((False, "o-"), (True, "s--")):
            times = sorted({row["t_s"] for row in sel[0]["drift"]})
            mean = [statistics.fmean(row[metric] for x in sel for row in x["drift"]
                                     if row["t_s"] == t and row["compensation"] is comp) for t in times]
            ax.plot(times, mean, style, label="global drift compensation" if comp else "no compensation")
        ax.axhline(summary[rule]["float_test_mean"], color="C2", linestyle=":", label="float (SGD)")
        ax.set_xscale("log")
        ax.set_xlabel("time after programming (s)")
        ax.set_title(f"{rule} (mean of {len(sel)} seeds)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric}")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_histograms(run: dict[str, Any], path: str) -> None:
    """Conductance histograms of one hardware run: per matrix, G+ and G- before and after training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = run["conductance_histograms"]
    names = list(hist["after"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for when, style in (("before", ":"), ("after", "-")):
            h = hist[when][name]
            for key, color in (("g_pos", "C0"), ("g_neg", "C3")):
                ax.stairs(h[key], h["edges"], color=color, linestyle=style, label=f"{key[2:]} {when}")
        ax.set_yscale("log")
        ax.set_xlabel("conductance G (µS)")
        ax.set_title(name, fontsize=10)
    axes[0][0].set_ylabel("devices")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{run['rule']} seed {run['seed']}: PCM conductances before / after training", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(config: str, rules: list[str], seeds: list[int], runs_dir: str, out: str, plot: str,
         extra: list[str], command: str, redrift: bool = False) -> None:
    t0 = time.perf_counter()
    runs = run_all(config, rules, seeds, Path(runs_dir), extra, redrift)
    metric = runs[0]["metric_name"]
    summary = summarise(runs, rules)
    drift = drift_table(runs, metric)
    report = {"command": command, "config": config, "extra_flags": extra, "wall_s": time.perf_counter() - t0,
              "summary": summary, "drift_table": drift, "runs": runs}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=1))
    print_tables(summary, drift)
    if plot:
        plot_drift_rules(runs, summary, metric, plot, f"{Path(config).stem}: PCM, drift after training")
        first = next(r for r in runs if "conductance_histograms" in r)
        plot_histograms(first, plot.replace("_drift", "_histograms") if "_drift" in plot else plot + ".hist.png")
    print(f"\nwrote {out}{' and ' + plot if plot else ''} ({report['wall_s']:.0f} s)")
