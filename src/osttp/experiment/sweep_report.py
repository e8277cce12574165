"""Sweep results: summary.json, summary.md and sweep.png from the trials of an Optuna study."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

from osttp.experiment.sweep_spec import Spec



def trial_rows(spec: Spec, trials: Sequence[Any]) -> list[dict[str, Any]]:
    """One plain dict per Optuna FrozenTrial, in trial-number order."""
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        ua = t.user_attrs
        state = t.state.name.lower()
        # a failed trial without a status was failed by Optuna's heartbeat check (its sweep died)
        status = ua.get("status") or ("interrupted" if state == "fail" else state)
        values = ua.get("values")
        if values is None:  # not launched by osttp (or queued, not yet started): decode what Optuna holds
            held = {**(t.system_attrs.get("fixed_params") or {}), **t.params}
            values = {}
            for q in spec.params:
                if q.key in held:
                    try:
                        values[q.key] = q.decode(held[q.key])
                    except ValueError:
                        values[q.key] = held[q.key]
        rows.append({
            "number": t.number, "state": state, "status": status,
            "value": t.value if t.state.name == "COMPLETE" else None,
            "values": values, "run_dir": ua.get("run_dir"), "host": ua.get("host"),
            "test_metric": ua.get("test_metric"), "wall_s": ua.get("wall_s"), "retry_of": ua.get("retry_of"),
        })
    return rows


def best_row(rows: Sequence[dict[str, Any]], maximize: bool) -> dict[str, Any] | None:
    done = [r for r in rows if r["state"] == "complete" and isinstance(r["value"], (int, float))
            and math.isfinite(r["value"])]
    if not done:
        return None
    # best value; the lowest trial number among equals, so the choice does not depend on order
    return sorted(done, key=lambda r: ((-r["value"] if maximize else r["value"]), r["number"]))[0]


def _masked(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", url)  # never write a database password into a report


def summarise(spec: Spec, rows: list[dict[str, Any]], *, maximize: bool, metric_name: str, storage: str,
              n_trials: int, command: str) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {
        "study": spec.name, "spec": str(spec.path), "storage": _masked(storage), "command": command,
        "sampler": spec.sampler, "metric": spec.metric, "metric_name": metric_name,
        "direction": "maximize" if maximize else "minimize", "n_trials": n_trials,
        "space": {q.key: (list(q.choices) if q.kind == "choice" else {"low": q.low, "high": q.high, "log": q.log})
                  for q in spec.params},
        "counts": counts, "best": best_row(rows, maximize), "trials": rows,
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "–"
    return json.dumps(v) if not isinstance(v, str) else v


def markdown(summary: dict[str, Any]) -> str:
    keys = list(summary["space"])
    m = summary["metric_name"]
    best = summary["best"]
    lines = [f"# Sweep `{summary['study']}`", "", f"Command: `{summary['command']}`", "",
             f"Sampler {summary['sampler']}, {summary['n_trials']} trials requested; selection on the **valid** "
             f"split only (`{summary['metric']}`, {m}, {summary['direction']}). Counts: "
             + ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items())) + ".", ""]
    if best is not None:
        setting = ", ".join(f"`{k}` = {_fmt(best['values'].get(k))}" for k in keys)
        lines += [f"**Best:** trial {best['number']}, valid {m} {_fmt(best['value'])} ({setting}); its test {m} "
                  f"{_fmt(best['test_metric'])} (reported, never used for selection).", ""]
    else:
        lines += ["No trial has completed yet.", ""]
    lines += ["| rank | trial | status | valid " + m + " | " + " | ".join(f"`{k}`" for k in keys) + " | wall s | run |",
              "|" + "---|" * (6 + len(keys))]
    sign = -1.0 if summary["direction"] == "maximize" else 1.0

    def rank_key(r: dict[str, Any]) -> tuple[bool, float, int]:  # best first, unfinished last
        return (r["value"] is None, sign * (r["value"] or 0.0), r["number"])

    ranked = sorted(summary["trials"], key=rank_key)
    for i, r in enumerate(ranked, 1):
        rank = str(i) if r["value"] is not None else ""
        cells = [rank, str(r["number"]), r["status"], _fmt(r["value"])] + [_fmt(r["values"].get(k)) for k in keys]
        cells += [_fmt(r["wall_s"]), r["run_dir"] or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> Path:
    """Valid metric against trial number (with the best so far) and against each swept key."""
    from osttp.plots import _pyplot

    plt = _pyplot()
    keys = list(summary["space"])
    done = [r for r in summary["trials"] if r["value"] is not None]
    maximize = summary["direction"] == "maximize"
    fig, axes = plt.subplots(1, 1 + len(keys), figsize=(4.2 * (1 + len(keys)), 3.4), squeeze=False)
    ax = axes[0][0]
    xs = [r["number"] for r in done]
    ys = [r["value"] for r in done]
    ax.plot(xs, ys, "o", color="C0", label="trial")
    best, run = [], None
    for y in ys:
        run = y if run is None else (max(run, y) if maximize else min(run, y))
        best.append(run)
    ax.step(xs, best, where="post", color="C1", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"valid {summary['metric_name']}")
    ax.legend(fontsize=8)
    for ax, key in zip(axes[0][1:], keys):
        space = summary["space"][key]
        vals = [r["values"].get(key) for r in done]
        if isinstance(space, dict):
            ax.plot(vals, ys, "o", color="C0")
            if space["log"]:
                ax.set_xscale("log")
        else:
            labels = [_fmt(c) for c in space]
            ax.plot([labels.index(_fmt(v)) if _fmt(v) in labels else -1 for v in vals], ys, "o", color="C0")
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
        ax.set_xlabel(key)
    fig.suptitle(f"sweep {summary['study']}: valid {summary['metric_name']} ({summary['direction']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(summary: dict[str, Any], out: Path) -> tuple[Path, Path, Path]:
    """summary.json, summary.md, sweep.png in out (each written whole, then renamed into place)."""
    j, m, png = out / "summary.json", out / "summary.md", out / "sweep.png"
    for path, text in ((j, json.dumps(summary, indent=1, default=str) + "\n"), (m, markdown(summary))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    tmp_png = out / "sweep.tmp.png"
    plot(summary, tmp_png)
    tmp_png.replace(png)
    return j, m, png
