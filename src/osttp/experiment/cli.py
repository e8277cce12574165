"""Command-line interface: `osttp <command>` (also `python -m osttp`). See docs/cli.md.

    osttp train   --task T --rule R [options] --out DIR     one run
    osttp compare --task T --rules a,b --seeds 0,1 --out DIR several rules and seeds, summary + plot
    osttp report  DIR [DIR...]                              summary + plot of existing runs
    osttp list                                              tasks, rules, cells
    osttp demo                                              OSTTP vs DRTP vs BPTT on delayed XOR (configs/demo.toml)
    osttp data    check|path                                dataset files
    osttp data    make spoken-digits --source DIR [--jobs N]   spike files from FSDD recordings
    osttp data    make spoken-digits-20 [--jobs N]        spike files of digits spoken by espeak-ng (EN + DE)
    osttp sweep   SPEC [--workers N] [--out DIR]            hyper-parameter search (Optuna) on the valid split
    osttp stream  --task T --rule R [--drift D] --out DIR   learn while processing: prequential metrics on a stream
    osttp export  RUN_DIR --format nir --out model.nir      a trained run's network as a NIR graph (docs/interop.md)

Exit codes: 0 success, 2 bad input (one line on stderr), 3 training diverged (NaN/Inf), 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from osttp.errors import OsttpError
from osttp.experiment import config as C
from osttp.experiment import rundir
from osttp.experiment.build import prepare, select_device
from osttp.experiment.parallel import (EXIT_RANK_FAILED, join, launch, leave, lost_contact_line, rank_error,
                                       silent_rank, world_size_from_environment)
from osttp.experiment.compare import run_compare
from osttp.experiment.loop import Diverged, nothing_trained, train_run
from osttp.experiment.report import summary_table, write_summary
from osttp.experiment.argtypes import argparse_options
from osttp.experiment.tomlio import read_toml

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130
POSITIONAL_CONFIG = ("train", "compare", "stream")  # `osttp train CONFIG` as well as `--config CONFIG`
DEMO_MARKER = ".osttp-demo"  # a directory holding it was made by `osttp demo` and may be replaced by it


class _UsageError(Exception):
    """argparse found a bad command line; main() prints it as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse prints usage + message over several lines and exits; we want one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _add_config_options(p: argparse.ArgumentParser, cmd: str) -> None:
    """The options that set config keys (each overrides the config file): one per key of
    config.SCHEMA that declares a flag for this command."""
    g = p.add_argument_group("experiment (override the config file; see docs/cli.md for the keys)")
    g.add_argument("--config", metavar="FILE", help="TOML config file (defaults < file < flags)")
    if cmd in POSITIONAL_CONFIG:
        g.add_argument("config_file", nargs="?", metavar="CONFIG", help="the TOML config file, as --config FILE")
    for sec, keys in C.SCHEMA.items():
        for name, key in keys.items():
            if key.flag and cmd in key.commands:
                g.add_argument(key.flag, dest=f"{sec}.{name}", default=None, help=key.help, **argparse_options(key))
    r = p.add_argument_group("run")
    r.add_argument("--out", metavar="DIR", help="output directory")
    if cmd != "demo":
        r.add_argument("--resume", action="store_true", help="continue the run(s) in --out from the last checkpoint")
    r.add_argument("--quiet", action="store_true", help="log lines (one per epoch) instead of a progress bar")


def _flags_config(args: argparse.Namespace) -> dict[str, Any]:
    """The partial config set by flags that were given, each checked and named by its flag."""
    out: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." not in dest or value is None:
            continue
        sec, key = dest.split(".")
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            value = dict(value)  # KEY=VALUE pairs -> a table (the last of a repeated key wins)
        try:
            value = C.check_value("", C.SCHEMA[sec][key], value)
        except OsttpError as e:
            raise OsttpError(f"argument {C.flag_of(dest)}: {e}") from None
        out.setdefault(sec, {})[key] = value
    return out


