"""Several rules and seeds on one task: one run directory each under <out>/runs/, then a summary.

    summary = run_compare(cfg, Path("runs/cmp"))   # cfg["compare"]: rules, seeds
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any, Mapping

from osttp.errors import OsttpError
from osttp.experiment import config as C
from osttp.experiment.build import Setup, TaskCache, prepare
from osttp.experiment.checkpoint import read_json, remove_stale_temps, write_text_atomic
from osttp.experiment.lock import RunLock
from osttp.experiment.loop import Diverged, train_run
from osttp.experiment.progress import Log
from osttp.experiment.report import write_summary
from osttp.experiment.rundir import check_new_dir, check_resume_config, run_dir_name, saved_config
from osttp.experiment.tomlio import dumps_toml, read_toml


def compare_configs(base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One config per (rule, seed), rules outermost, in the order given."""
    out = []
    for rule in base["compare"]["rules"]:
        for seed in base["compare"]["seeds"]:
            cfg = copy.deepcopy(dict(base))
            cfg["train"]["rule"], cfg["train"]["seed"] = rule, seed
            out.append(cfg)
    return out


def run_compare(base: Mapping[str, Any], out: Path, *, resume: bool = False, quiet: bool = False,
                command: str = "", log: Log = print, kind: str = "compare",
                replace_marker: str | None = None) -> dict[str, Any]:
    """Train every (rule, seed) of base["compare"] under out/runs/, then summarise and plot.

    Every run is validated and built before the directory is made. With resume, finished runs are
    kept, interrupted ones resumed, missing ones started. A diverged run is recorded and the others
    still run; the caller turns it into exit code 3. replace_marker: a file name; an existing `out`
    holding it is deleted and made again (how `osttp demo` overwrites only its own directory)."""
    cache: TaskCache = {}
    cfgs = compare_configs(base)
    base_cfg = copy.deepcopy(dict(base))
    base_cfg["train"]["rule"] = None  # set per run; the compare dir's config leaves them to [compare]
    base_cfg["train"]["seed"] = C.SCHEMA["train"]["seed"].default
    setups = [prepare(c, cache) for c in cfgs]  # all bad input surfaces here, before any file
    base_cfg["task"]["params"] = setups[0].cfg["task"]["params"]
    if resume:
        if not (out / "compare.toml").is_file():
            raise OsttpError(f"cannot resume: {str(out / 'compare.toml')!r} not found (is {str(out)!r} a compare "
                             "directory?)")
        check_resume_config(read_toml(out / "compare.toml"), base_cfg, str(out / "compare.toml"))
    else:
        if replace_marker and (out / replace_marker).is_file():
            shutil.rmtree(out)
        check_new_dir(out)
    header = f"written by: {command}" if command else ""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OsttpError(f"cannot create {str(out)!r}: {e.strerror or e}") from None
    with RunLock(out):
        try:
            if not resume:
                check_new_dir(out)  # again, under the lock
            remove_stale_temps(out)
            (out / "runs").mkdir(parents=True, exist_ok=True)
            if replace_marker:
                write_text_atomic(out / replace_marker, "made by osttp; the next run of the same command replaces it\n")
            comp = {k: v for k, v in base_cfg.items()}
            comp["train"] = {k: v for k, v in base_cfg["train"].items() if k not in ("rule", "seed")}
            write_text_atomic(out / "compare.toml", dumps_toml(comp, header))
            write_text_atomic(out / "command.txt", command + "\n")
        except (OSError, OsttpError) as e:
            if created:
                shutil.rmtree(out, ignore_errors=True)
            if isinstance(e, OsttpError):
                raise
            raise OsttpError(f"cannot write {str(out)!r}: {e.strerror or e}") from None
        diverged = _train_all(setups, out, resume, quiet, header, log)
        summary = write_summary([out], out, command=command, title=f"osttp {kind}: {base['task']['name']}",
                                png_name="compare.png", md_name="summary.md", json_name="summary.json")
    summary["diverged"] = diverged
    return summary


def _train_all(setups: list[Setup], out: Path, resume: bool, quiet: bool, header: str, log: Log) -> list[str]:
    """Each (rule, seed) in its run directory: completed ones kept on resume, the others continued
    (or started over when they were killed before their first checkpoint). Returns the diverged ones."""
    diverged = []
    for setup in setups:
        rule, seed = setup.cfg["train"]["rule"], setup.cfg["train"]["seed"]
        rdir = out / "runs" / run_dir_name(rule, seed)
        res_path = rdir / "results.json"
        if resume and res_path.is_file():
            res = read_json(res_path)
            if isinstance(res, dict) and res.get("status") == "completed":
                log(f"[{rule} s{seed}] already completed; kept")
                continue
        again = resume and rdir.exists()
        if again and (rdir / "config.toml").is_file():
            check_resume_config(saved_config(rdir), setup.cfg, str(rdir / "config.toml"))
        try:
            train_run(setup, rdir, resume=again, quiet=quiet, label=f"{rule} s{seed}", header=header, log=log)
        except Diverged as e:
            log(f"[{rule} s{seed}] {e}")
            diverged.append(f"{rule} s{seed}")
    return diverged
