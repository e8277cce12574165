"""`osttp report` on stream directories: one row per run and one prequential plot with a curve per run.

    report.md / report.json / report.png in --out (or in the one directory given)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from osttp.errors import OsttpError
from osttp.experiment.checkpoint import dumps_json, read_json, write_text_atomic
from osttp.plots import plot_stream

CONFIG_NAME = "stream.toml"  # what marks a stream directory (osttp.experiment.stream writes it)


def is_stream_dir(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file()


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    mpath = path / "metrics.jsonl"
    if mpath.is_file():
        for i, line in enumerate(mpath.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    raise OsttpError(f"{str(mpath)!r} line {i + 1} is not JSON") from None
    return out


def _num(x: Any, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) else "n/a"


def stream_rows(dirs: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for d in dirs:
        if not is_stream_dir(d):
            raise OsttpError(f"{str(d)!r} is not a stream directory ({CONFIG_NAME}); report stream and training "
                             "directories separately")
        res = read_json(d / "results.json") if (d / "results.json").is_file() else None
        rows.append({"dir": str(d), "name": d.name, "results": res, "records": _records(d)})
    return rows


def _label(row: dict[str, Any], used: set[str]) -> str:
    res = row["results"] or {}
    label = res.get("prequential", {}).get("rule") or row["name"]  # the learner's name: tbptt-10, not tbptt
    if label in used:
        label = f"{label} ({row['name']})"
    used.add(label)
    return label


def stream_table(rows: list[dict[str, Any]], labels: list[str]) -> str:
    first = next((r["results"] for r in rows if r["results"]), {}) or {}
    m = first.get("prequential", {}).get("metric_name", "metric")
    lines = [f"| run | status | schedule | steps | cumulative {m} | last window {m} | mean pre-drift window | "
             "drifts recovered | mean recovery steps | mean drop | steps/s | learner state MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row, label in zip(rows, labels):
        res = row["results"]
        if not res:
            lines.append(f"| {label} | incomplete | | | | | | | | | | |")
            continue
        p = res["prequential"]
        lines.append(f"| {label} | {res['status']} | {p['schedule']} | {p['steps']} | {_num(p['cumulative'])} | "
                     f"{_num(p['final_window'])} | {_num(p['pre_drift_mean'])} | {p['n_recovered']}/{p['n_drifts']} | "
                     f"{_num(p['mean_recovery_steps'], 0)} | {_num(p['mean_drop'])} | {_num(res['steps_per_s'], 0)} | "
                     f"{_num(res['learner_state_mb'], 3)} |")
    return "\n".join(lines)


def write_stream_report(dirs: list[Path], out: Path, *, command: str) -> str:
    """Write report.md/.json/.png for stream directories; returns the table."""
    rows = stream_rows(dirs)
    used: set[str] = set()
    labels = [_label(r, used) for r in rows]
    table = stream_table(rows, labels)
    first = next((r["results"] for r in rows if r["results"]), None)
    if first is None:
        raise OsttpError("no completed stream run among " + ", ".join(repr(r["dir"]) for r in rows))
    p = first["prequential"]
    out.mkdir(parents=True, exist_ok=True)
    plot_stream({lab: r["records"] for lab, r in zip(labels, rows)}, p["metric_name"], out / "report.png",
                drift_steps=[d["step"] for d in p["drifts"]], title="osttp report: " + first["task"])
    write_text_atomic(out / "report.json", dumps_json({"command": command, "runs": [
        {"label": lab, "dir": r["dir"], "results": r["results"]} for lab, r in zip(labels, rows)]}))
    md = ["# osttp report (streams)", "", "```", command, "```", "", table, "",
          f"- prequential: each step scored before the learner updates on it; window = {p['window']} scored events, "
          f"recovery tolerance {p['tolerance']}; drift points of the first run: "
          f"{', '.join(str(d['step']) for d in p['drifts']) or 'none'}", "", "![prequential curves](report.png)", ""]
    write_text_atomic(out / "report.md", "\n".join(md))
    return f"{table}\n\nreport: {out / 'report.md'}   plot: {out / 'report.png'}"
