"""Run directories on disk: starting a new one, resuming one, reading finished ones back.

    <run>/config.toml            every key resolved (what `--resume` must match)
    <run>/metrics.jsonl          one record per completed epoch
    <run>/checkpoints/last.pt    everything the loop carries; best.pt: the best-valid parameters
    <run>/results.json, model.pt [drift.json, drift.png]
    <compare>/compare.toml, command.txt, runs/<rule>-s<seed>/ (one run directory each)

docs/cli.md describes the files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from osttp import checks
from osttp.errors import OsttpError
from osttp.experiment import config as C
from osttp.experiment.lock import LOCK_NAME
from osttp.experiment.records import read_history, read_results
from osttp.experiment.tomlio import dumps_toml, read_toml


def _entries(p: Path) -> list[Path]:
    """What a directory holds besides its lock file (lock.LOCK_NAME)."""
    try:
        return [e for e in p.iterdir() if e.name != LOCK_NAME]
    except OSError as e:
        raise OsttpError(f"cannot read directory {str(p)!r}: {e.strerror or e}") from None


def check_new_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or _entries(out)):
        raise OsttpError(f"output directory {str(out)!r} already exists; use --resume to continue it "
                         "or choose another --out")


def is_empty_dir(p: Path) -> bool:
    return p.is_dir() and not _entries(p)


def run_config_text(cfg: Mapping[str, Any], header: str) -> str:
    """config.toml of one run: every key resolved; [compare] belongs to compare dirs only."""
    return dumps_toml({k: v for k, v in cfg.items() if k != "compare"}, header)


def run_dir_name(rule: str, seed: int) -> str:
    return f"{rule}-s{seed}"


def saved_config(out: Path) -> dict[str, Any]:
    path = out / "config.toml"
    if not path.is_file():
        raise OsttpError(f"cannot resume: {str(path)!r} not found (is {str(out)!r} a run directory?)")
    return read_toml(path)


def check_resume_config(saved: Mapping[str, Any], new: Mapping[str, Any], source: str) -> None:
    """A resume may change only how the process runs (and train longer); anything else would make
    the continued run a different experiment."""
    saved_full = C.resolve((saved, source))
    diffs = [k for k in C.differences(saved_full, new) if k not in C.RESUMABLE_CHANGES
             and not k.startswith("compare.")]
    if diffs:
        k = diffs[0]
        sec, key = k.split(".")
        raise OsttpError(f"cannot resume with a different configuration: {k} is "
                         f"{checks.show(new[sec][key])} here but {checks.show(saved_full[sec][key])} in {source} "
                         f"({len(diffs)} key(s) differ: {', '.join(diffs)})")


@dataclass
class RunRecord:
    """A run directory read back: its config, epoch history and results (None while incomplete)."""

    path: Path
    cfg: dict[str, Any]
    history: list[dict[str, Any]]
    results: dict[str, Any] | None

    @property
    def status(self) -> str:
        return self.results.get("status", "?") if self.results else "incomplete"


def load_run(path: Path) -> RunRecord:
    cfg = C.resolve((read_toml(path / "config.toml"), str(path / "config.toml")))
    mpath, rpath = path / "metrics.jsonl", path / "results.json"
    history = read_history(mpath) if mpath.is_file() else []
    return RunRecord(path, cfg, history, read_results(rpath) if rpath.exists() else None)


def find_runs(dirs: Iterable[Path]) -> list[RunRecord]:
    """Run directories among dirs: a train dir (config.toml) or a compare dir (runs/*/config.toml).

    A compare dir's runs come in its [compare] order (rules, then seeds)."""
    runs: list[RunRecord] = []
    for d in dirs:
        if (d / "runs").is_dir():
            subs = sorted(p for p in (d / "runs").iterdir() if (p / "config.toml").is_file())
            if (d / "compare.toml").is_file():
                comp = C.resolve((read_toml(d / "compare.toml"), str(d / "compare.toml")))["compare"]
                order = {run_dir_name(r, s): i for i, (r, s) in
                         enumerate((r, s) for r in comp["rules"] for s in comp["seeds"])}
                subs.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
            runs.extend(load_run(p) for p in subs)
        elif (d / "config.toml").is_file() and (d / "checkpoints").is_dir():
            runs.append(load_run(d))
        else:
            raise OsttpError(f"{str(d)!r} is neither a run directory (config.toml, checkpoints/) nor a compare "
                             "directory (runs/)")
    if not runs:
        raise OsttpError("no runs found in " + ", ".join(repr(str(d)) for d in dirs))
    return runs
