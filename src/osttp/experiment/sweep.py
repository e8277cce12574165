"""`osttp sweep SPEC`: hyper-parameter search over config keys with Optuna (see docs/cli.md).

This module is the command: its arguments, the checks done before anything is written, and the
sweep directory. The spec format is in osttp.experiment.sweep_spec, the sweep process (study, trial child
processes, interruption and resume) in osttp.experiment.sweep_study, the summary and plot in osttp.experiment.sweep_report.
Trials live in an Optuna study (default: SQLite DIR/study.db), so a sweep resumes where it stopped
and several machines can share one study through a database URL.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path
from typing import IO, Any, Sequence

from osttp.errors import OsttpError

EXIT_BAD_INPUT = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="sweep spec TOML ([sweep] table, see docs/cli.md)")
    p.add_argument("--out", metavar="DIR", help="sweep directory (default: runs/sweep-<spec name>)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="training processes at a time (default 1)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: sqlite:///DIR/study.db)")
    p.add_argument("--n-trials", type=int, metavar="N", help="override the spec's n_trials (e.g. to extend a sweep)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in an existing DIR")


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: `python -m osttp.experiment.sweep SPEC ...` (the CLI's `osttp sweep` is the same)."""
    p = argparse.ArgumentParser(prog="osttp sweep")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except OsttpError as e:
        print(f"osttp: error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _lock(out: Path) -> IO[str]:
    """Hold DIR/.sweep.lock for the life of the process: one sweep process per directory."""
    import fcntl

    f = open(out / ".sweep.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise OsttpError(f"sweep directory {out} is in use by another osttp sweep process") from None
    return f


def run(args: argparse.Namespace) -> int:
    """`osttp sweep`: returns the exit code (0 done, 130 interrupted); bad input raises OsttpError."""
    from osttp.experiment.sweep_spec import check_n_trials, read_spec

    if args.workers < 1:
        raise OsttpError(f"--workers {args.workers}; expected an integer >= 1")
    spec = read_spec(args.spec)
    n_trials = check_n_trials(spec, args.n_trials if args.n_trials is not None else spec.n_trials)
    if n_trials < 1:
        raise OsttpError(f"--n-trials {n_trials}; expected an integer >= 1")
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{spec.name}"
    if args.resume and not (out / "sweep.json").is_file():
        raise OsttpError(f"nothing to resume: {out} holds no sweep (no sweep.json)")
    if not args.resume and out.exists() and any(out.iterdir()):
        raise OsttpError(f"sweep directory {out} already exists; use --resume to continue it or another --out")
    maximize, metric_name = _direction(spec)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        storage_url = args.storage or f"sqlite:///{(out / 'study.db').resolve()}"
        from osttp.experiment.sweep_study import Sweep

        try:
            sweep = Sweep(spec, out.resolve(), storage_url, n_trials, args.workers, maximize, metric_name,
                          _command(args))
        except OsttpError:
            if created:  # nothing half-written: the directory did not exist before this command
                shutil.rmtree(out, ignore_errors=True)
            raise
        return sweep.run()
    finally:
        lock.close()


def _command(args: argparse.Namespace) -> str:
    parts = ["osttp", "sweep", str(args.spec), "--workers", str(args.workers)]
    for flag, v in (("--out", args.out), ("--storage", args.storage), ("--n-trials", args.n_trials)):
        if v is not None:
            parts += [flag, str(v)]
    if args.resume:
        parts.append("--resume")
    return " ".join(shlex.quote(p) for p in parts)


def _direction(spec: Any) -> tuple[bool, str]:
    """Whether the task's metric is maximised, and its name: from the task itself (valid split of
    the base config). Task parameters are free-form in the config, so the task also checks them
    here, for the base and for every swept task key's extremes, and its data files are found
    before any trial starts."""
    import osttp.tasks
    from osttp.experiment.sweep_spec import trial_config

    task = osttp.tasks.load(spec.base["task"]["name"], "valid", **spec.base["task"]["params"])
    for q in spec.params:
        if q.key.startswith("task."):
            for v in q.extremes():
                cfg = trial_config(spec, {q.key: v})
                try:
                    osttp.tasks.load(cfg["task"]["name"], "valid", **cfg["task"]["params"])
                except OsttpError as e:
                    raise OsttpError(f"sweep spec {str(spec.path)!r}: space key {q.key!r} value {v!r}: {e}") from None
    return bool(task.higher_is_better), str(task.metric_name)


if __name__ == "__main__":
    sys.exit(main())
