"""The accuracy table: every rule on every task of a manifest, from finished `osttp compare` directories.

    python benchmarks/accuracy.py --manifest benchmarks/accuracy.toml          # table from finished runs
    python benchmarks/accuracy.py --manifest benchmarks/accuracy.toml --run    # also run what is missing
    python benchmarks/accuracy.py --run --only spoken-digits-official           # ... of these experiments

The manifest lists, per experiment, the compare commands that produce its runs (each with its own
--out directory). `--run` executes the ones whose summary.json is missing, at most --jobs at a time
(each run single-threaded); then results/accuracy.json and docs/results.md are written: per task and
rule, the number of seeds, the valid and test metric as mean ± std, wall time per run, the target,
and the exact commands. Run directories are not kept in the repository: a row of the manifest whose
runs are absent here is carried over from the existing results/accuracy.json (marked "carried" there,
its plot left as it was), so a session that re-runs one experiment does not erase the others. Configurations were selected on the valid split before these runs; the
test metric is read once per final configuration, here.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent


def out_dir(command: str) -> Path:
    words = shlex.split(command)
    return ROOT / words[words.index("--out") + 1]


def run_missing(experiments: list[dict[str, Any]], jobs: int) -> None:
    """Run every command whose compare directory has no summary.json yet (resuming interrupted ones)."""
    todo = [c for e in experiments for c in e["commands"] if not (out_dir(c) / "summary.json").is_file()]
    # (a compare directory without summary.json is resumed: its finished runs are kept)
    running: list[tuple[subprocess.Popen[bytes], str]] = []
    while todo or running:
        while todo and len(running) < jobs:
            cmd = todo.pop(0)
            words = shlex.split(cmd)
            if out_dir(cmd).exists():
                words.append("--resume")
            log = open(out_dir(cmd).with_suffix(".log"), "ab")
            print(f"start: {cmd}", flush=True)
            running.append((subprocess.Popen([sys.executable, "-m", "osttp", *words[1:]], cwd=ROOT, stdout=log,
                                             stderr=subprocess.STDOUT), cmd))
        time.sleep(5)
        for proc, cmd in list(running):
            if proc.poll() is not None:
                print(f"done ({proc.returncode}): {cmd}", flush=True)
                running.remove((proc, cmd))


def stat(values: list[float]) -> dict[str, Any]:
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None}
    return {"n": n, "mean": statistics.fmean(values), "std": statistics.stdev(values) if n > 1 else 0.0}


def fmt(st: dict[str, Any] | None, digits: int) -> str:
    if not st or st.get("n", 0) == 0 or st.get("mean") is None:
        return "—"
    if st["n"] == 1:
        return f"{st['mean']:.{digits}f}"
    return f"{st['mean']:.{digits}f} ± {st['std']:.{digits}f}"


def collect(experiments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (experiment, rule): the completed runs of that rule in any of the experiment's
    compare directories (seeds of one rule may be spread over several directories)."""
    rows = []
    for e in experiments:
        runs: dict[str, list[dict[str, Any]]] = {}
        for cmd in e["commands"]:
            for path in sorted((out_dir(cmd) / "runs").glob("*/results.json")):
                r = json.loads(path.read_text())
                if r.get("status") == "completed":
                    r["dir"], r["command"] = str(path.parent.relative_to(ROOT)), cmd
                    runs.setdefault(r["rule"], []).append(r)
        for rule, rs in runs.items():
            first = rs[0]
            rows.append({"experiment": e["name"], "task": first["task"], "rule": rule,
                         "label": e.get("labels", {}).get(rule, rule), "metric": first["metric_name"],
                         "higher_is_better": first["higher_is_better"], "chance": first["chance"],
                         "seeds": sorted(r["seed"] for r in rs), "epochs": first["epochs"],
                         "valid": stat([r["valid_metric"] for r in rs]), "test": stat([r["test_metric"] for r in rs]),
                         "test_per_seed": {r["seed"]: r["test_metric"] for r in rs},
                         "wall_s": stat([r["wall_s"] for r in rs]), "target": e.get("targets", {}).get(rule),
                         "runs": [r["dir"] for r in rs], "commands": sorted({r["command"] for r in rs})})
    return rows


