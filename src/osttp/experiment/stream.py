"""`osttp stream`: one rule learning prequentially on one stream, in a stream directory.

    <out>/stream.toml            the keys `osttp stream` reads, resolved (what --resume must match)
    <out>/metrics.jsonl          one prequential record every stream.log_every steps
    <out>/checkpoints/last.pt    parameters, optimizer, the learner's carried state, stream position, meter
    <out>/results.json           the prequential summary (drift points, recovery), speed, memory
    <out>/stream.png, model.pt

A checkpoint is taken every stream.checkpoint_every steps, at the first step from there at which the
learner holds no autograd graph (tbptt: the end of its window; bptt: the end of a sequence), and at
the end. A resumed run continues bit for bit (CPU): nothing reads the global RNG.
"""
from __future__ import annotations

import copy
import math
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import torch

import osttp
import osttp.tasks
from osttp import checks
from osttp.errors import OsttpError
from osttp.experiment import config as C
from osttp.experiment.build import DTYPES, build_model, check_run, select_device, set_threads
from osttp.experiment.checkpoint import (dumps_json, load_checkpoint, rng_state, save_atomic, with_digest,
                                         set_rng_state, write_text_atomic)
from osttp.experiment.lock import locked_dir
from osttp.experiment.loop import Diverged
from osttp.experiment.progress import Log, make_progress
from osttp.experiment.results import fmt, peak_mem_mb
from osttp.experiment.rundir import check_new_dir
from osttp.experiment.stream_report import CONFIG_NAME
from osttp.experiment.tomlio import dumps_toml, read_toml
from osttp.plots import plot_stream
from osttp.streams import SCENARIOS, DataStream, Prequential, StreamDiverged, TaskSource, with_drift

DEFAULTS_LAYER: tuple[dict[str, Any], str] = ({"train": {"schedule": "per-step"}}, "osttp stream defaults")
# keys a resume may change: how the process runs, and how far the stream goes
RESUMABLE = frozenset({"stream.steps", "stream.checkpoint_every", "run.device", "run.threads"})


