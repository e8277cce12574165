"""Summaries of finished runs: the table (mean ± std over seeds), summary.md/.json, learning curves
and one drift plot per run that has drift.json. Used by compare, demo and report.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Mapping

from osttp import plots
from osttp.experiment.checkpoint import dumps_json, write_text_atomic
from osttp.experiment.records import read_drift
from osttp.experiment.evaluate import drift_summary
from osttp.experiment.rundir import RunRecord, find_runs


def _experiment_key(cfg: Mapping[str, Any]) -> str:
    """What makes runs the same experiment up to the seed: the config without seed and run/compare keys."""
    c = {k: v for k, v in cfg.items() if k not in ("run", "compare")}
    c["train"] = {k: v for k, v in cfg["train"].items() if k != "seed"}
    return json.dumps(c, sort_keys=True, default=str)


def group_labels(runs: list[RunRecord]) -> list[str]:
    """A label per run: its rule (task/rule when tasks differ); runs of the same rule with different
    configurations get the name of their (compare) directory appended, so they are not averaged."""
    tasks = {r.cfg["task"]["name"] for r in runs}
    base = [r.cfg["train"]["rule"] if len(tasks) == 1 else f"{r.cfg['task']['name']}/{r.cfg['train']['rule']}"
            for r in runs]
    keys = [_experiment_key(r.cfg) for r in runs]
    labels = []
    for b, k, r in zip(base, keys, runs):
        if len({kk for bb, kk in zip(base, keys) if bb == b}) > 1:
            where = r.path.parent.parent.name if r.path.parent.name == "runs" else r.path.name
            b = f"{b} ({where})"
        labels.append(b)
    return labels


def _stats(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (n-1); std is None for a single value."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return {"n": 0, "mean": None, "std": None}
    return {"n": len(vals), "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None}


STAT_KEYS = ("valid_metric", "test_metric", "wall_s", "train_s", "peak_mem_mb", "learner_state_mb")


def summarize(runs: list[RunRecord]) -> dict[str, Any]:
    tasks = sorted({r.cfg["task"]["name"] for r in runs})
    groups: dict[str, list[RunRecord]] = {}
    for label, r in zip(group_labels(runs), runs):
        groups.setdefault(label, []).append(r)
    rows = {}
    for label, rs in groups.items():
        done = [r.results for r in rs if r.results and r.results.get("status") == "completed"]
        rows[label] = {"runs": len(rs), "completed": len(done), "seeds": [r.cfg["train"]["seed"] for r in rs],
                       **{k: _stats([d.get(k) for d in done]) for k in STAT_KEYS}}
    first = next((r.results for r in runs if r.results), {}) or {}
    return {
        "tasks": tasks,
        "metric_name": first.get("metric_name"),
        "higher_is_better": first.get("higher_is_better"),
        "chance": first.get("chance"),
        "test_params": first.get("test_params", runs[0].cfg["eval"]["test_params"]),
        "rules": rows,
        "runs": [{"dir": str(r.path), "task": r.cfg["task"]["name"], "rule": r.cfg["train"]["rule"],
                  "seed": r.cfg["train"]["seed"], "status": r.status, "epochs": len(r.history),
                  **({k: r.results.get(k) for k in ("valid_metric", "test_metric", "wall_s", "peak_mem_mb")}
                     if r.results else {})} for r in runs],
    }


def _pm(s: Mapping[str, Any], digits: int = 4) -> str:
    if s["mean"] is None:
        return "n/a"
    if s["std"] is None:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _num(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "n/a"


def summary_table(summary: Mapping[str, Any]) -> str:
    m = summary["metric_name"] or "metric"
    lines = [f"| rule | runs | valid {m} | test {m} | wall s | train s | peak MB | learner state MB |",
             "|---|---|---|---|---|---|---|---|"]
    for label, row in summary["rules"].items():
        runs = f"{row['completed']}/{row['runs']}"
        lines.append(f"| {label} | {runs} | {_pm(row['valid_metric'])} | {_pm(row['test_metric'])} | "
                     f"{_pm(row['wall_s'], 1)} | {_pm(row['train_s'], 1)} | {_pm(row['peak_mem_mb'], 0)} | "
                     f"{_pm(row['learner_state_mb'], 3)} |")
    return "\n".join(lines)


def _drift_markdown(drift: list[dict[str, Any]], m: str) -> list[str]:
    parts = ["## Drift (simulated synapses)", "",
             f"Test {m} against time after programming (read noise and drift on), without and with global "
             "drift compensation (one factor per array); from each run's drift.json.", "",
             f"| run | synapse | update | {m} at first t, no comp. / comp. | {m} at last t, no comp. / comp. |",
             "|---|---|---|---|---|"]
    for d in drift:
        f, la = d["summary"]["first"], d["summary"]["last"]
        parts.append(f"| {d['run']} | {d['synapse']} | {d['update']} | "
                     f"{_num(f['no_compensation'])} / {_num(f['compensation'])} (t = {f['t_s']:g} s) | "
                     f"{_num(la['no_compensation'])} / {_num(la['compensation'])} (t = {la['t_s']:g} s) |")
    return [*parts, "", *[f"![drift {d['run']}]({d['png']})" for d in drift], ""]


def summary_markdown(summary: Mapping[str, Any], title: str, command: str, png_name: str) -> str:
    chance = summary["chance"]
    parts = [f"# {title}", ""]
    if command:
        parts += ["```", command, "```", ""]
    parts += [summary_table(summary), ""]
    notes = ["runs: completed/started; values are mean ± sample standard deviation over seeds "
             "(one value when a single seed completed)",
             f"test {summary['metric_name']} measured with the {summary['test_params']} parameters",
             "peak MB: the process's peak resident memory (CPU; a compare shares one process) or "
             "torch.cuda.max_memory_allocated (GPU); learner state MB: the largest learner.state_nbytes() "
             "at a sequence end (traces, states, BPTT's stored graph)"]
    if chance is not None:
        notes.insert(1, f"chance level (best constant guess on test): {chance:.4f}")
    parts += [f"- {n}" for n in notes]
    bad = [r for r in summary["runs"] if r["status"] != "completed"]
    if bad:
        parts += ["", "Runs not completed: " + ", ".join(f"{Path(r['dir']).name} ({r['status']})" for r in bad)]
    parts += ["", f"![learning curves]({png_name})", ""]
    if summary.get("drift"):
        parts += _drift_markdown(summary["drift"], summary["metric_name"] or "metric")
    return "\n".join(parts)


def _drift_plots(runs: list[RunRecord], out: Path, png_name: str) -> list[dict[str, Any]]:
    """One drift PNG per run that has drift.json, named after the run (<png stem>-drift-<run>.png in `out`)."""
    made: list[dict[str, Any]] = []
    used: set[str] = set()
    for r in runs:
        path = r.path / "drift.json"
        if not path.is_file():
            continue
        rows = read_drift(path)
        name = r.path.name if r.path.name not in used else f"{r.path.parent.parent.name}-{r.path.name}"
        while name in used:
            name += "_"
        used.add(name)
        metric = plots.drift_metric(rows, (r.results or {}).get("metric_name"))
        png = f"{Path(png_name).stem}-drift-{name}.png"
        h = r.cfg["hardware"]
        plots.plot_drift(rows, out / png, metric=metric, title=f"{name}: {h['synapse']}, {h['update']}")
        made.append({"run": name, "dir": str(r.path), "png": png, "synapse": h["synapse"], "update": h["update"],
                     "summary": drift_summary(rows, metric)})
    return made


def write_summary(dirs: list[Path], out: Path, *, command: str, title: str, png_name: str, md_name: str,
                  json_name: str | None) -> dict[str, Any]:
    runs = find_runs(dirs)
    summary = summarize(runs)
    summary["command"] = command
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[list[dict[str, Any]]]] = {}
    for label, r in zip(group_labels(runs), runs):
        curves.setdefault(label, []).append(r.history)
    plots.learning_curves(curves, summary["metric_name"] or "metric", out / png_name, title=title,
                          chance=summary["chance"])
    summary["drift"] = _drift_plots(runs, out, png_name)
    if json_name:
        write_text_atomic(out / json_name, dumps_json(summary))
    write_text_atomic(out / md_name, summary_markdown(summary, title, command, png_name))
    return summary