def carry_over(experiments: list[dict[str, Any]], rows: list[dict[str, Any]], previous: Path) -> list[dict[str, Any]]:
    """`rows` plus every row of `previous` (an earlier results/accuracy.json) for an (experiment, rule)
    that is still in the manifest and has no run here, in the manifest's order."""
    if not previous.is_file():
        return rows
    have = {(r["experiment"], r["rule"]) for r in rows}
    names = [e["name"] for e in experiments]
    old = [dict(r, carried=True) for r in json.loads(previous.read_text())["rows"]
           if r["experiment"] in names and (r["experiment"], r["rule"]) not in have
           and any(c in r["commands"] for e in experiments if e["name"] == r["experiment"] for c in e["commands"])]
    return sorted(rows + old, key=lambda r: names.index(r["experiment"]))


def markdown(experiments: list[dict[str, Any]], rows: list[dict[str, Any]], manifest: str) -> str:
    lines = ["# Results: OSTTP and its baselines on temporal tasks", "",
             f"Generated by `python benchmarks/accuracy.py --manifest {manifest}` from the runs below "
             "(`--run` runs what is missing). Configurations were chosen on the **valid** split "
             "(docs/learning.md has the probes and sweeps behind each choice); the test metric of each "
             "final configuration was read once. mean ± std over seeds; wall time is per run, on a shared "
             "2-core CPU machine, one thread per run.", ""]
    for e in experiments:
        done = [r for r in rows if r["experiment"] == e["name"]]
        lines += [f"## {e['title']}", "", e.get("note", "").strip(), ""]
        if done:
            better = "higher" if done[0]["higher_is_better"] else "lower"
            lines += [f"Metric: test {done[0]['metric']} ({better} is better; chance / constant predictor "
                      f"{done[0]['chance']:.4g}).", "",
                      "| rule | seeds | epochs | valid | test | test per seed | target | wall s per run |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in done:
                per_seed = ", ".join(f"{v:.4f}" for _, v in sorted(r["test_per_seed"].items()))
                lines.append(f"| {r['label']} | {len(r['seeds'])} | {r['epochs']} | {fmt(r['valid'], 4)} | "
                             f"{fmt(r['test'], 4)} | {per_seed} | {r['target'] or '—'} | {fmt(r['wall_s'], 0)} |")
            lines.append("")
        dirs = [str(out_dir(c).relative_to(ROOT)) for c in e["commands"] if (out_dir(c) / "runs").is_dir()]
        png = ROOT / "docs" / f"results_{e['name']}.png"
        carried = any(r.get("carried") for r in done)
        if done and dirs and not carried:  # one learning-curve plot over all of the experiment's runs
            report = ROOT / "runs" / "acc" / f"report-{e['name']}"
            subprocess.run([sys.executable, "-m", "osttp", "report", *dirs, "--out", str(report)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if (report / "report.png").is_file():
                shutil.copyfile(report / "report.png", png)
        if done and png.is_file():
            caption = "learning curves: valid metric per epoch, mean ± std over seeds"
            if carried:
                caption += " (the runs carried over from an earlier session; rows added since are not in it)"
            lines.append(f"![{caption}]({png.name})")
        lines += ["", "Commands:", "", "```sh", *e["commands"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", default="benchmarks/accuracy.toml")
    p.add_argument("--run", action="store_true", help="run the commands whose results are missing")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time with --run (default 2)")
    p.add_argument("--only", default=None, help="with --run: only these experiments (comma-separated names)")
    args = p.parse_args(argv)
    experiments = tomllib.loads((ROOT / args.manifest).read_text())["experiment"]
    if args.run:
        names = None if args.only is None else set(args.only.split(","))
        unknown = (names or set()) - {e["name"] for e in experiments}
        if unknown:
            p.error(f"--only {','.join(sorted(unknown))}: no such experiment in {args.manifest}")
        run_missing([e for e in experiments if names is None or e["name"] in names], args.jobs)
    rows = carry_over(experiments, collect(experiments), ROOT / "results" / "accuracy.json")
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "accuracy.json").write_text(json.dumps({"manifest": args.manifest, "rows": rows}, indent=1))
    (ROOT / "docs" / "results.md").write_text(markdown(experiments, rows, args.manifest))
    print(f"wrote results/accuracy.json and docs/results.md ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