def stream_keys(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a config `osttp stream` reads: every key whose flag the stream command offers."""
    out: dict[str, Any] = {}
    for sec, keys in C.SCHEMA.items():
        for k, key in keys.items():
            if "stream" in key.commands:
                out.setdefault(sec, {})[k] = copy.deepcopy(cfg[sec][k])
    return out


def resolve_stream_config(layers: list[tuple[Mapping[str, Any], str]]) -> dict[str, Any]:
    """defaults < stream defaults (schedule per-step) < the given layers, checked."""
    cfg = C.resolve(DEFAULTS_LAYER, *layers)
    for sec, keys in C.SCHEMA.items():  # a key the stream command does not read must not be set
        for k, key in keys.items():
            if "stream" not in key.commands:
                for partial, source in layers:
                    if k in partial.get(sec, {}):
                        raise OsttpError(f"{source}: config key {sec}.{k} does not apply to osttp stream")
    C.require_run_keys(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# building


def _load(name: str, split: str, params: Mapping[str, Any]) -> osttp.tasks.Task:
    return osttp.tasks.load(name, split, **params)


def build(cfg: dict[str, Any]) -> tuple[Prequential, torch.device]:
    """The network, learner and stream of a config; OsttpError for bad input; writes nothing."""
    t, s = cfg["train"], cfg["stream"]
    scenario = SCENARIOS.get(s["drift"]).meta
    if not scenario["needs_other"] and s["switch_task"] is not None:
        takes = ", ".join(f'"{e.name}"' for e in SCENARIOS.entries() if e.meta["needs_other"])
        raise OsttpError(f"stream.switch_task = {checks.show(s['switch_task'])} needs stream.drift = {takes}")
    if not scenario["drifts"] and s["drift_every"] is not None:
        raise OsttpError(f"stream.drift_every = {s['drift_every']} needs a drift scenario (stream.drift)")
    if scenario["drifts"] and s["drift_every"] is None:
        raise OsttpError(f"stream.drift = {checks.show(s['drift'])} needs stream.drift_every (sequences per phase)")
    if scenario["needs_other"] and s["switch_task"] is None:
        raise OsttpError(f"stream.drift = {checks.show(s['drift'])} needs stream.switch_task, the task to switch to")
    device, dtype = select_device(cfg["run"]["device"]), DTYPES[cfg["model"]["dtype"]]
    check_run(cfg, dtype)
    seed = t["seed"] if s["seed"] is None else s["seed"]
    task = _load(cfg["task"]["name"], s["split"], cfg["task"]["params"])
    cfg["task"]["params"] = dict(task.params)  # resolved: stream.toml states every value
    source = TaskSource(task, seed=seed, order=s["order"], dtype=dtype)
    other = None
    if s["switch_task"] is not None:
        other_task = _load(s["switch_task"], s["split"], s["switch_params"])
        cfg["stream"]["switch_params"] = dict(other_task.params)
        other = TaskSource(other_task, seed=seed, order=s["order"], dtype=dtype)
    source = with_drift(source, s["drift"], s["drift_every"], seed, other=other, permute_axis=s["permute_axis"])
    _, _, learner = build_model(cfg, task, device, dtype, s["lanes"])
    run = Prequential(learner, DataStream(source, s["lanes"]), window=s["window"], tolerance=s["tolerance"],
                      score=s["score"], reset_at_boundary=s["reset"], record_every=s["log_every"])
    return run, device


# ---------------------------------------------------------------------------------------------
# the run directory


def _checkpoint(run: Prequential, path: Path, device: torch.device, seconds: float) -> None:
    save_atomic(with_digest({"kind": "stream", "prequential": run.state_dict(),
                             "progress": {"stream_seconds": seconds}, "rng": rng_state(device),
                             "net_config": run.learner.net.config, "osttp_version": osttp.__version__}), path)


def _write_records(out: Path, records: list[dict[str, Any]]) -> None:
    write_text_atomic(out / "metrics.jsonl", "".join(dumps_json(r, indent=None) + "\n" for r in records))


def _append_record(out: Path, record: Mapping[str, Any]) -> None:
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(dumps_json(record, indent=None) + "\n")


def _results(cfg: Mapping[str, Any], run: Prequential, device: torch.device, status: str, seconds: float,
             state_bytes: int, **extra: Any) -> dict[str, Any]:
    net = run.learner.net
    return {"status": status, "kind": "stream", "task": cfg["task"]["name"], "rule": cfg["train"]["rule"],
            "seed": cfg["train"]["seed"], "cell": cfg["model"]["cell"], "hidden": list(cfg["model"]["hidden"]),
            "recurrent": cfg["model"]["recurrent"], "optimizer": cfg["train"]["optimizer"], "lr": cfg["train"]["lr"],
            "lanes": run.stream.batch, "steps": run.steps, "stream_s": seconds,
            "steps_per_s": run.steps / seconds if seconds > 0 else None,
            "peak_mem_mb": peak_mem_mb(device), "learner_state_mb": state_bytes / 2**20,
            "n_params": sum(p.numel() for p in net.parameters()), "device": str(device),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "osttp": osttp.__version__,
            "prequential": run.summary(), **extra}


def stream_run(cfg: dict[str, Any], out: Path, *, resume: bool = False, quiet: bool = False, header: str = "",
               log: Log = print) -> dict[str, Any]:
    """Run (or continue) the stream of `cfg` in `out`, holding its lock (lock.locked_dir) from the first
    file read to the last written; returns results.json's content."""
    run, device = build(cfg)
    if not resume:
        check_new_dir(out)
    with locked_dir(out) as created:
        seconds = _resume(run, out, device, cfg["stream"]["steps"]) if resume else 0.0
        if not resume:
            check_new_dir(out)  # again, under the lock: no other writer started meanwhile
        _open_dir(cfg, run, out, header, created)
        set_threads(cfg)
        name = f"{cfg['train']['rule']} s{cfg['train']['seed']}"
        seconds, state_bytes = _play(cfg, run, out, device, seconds, quiet, name, log)
        return _finish(cfg, run, out, device, seconds, state_bytes, name, log)


def _resume(run: Prequential, out: Path, device: torch.device, steps: int) -> float:
    """Load the stream's last checkpoint into `run`; returns the stream seconds already spent."""
    last = out / "checkpoints" / "last.pt"
    if not last.is_file():
        raise OsttpError(f"cannot resume: no checkpoint {str(last)!r}; start a new run without --resume")
    ckpt = load_checkpoint(last)
    if ckpt.get("kind") != "stream":
        raise OsttpError(f"{str(last)!r} is not the checkpoint of an osttp stream run")
    try:
        run.load_state_dict(ckpt["prequential"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise OsttpError(f"checkpoint {str(last)!r} does not match the configuration: "
                         f"{str(e).splitlines()[0]}") from None
    set_rng_state(ckpt["rng"], device)
    if run.steps > steps:
        raise OsttpError(f"stream.steps = {steps} is less than the {run.steps} steps already done in {str(out)!r}")
    return float(ckpt["progress"]["stream_seconds"])


def _open_dir(cfg: Mapping[str, Any], run: Prequential, out: Path, header: str, created: bool) -> None:
    """stream.toml and the records so far (after a resume: exactly the checkpointed ones)."""
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / CONFIG_NAME, dumps_toml(stream_keys(cfg), header))
        _write_records(out, run.meter.records)
    except OSError as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise OsttpError(f"cannot write stream directory {str(out)!r}: {e.strerror or e}") from None


def _play(cfg: Mapping[str, Any], run: Prequential, out: Path, device: torch.device, seconds: float, quiet: bool,
          name: str, log: Log) -> tuple[float, int]:
    """Learn until stream.steps, checkpointing on the way; returns (stream seconds, peak state bytes)."""
    s = cfg["stream"]
    last = out / "checkpoints" / "last.pt"
    mname = run.meter.metric_name
    every_ckpt = s["checkpoint_every"] or s["steps"]
    bar = make_progress(quiet, math.ceil(s["steps"] / s["log_every"]), run.steps // s["log_every"], name, log)
    state_bytes = run.learner.state_nbytes()

    def on_record(rec: dict[str, Any]) -> None:
        nonlocal state_bytes
        state_bytes = max(state_bytes, run.learner.state_nbytes())
        _append_record(out, rec)
        bar.update({f"window {mname}": f"{rec[f'window_{mname}']:.4f}", "step": str(rec["step"])})

    try:
        while run.steps < s["steps"]:
            t0 = time.perf_counter()
            target = min(s["steps"], (run.steps // every_ckpt + 1) * every_ckpt)
            run.run(target - run.steps, on_record)
            run.run_until_saveable(s["steps"] - run.steps, on_record)
            seconds += time.perf_counter() - t0
            if run.ready_to_save:
                _checkpoint(run, last, device, seconds)
    except StreamDiverged as e:
        write_text_atomic(out / "results.json", dumps_json(_results(cfg, run, device, "diverged", seconds,
                                                                    state_bytes, error=str(e))))
        raise Diverged(f"{e} ({name}; learning rate {cfg['train']['lr']} too large?); last good checkpoint: "
                       f"{last}") from None
    finally:
        bar.close()
    return seconds, state_bytes


def _finish(cfg: Mapping[str, Any], run: Prequential, out: Path, device: torch.device, seconds: float,
            state_bytes: int, name: str, log: Log) -> dict[str, Any]:
    """results.json, the records, model.pt and stream.png of a completed stream."""
    results = _results(cfg, run, device, "completed", seconds, state_bytes)
    mname = run.meter.metric_name
    _write_records(out, run.meter.records)
    save_atomic(with_digest({"model": run.learner.net.state_dict(), "net_config": run.learner.net.config}),
                out / "model.pt")
    write_text_atomic(out / "results.json", dumps_json(results))
    p = results["prequential"]
    plot_stream({name: run.meter.records}, mname, out / "stream.png",
                drift_steps=[d["step"] for d in p["drifts"]], title=f"{cfg['task']['name']}: {name}")
    log(f"[{name}] {run.steps} steps: cumulative {mname} {fmt(p['cumulative'])}, last window {fmt(p['final_window'])}"
        f", {p['n_recovered']}/{p['n_drifts']} drifts recovered; {fmt(results['steps_per_s'])} steps/s; "
        f"results in {out / 'results.json'}")
    return results


def stream_command(file_layers: list[tuple[dict[str, Any], str]], flag_layer: tuple[dict[str, Any], str], *,
                   out: str | None, resume: bool, quiet: bool, command: str) -> int:
    """`osttp stream`: the config layers from the command line, then the run."""
    layers = [*file_layers, flag_layer]
    saved_full = None
    if resume:
        if out is None:
            raise OsttpError("--resume needs --out DIR, the stream directory to continue")
        path = Path(out) / CONFIG_NAME
        if not path.is_file():
            raise OsttpError(f"cannot resume: {str(path)!r} not found (is {out!r} a stream directory?)")
        saved = read_toml(path)
        saved_full = resolve_stream_config([(saved, str(path))])
        layers.insert(0, (saved, str(path)))
    cfg = resolve_stream_config(layers)
    out_path = Path(out) if out else Path("runs") / f"stream-{cfg['task']['name']}-{cfg['train']['rule']}-" \
                                                    f"s{cfg['train']['seed']}"
    if not resume:
        check_new_dir(out_path)
    if saved_full is not None:
        _check_resume(saved_full, cfg, str(out_path / CONFIG_NAME))
    stream_run(cfg, out_path, resume=resume, quiet=quiet, header=f"written by: {command}")
    return 0


def _check_resume(saved: Mapping[str, Any], new: Mapping[str, Any], source: str) -> None:
    a, b = stream_keys(saved), stream_keys(new)
    diffs = [f"{sec}.{k}" for sec in a for k in a[sec] if a[sec][k] != b[sec][k] and f"{sec}.{k}" not in RESUMABLE]
    if diffs:
        sec, k = diffs[0].split(".")
        raise OsttpError(f"cannot resume with a different configuration: {diffs[0]} is {checks.show(b[sec][k])} "
                         f"here but {checks.show(a[sec][k])} in {source}")
