"""`osttp data make spoken-digits|spoken-digits-20`: the spoken-digit spike files, from a folder of
FSDD recordings (osttp.audio.spoken_digits.make_spoken_digits) or spoken by espeak-ng
(osttp.audio.spoken_digits_20.make_spoken_digits_20); docs/data.md, "spoken-digits", "spoken-digits-20".

Resumable: the converter keeps its finished shards under <out>/work/, so a rerun after an
interruption converts only what is left; the spike files and manifest.json are written under a
temporary name and renamed, so an interrupted run leaves none of them half-written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from osttp.errors import OsttpError
from osttp.tasks import data

DATASETS = ("spoken-digits", "spoken-digits-20")
EXTRA_HINT = "pip install 'osttp[audio]'"
SPEECH_HINT = "pip install 'osttp[speech]'"


def default_out(dataset: str) -> Path:
    """<first folder of the dataset search path>/<dataset>: where the tasks look for the files."""
    return data.data_dirs()[0] / dataset


def _progress(quiet: bool) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """(update(done, total), close): a tqdm bar on a terminal, else a line at most every 30 s."""
    if quiet:
        return (lambda done, total: None), (lambda: None)
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(desc="recordings", unit="rec", dynamic_ncols=True, file=sys.stderr)

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        return update, bar.close
    start, last = time.monotonic(), [float("-inf")]

    def line(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 30.0 or done == total:
            last[0] = now
            print(f"[data make] {done}/{total} recordings  {now - start:.0f} s", file=sys.stderr, flush=True)
    return line, (lambda: None)


def _check_args(args: argparse.Namespace) -> tuple[Path | None, Path, int]:
    if args.dataset not in DATASETS:
        got = "no dataset named" if args.dataset is None else f"dataset {args.dataset!r}"
        raise OsttpError(f"osttp data make: {got}; expected one of {', '.join(DATASETS)}")
    speech = args.dataset == "spoken-digits-20"
    if speech and args.source is not None:
        raise OsttpError("osttp data make spoken-digits-20: --source does not apply (espeak-ng speaks the digits)")
    if not speech and args.voices is not None:
        raise OsttpError(f"osttp data make {args.dataset}: --voices only applies to spoken-digits-20")
    if args.source is None and not speech:
        raise OsttpError(f"osttp data make {args.dataset}: --source DIR is required (a git clone of the public "
                         "free-spoken-digit-dataset repository, or its recordings/ folder)")
    source = None if speech else Path(args.source).expanduser()
    if source is not None and not source.is_dir():
        raise OsttpError(f"--source {source}: no such folder; expected a git clone of the public "
                         "free-spoken-digit-dataset repository, or its recordings/ folder")
    jobs = args.jobs if args.jobs is not None else 1
    if jobs < 1:
        raise OsttpError(f"--jobs {jobs}: expected at least 1 worker process")
    out = Path(args.out).expanduser() if args.out else default_out(args.dataset)
    if out.exists() and not out.is_dir():
        raise OsttpError(f"--out {out} is a file; expected a folder for the spike files")
    return source, out, jobs


def _make_speech(args: argparse.Namespace, out: Path, jobs: int) -> int:
    from osttp.audio import speech

    voices = speech.check_voices(args.voices)  # before anything is imported or written
    try:
        import espeakng_loader  # noqa: F401
        from osttp.audio.spoken_digits_20 import make_spoken_digits_20
    except ImportError as e:
        raise OsttpError(f"osttp data make spoken-digits-20 needs espeak-ng and the cochlea ({e.name or e} is "
                         f"missing): {SPEECH_HINT}, which installs the espeakng-loader wheel "
                         "(libespeak-ng with its voices)") from None
    update, close = _progress(bool(args.quiet))
    try:
        manifest = make_spoken_digits_20(out, voices=voices, jobs=jobs, progress=update)
    finally:
        close()
    print(f"wrote {len(manifest['files'])} files ({manifest['utterances']} utterances, "
          f"{len(manifest['voices'])} voices) and manifest.json to {out} in {manifest['wall_s']} s")
    sys.stdout.flush()
    return 0


def data_make(args: argparse.Namespace) -> int:
    """Build the spike files of args.dataset into args.out; 0 on success (errors raise OsttpError)."""
    source, out, jobs = _check_args(args)
    if source is None:
        return _make_speech(args, out, jobs)
    try:
        from osttp.audio.spoken_digits import make_spoken_digits
    except ImportError as e:
        raise OsttpError(f"osttp data make {args.dataset} needs the audio extra ({e.name or e} is missing): "
                         f"{EXTRA_HINT}") from None
    update, close = _progress(bool(args.quiet))
    try:
        manifest = make_spoken_digits(source, out, jobs=jobs, progress=update)
    finally:
        close()
    files = manifest["files"]
    print(f"wrote {len(files)} files ({sum(f['samples'] for f in files.values()) // 2} recordings per split kind) "
          f"and manifest.json to {out} in {manifest['wall_s']} s")
    if manifest["recordings_sha256"] != manifest["recordings_sha256_expected"]:
        print(f"note: the recordings' checksum {manifest['recordings_sha256']} differs from FSDD's at commit "
              f"26eb9aa ({manifest['recordings_sha256_expected']}): the files are built from another release",
              file=sys.stderr)
    sys.stdout.flush()
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `osttp data make` (the subcommand itself is the positional data_cmd)."""
    p.add_argument("dataset", nargs="?", metavar="DATASET", help=f"make only: {', '.join(DATASETS)}")
    p.add_argument("--source", metavar="DIR", help="make: the FSDD folder (a clone of free-spoken-digit-dataset)")
    p.add_argument("--out", metavar="DIR", help="make: where the files go (default: <first data folder>/DATASET)")
    p.add_argument("--jobs", metavar="N", type=int, help="make: worker processes (default 1)")
    p.add_argument("--voices", metavar="VARIANT", nargs="+",
                   help="make spoken-digits-20: only these espeak-ng voice variants (default: all 16; "
                        "each split keeps one)")
    p.add_argument("--quiet", action="store_true", help="make: no progress")


def _unused(args: argparse.Namespace) -> list[str]:
    return [f"--{k}" for k in ("source", "out", "jobs", "voices") if getattr(args, k, None) is not None] + \
        (["DATASET"] if getattr(args, "dataset", None) else [])


def check_no_make_options(args: argparse.Namespace) -> None:
    """`osttp data check|path` take no make options: a stray one is an error, not silently ignored."""
    extra = _unused(args)
    if extra:
        raise OsttpError(f"osttp data {args.data_cmd}: {', '.join(extra)} only apply to `osttp data make`")


__all__ = ["add_arguments", "check_no_make_options", "data_make", "default_out"]