def _file_config(args: argparse.Namespace) -> list[tuple[dict[str, Any], str]]:
    positional = getattr(args, "config_file", None)
    if positional and args.config and positional != args.config:
        raise OsttpError(f"two config files: {positional!r} and --config {args.config!r}; expected one")
    path = args.config or positional
    if not path:
        return []
    return [(read_toml(path), f"config file {path!r}")]


def _command(argv: Sequence[str]) -> str:
    return "osttp " + shlex.join(argv)


# ---------------------------------------------------------------------------------------------
# commands


def _cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    layers = _file_config(args) + [(_flags_config(args), "command line")]
    out = Path(args.out) if args.out else None
    saved = None
    if args.resume:
        if out is None:
            raise OsttpError("--resume needs --out DIR, the run to continue")
        if out.is_dir() and not (out / "config.toml").exists() and nothing_trained(out):
            pass  # killed before its config.toml was written: start over from this command's flags
        else:
            saved = rundir.saved_config(out)
            layers.insert(0, (saved, str(out / "config.toml")))
    cfg = C.resolve(*layers)
    C.require_run_keys(cfg)
    world = world_size_from_environment()
    if world == 1 and cfg["run"]["nproc"] > 1:
        return launch(cfg["run"]["nproc"], argv)  # N copies of this command, under torchrun's environment
    cfg["run"]["nproc"] = world  # config.toml records the processes that ran
    if out is None:
        out = Path("runs") / f"{cfg['task']['name']}-{cfg['train']['rule']}-s{cfg['train']['seed']}"
    parallel, device = join(select_device(cfg["run"]["device"]))
    try:
        if not args.resume and (parallel is None or parallel.leader):
            rundir.check_new_dir(out)  # early: before loading data (rank 0 makes the directory)
        setup = prepare(cfg, parallel=parallel, device=device)
        if saved is not None:
            rundir.check_resume_config(saved, setup.cfg, str(out / "config.toml"))
        train_run(setup, out, resume=args.resume, quiet=args.quiet or not setup.writes,
                  header=f"written by: {_command(argv)}")
        if parallel is not None:
            parallel.barrier()  # every process done with the group before any tears it down
    finally:
        leave(parallel)
    return 0


def _compare_config(args: argparse.Namespace, saved: dict[str, Any] | None, saved_name: str) -> dict[str, Any]:
    layers = _file_config(args) + [(_flags_config(args), "command line")]
    if saved is not None:
        layers.insert(0, (saved, saved_name))
    cfg = C.resolve(*layers)
    if not cfg["task"]["name"]:
        raise OsttpError("no task given: use --task NAME or set [task] name in the config file")
    return cfg


def _print_summary(summary: dict[str, Any], out: Path, png: str, md: str) -> None:
    print()
    print(summary_table(summary))
    if summary.get("chance") is not None:
        print(f"chance {summary['metric_name']}: {summary['chance']:.4f}; test measured with the "
              f"{summary['test_params']} parameters")
    print(f"summary: {out / md}   plot: {out / png}")
    if summary.get("drift"):
        print("drift plots: " + ", ".join(str(out / d["png"]) for d in summary["drift"]))


def _cmd_compare(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out = Path(args.out) if args.out else None
    saved = None
    if args.resume:
        if out is None:
            raise OsttpError("--resume needs --out DIR, the compare directory to continue")
        if not (out / "compare.toml").is_file():
            raise OsttpError(f"cannot resume: {str(out / 'compare.toml')!r} not found")
        saved = read_toml(out / "compare.toml")
    cfg = _compare_config(args, saved, str(out / "compare.toml") if out else "")
    if out is None:
        out = Path("runs") / f"compare-{cfg['task']['name']}"
    if not args.resume:
        rundir.check_new_dir(out)
    summary = run_compare(cfg, out, resume=args.resume, quiet=args.quiet, command=_command(argv))
    _print_summary(summary, out, "compare.png", "summary.md")
    if summary["diverged"]:
        print(f"osttp: error: diverged: {', '.join(summary['diverged'])}", file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def find_config(name: str) -> Path:
    """configs/NAME in the current directory, else in the source checkout this package runs from."""
    here = Path(__file__).resolve()
    candidates = [Path.cwd() / "configs" / name, here.parents[3] / "configs" / name]
    for c in candidates:
        if c.is_file():
            return c
    raise OsttpError(f"cannot find configs/{name} (looked in {', '.join(str(c.parent) for c in candidates)}); "
                     "pass --config FILE")


def _cmd_demo(args: argparse.Namespace, argv: Sequence[str]) -> int:
    path = Path(args.config) if args.config else find_config("demo.toml")
    cfg = C.resolve((read_toml(path), f"config file {str(path)!r}"), (_flags_config(args), "command line"))
    if not cfg["task"]["name"]:
        raise OsttpError(f"{str(path)!r} sets no [task] name")
    out = Path(args.out) if args.out else Path("runs") / "demo"
    if out.exists() and not (out / DEMO_MARKER).is_file() and not rundir.is_empty_dir(out):
        raise OsttpError(f"{str(out)!r} exists and was not made by `osttp demo`; move it away or pass --out DIR")
    print(f"osttp demo: {', '.join(cfg['compare']['rules'])} on {cfg['task']['name']} ({path}); output in {out}/",
          flush=True)
    summary = run_compare(cfg, out, quiet=args.quiet, command=f"osttp demo  # config {path}", kind="demo",
                                 replace_marker=DEMO_MARKER)
    _print_summary(summary, out, "compare.png", "summary.md")
    if summary["diverged"]:
        print(f"osttp: error: diverged: {', '.join(summary['diverged'])}", file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def _cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> int:
    dirs = [Path(d) for d in args.dirs]
    for d in dirs:
        if not d.is_dir():
            raise OsttpError(f"{str(d)!r} is not a directory")
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise OsttpError(f"--out {str(out)!r} exists and is not a directory")
    elif len(dirs) == 1:
        out = dirs[0]
    else:
        raise OsttpError("several directories given: pass --out DIR for the report")
    from osttp.experiment import stream_report

    if any(stream_report.is_stream_dir(d) for d in dirs):  # stream directories: their own table and plot
        print(stream_report.write_stream_report(dirs, out, command=_command(argv)))
        return 0
    summary = write_summary(dirs, out, command=_command(argv), title="osttp report",
                                   png_name="report.png", md_name="report.md", json_name="report.json")
    _print_summary(summary, out, "report.png", "report.md")
    return 0




def _cmd_stream(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from osttp.experiment.stream import stream_command

    return stream_command(_file_config(args), (_flags_config(args), "command line"), out=args.out,
                          resume=args.resume, quiet=args.quiet, command=_command(argv))


def _task_line(name: str) -> str:
    from osttp.tasks import TASKS

    if TASKS.get(name).help:
        return TASKS.get(name).help
    try:  # synthetic tasks are generated in milliseconds: describe them from the real thing
        import osttp.tasks

        t = osttp.tasks.load(name, "valid")
        steps = getattr(t, "T", "?")
        return (f"synthetic: {steps} steps x {t.n_in} inputs, {t.n_out} classes, {t.metric_name} (no files; "
                f"chance {t.chance:.2f})")
    except Exception as e:  # a listing must not fail because one task cannot describe itself
        return f"({type(e).__name__}: {e})"


def _cmd_list(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import osttp.tasks
    from osttp.cells import CELLS
    from osttp.rules import PRESETS

    for name in osttp.tasks.available():
        print(f"task  {name:<18} {_task_line(name)}")
    for entry in PRESETS.entries():
        info = f"online: {entry.meta['trace']} traces, {entry.meta['signal']} learning signal" \
            if entry.meta.get("online") else entry.help
        print(f"rule  {entry.name:<18} {info}".rstrip())
    for entry in CELLS.entries():
        print(f"cell  {entry.name:<18} {entry.help}".rstrip())
    return 0


def _cmd_data(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from osttp.experiment.data_cmd import data_check, data_path
    from osttp.experiment.data_make import check_no_make_options, data_make

    if args.data_cmd == "make":
        return data_make(args)
    check_no_make_options(args)
    return data_path() if args.data_cmd == "path" else data_check()


def _cmd_sweep(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from osttp.experiment import sweep

    return sweep.run(args)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="osttp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace, Sequence[str]], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    _add_config_options(add("train", _cmd_train, "train one rule on one task"), "train")
    _add_config_options(add("compare", _cmd_compare, "train several rules and seeds, summarise and plot"),
                        "compare")
    rp = add("report", _cmd_report, "summary table and learning curves of existing run or compare directories")
    rp.add_argument("dirs", nargs="+", metavar="DIR")
    rp.add_argument("--out", metavar="DIR", help="where report.md/.json/.png go (default: the one DIR given)")
    add("list", _cmd_list, "tasks, rules and cells")
    _add_config_options(add("demo", _cmd_demo, "OSTTP vs DRTP vs BPTT on delayed XOR in a few minutes "
                                               "(configs/demo.toml, output in runs/demo)"), "demo")
    d = add("data", _cmd_data, "where datasets are looked for, whether their checksums hold, and building "
                               "the spoken-digit files (make spoken-digits --source DIR; make spoken-digits-20)")
    d.add_argument("data_cmd", choices=["check", "path", "make"])
    from osttp.experiment.data_make import add_arguments as add_make_arguments

    add_make_arguments(d)
    from osttp.experiment.sweep import add_arguments as add_sweep_arguments

    add_sweep_arguments(add("sweep", _cmd_sweep, "search config keys with Optuna; trials selected on the valid split"))
    _add_config_options(add("stream", _cmd_stream, "learn while processing: one rule on a (drifting) stream, "
                                                   "scored prequentially (docs/streaming.md)"), "stream")
    from osttp.experiment.export import add_arguments as add_export_arguments, command as export_command

    add_export_arguments(add("export", export_command, "a trained run's network in another tool's format "
                                                       "(docs/interop.md)"))
    return p


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def os_error_line(e: OSError) -> str:
    """An I/O failure as one line: what failed, on which file, why (ENOSPC, EROFS, EISDIR, EACCES, ...)."""
    where = f" {str(e.filename)!r}" if e.filename else ""
    return f"I/O error on{where}: {e.strerror or e}" if where else f"I/O error: {e.strerror or e}"


def interrupted_line() -> str:
    return "osttp: interrupted (continue a run with --resume)"


def main(argv: Sequence[str] | None = None) -> int:
    """The error boundary: every expected failure is one stderr line and an exit code (module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.func is not _cmd_train and world_size_from_environment() > 1:
            raise OsttpError(f"osttp {argv[0]} under torchrun with {world_size_from_environment()} processes: only "
                             "osttp train runs data-parallel; expected one process")
        return int(args.func(args, argv))
    except (_UsageError, OsttpError, Diverged) as e:
        line = rank_error(_one_line(str(e)))
        if line:
            print(f"osttp: error: {line}", file=sys.stderr)
        return EXIT_DIVERGED if isinstance(e, Diverged) else EXIT_BAD_INPUT
    except RuntimeError as e:
        line = lost_contact_line(e)
        if line is None:
            raise  # not a lost process: a bug, whose traceback is wanted
        if line:
            print(f"osttp: error: {line}", file=sys.stderr)
        return EXIT_RANK_FAILED
    except BrokenPipeError:  # `osttp list | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
    except OSError as e:  # a full disk, a read-only or vanished directory, a path that is a directory, ...
        print(f"osttp: error: {_one_line(os_error_line(e))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("osttp: error: out of memory (use smaller or fewer hidden layers or a smaller batch size)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        if not silent_rank():
            print(interrupted_line(), file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
