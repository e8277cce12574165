"""Training one run in its directory, with checkpoints, resume and the final test.

    results = train_run(setup, Path("runs/x"))  # config.toml, metrics.jsonl, checkpoints/, results.json

The data order of epoch e comes from (train.seed, e); nothing reads the global RNG, whose state is
saved anyway. A checkpoint holds everything the loop carries (parameters, the backend's optimizer or
device state, the position, the running train metric, history, clocks, RNG states), so a resumed run
on the CPU continues bit for bit.
"""
from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import osttp
from osttp.errors import OsttpError
from osttp.experiment.build import Setup, set_threads
from osttp.experiment.checkpoint import (CHECKPOINT_FORMAT, dumps_json, load_checkpoint, rng_state, save_atomic,
                                         set_rng_state, write_text_atomic)
from osttp.experiment.evaluate import drift_rows, drift_summary, eval_split
from osttp.experiment.progress import Log, make_progress
from osttp.experiment.results import fmt, results_record
from osttp.experiment.rundir import check_new_dir, run_config_text
from osttp.plots import plot_drift
from osttp.tasks.base import derive_seed


class Diverged(Exception):
    """The loss or the parameters became NaN/Inf; the last checkpoint on disk is the last good one."""


@dataclass
class Position:
    """Where the loop is: saved in every checkpoint as "progress" (plain values only)."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # batches done in the current epoch
    global_batches: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per completed epoch
    train_metric: dict[str, Any] | None = None  # the running metric's state, mid-epoch
    epoch_seconds: float = 0.0  # training time of the current epoch so far
    train_seconds: float = 0.0
    wall_seconds: float = 0.0  # all sessions, up to the last checkpoint
    best_epoch: int | None = None
    best_value: float | None = None
    learner_state_bytes: int = 0  # largest learner.state_nbytes() seen at a sequence end


class _Clock:
    """Wall time over all sessions: what earlier sessions recorded plus this session so far."""

    def __init__(self, base: float, start: float) -> None:
        self.base, self.start = base, start

    def now(self) -> float:
        return self.base + (time.perf_counter() - self.start)


def shuffle_seed(seed: int, epoch: int) -> int:
    """The data order of an epoch depends only on (seed, epoch): resumable and reproducible."""
    return derive_seed(seed, epoch, "epoch-order")


def _params_finite(net: torch.nn.Module) -> bool:
    flags = [torch.isfinite(p).all() for p in net.parameters()]
    return bool(torch.stack(flags).all())


def _better(value: float, best: float | None, higher: bool) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if higher else value < best)


def _resume_position(setup: Setup, last: Path, out: Path) -> Position:
    if not last.is_file():
        raise OsttpError(f"cannot resume: no checkpoint {str(last)!r}; start a new run without --resume")
    ckpt = load_checkpoint(last)
    try:
        setup.net.load_state_dict(ckpt["model"])
        setup.backend.load_checkpoint_state(ckpt)
    except (RuntimeError, ValueError, KeyError, OsttpError) as e:
        raise OsttpError(f"checkpoint {str(last)!r} does not match the configured model: "
                         f"{str(e).splitlines()[0]}") from None
    position = Position(**ckpt["progress"])
    if position.epoch > setup.cfg["train"]["epochs"]:
        raise OsttpError(f"train.epochs = {setup.cfg['train']['epochs']} is less than the {position.epoch} epochs "
                         f"already done in {str(out)!r}")
    set_rng_state(ckpt["rng"], setup.device)
    return position


def train_run(setup: Setup, out: Path, *, resume: bool = False, quiet: bool = False, label: str | None = None,
              header: str = "", log: Log = print) -> dict[str, Any]:
    """Train `setup` in run directory `out` and return results.json's content.

    Fresh runs need `out` absent or empty; resume needs out/checkpoints/last.pt. Raises OsttpError
    for bad input (before anything is written, or with the directory it made removed again) and
    Diverged on NaN/Inf (the last checkpoint stays the last good one)."""
    cfg = setup.cfg
    last = out / "checkpoints" / "last.pt"
    created = False
    session_start = time.perf_counter()
    if resume:
        position = _resume_position(setup, last, out)
    else:
        position = Position()
        check_new_dir(out)
        created = not out.exists()
    clock = _Clock(position.wall_seconds, session_start)
    try:
        last.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.toml", run_config_text(cfg, header))
        _write_metrics(out, position.history)
        if not resume:
            _save_checkpoint(setup, position, last)  # a first good checkpoint before any update
    except OSError as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise OsttpError(f"cannot write run directory {str(out)!r}: {e.strerror or e}") from None

    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    set_threads(cfg)
    name = label or f"{cfg['train']['rule']} s{cfg['train']['seed']}"
    try:
        _loop(setup, out, position, clock, quiet, name, log)
    except Diverged as e:
        write_text_atomic(out / "results.json",
                          dumps_json(results_record(setup, position, status="diverged", error=str(e))))
        raise
    return _finish(setup, out, position, clock, log, name)


def _save_checkpoint(setup: Setup, position: Position, path: Path, clock: _Clock | None = None) -> None:
    p = copy.deepcopy(asdict(position))
    if clock is not None:
        p["wall_seconds"] = clock.now()
    save_atomic({"format": CHECKPOINT_FORMAT, "model": setup.net.state_dict(), **setup.backend.checkpoint_state(),
                 "progress": p, "rng": rng_state(setup.device),
                 "net_config": setup.net.config, "osttp_version": osttp.__version__}, path)


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    # Rewritten whole from the checkpointed history, so after a resume it never holds an epoch twice.
    write_text_atomic(out / "metrics.jsonl", "".join(dumps_json(h, indent=None) + "\n" for h in history))


def _loop(setup: Setup, out: Path, position: Position, clock: _Clock, quiet: bool, name: str, log: Log) -> None:
    cfg, net, stepper = setup.cfg, setup.net, setup.stepper
    tr, task = cfg["train"], setup.tasks["train"]
    higher = task.higher_is_better
    mname = task.metric_name
    nb = task.num_batches(tr["batch_size"])
    if tr["max_batches"] is not None:
        nb = min(nb, tr["max_batches"])
    every = cfg["run"]["checkpoint_every"]
    last = out / "checkpoints" / "last.pt"
    bar = make_progress(quiet, tr["epochs"] * nb, position.epoch * nb + position.batch, name, log)
    try:
        while position.epoch < tr["epochs"]:
            epoch = position.epoch
            bar.describe(f"{name} epoch {epoch + 1}/{tr['epochs']}")
            metric = task.new_metric(cfg["eval"]["decision"])
            if position.train_metric is not None:
                metric.__dict__.update(copy.deepcopy(position.train_metric))
            batches = task.batches(tr["batch_size"], shuffle=tr["shuffle"], seed=shuffle_seed(tr["seed"], epoch),
                                   dtype=setup.dtype, start=position.batch)
            t0 = time.perf_counter()
            for b, batch in zip(range(position.batch, nb), batches):
                xs, ys, mask = (batch.xs.to(setup.device), batch.ys.to(setup.device), batch.mask.to(setup.device))
                stepper.reset(xs.shape[1])
                outs = [stepper.step(xs[t], ys[t], mask[t]) for t in range(xs.shape[0])]
                position.learner_state_bytes = max(position.learner_state_bytes, setup.learner.state_nbytes())
                overflow = ""
                try:
                    stepper.apply()
                except RuntimeError as e:  # e.g. Adam's lr / (1 - beta1) overflowing float32
                    if "overflow" not in str(e):
                        raise
                    overflow = str(e).splitlines()[0]
                loss = float(stepper.loss_sum)
                if overflow or not math.isfinite(loss) or not _params_finite(net):
                    what = (f"the update overflowed ({overflow})" if overflow else f"loss {loss}"
                            if not math.isfinite(loss) else "a non-finite parameter after the update")
                    raise Diverged(f"training diverged at epoch {epoch + 1}, batch {b + 1}: {what} "
                                   f"(learning rate {tr['lr']} too large?); last good checkpoint: {last}")
                metric.update(torch.stack(outs), batch)
                position.batch = b + 1
                position.global_batches += 1
                now = time.perf_counter()
                position.epoch_seconds += now - t0
                position.train_seconds += now - t0
                t0 = now
                running = metric.compute()
                bar.update({"loss": f"{running['loss']:.4f}", mname: f"{running[mname]:.4f}"})
                if every and position.global_batches % every == 0 and position.batch < nb:
                    position.train_metric = dict(metric.__dict__)
                    _save_checkpoint(setup, position, last, clock)
                    t0 = time.perf_counter()  # checkpoint time is not training time
            # end of epoch: validate, record, checkpoint
            t_eval = time.perf_counter()
            valid = eval_split(setup, "valid")
            record = {"epoch": epoch + 1, "batches": nb, "train": metric.compute(), "valid": valid,
                      "seconds": position.epoch_seconds, "eval_seconds": time.perf_counter() - t_eval}
            position.history.append(record)
            position.epoch, position.batch = epoch + 1, 0
            position.train_metric, position.epoch_seconds = None, 0.0
            if _better(valid[mname], position.best_value, higher):
                position.best_epoch, position.best_value = epoch + 1, valid[mname]
                save_atomic({"format": CHECKPOINT_FORMAT, "model": net.state_dict(), "epoch": epoch + 1,
                             "net_config": net.config}, out / "checkpoints" / "best.pt")
            _save_checkpoint(setup, position, last, clock)
            _write_metrics(out, position.history)
            tm = record["train"]
            bar.write(f"[{name}] epoch {epoch + 1}/{tr['epochs']}  train loss {tm['loss']:.4f} {mname} "
                      f"{tm[mname]:.4f}  valid loss {valid['loss']:.4f} {mname} {valid[mname]:.4f}  "
                      f"{record['seconds']:.1f} s")
    finally:
        bar.close()
    position.wall_seconds = clock.now()


def _finish(setup: Setup, out: Path, position: Position, clock: _Clock, log: Log, name: str) -> dict[str, Any]:
    cfg = setup.cfg
    mname = setup.tasks["test"].metric_name
    test_params = cfg["eval"]["test_params"]
    setup.backend.final_weights()
    final_state = copy.deepcopy(setup.net.state_dict())
    if test_params == "best-valid" and (out / "checkpoints" / "best.pt").is_file():
        setup.net.load_state_dict(load_checkpoint(out / "checkpoints" / "best.pt")["model"])
        valid_metric = position.best_value
    else:
        valid_metric = position.history[-1]["valid"][mname] if position.history else None
    test = eval_split(setup, "test")
    setup.net.load_state_dict(final_state)
    save_atomic({"format": CHECKPOINT_FORMAT, "model": final_state, "net_config": setup.net.config,
                 **setup.backend.model_state()}, out / "model.pt")
    extra: dict[str, Any] = {}
    rows = drift_rows(setup)
    if rows:
        write_text_atomic(out / "drift.json", dumps_json(rows))
        plot_drift(rows, out / "drift.png", metric=mname,
                   title=f"{name}: {cfg['hardware']['synapse']}, {cfg['hardware']['update']}")
        extra["drift"] = d = drift_summary(rows, mname)
        log(f"[{name}] drift: test {mname} at {d['last']['t_s']:g} s {fmt(d['last']['no_compensation'])} "
            f"(compensated {fmt(d['last']['compensation'])}); {out / 'drift.json'}, {out / 'drift.png'}")
    position.wall_seconds = clock.now()  # test evaluation included
    results = results_record(setup, position, status="completed", test_params=test_params,
                             valid_metric=valid_metric, test_metric=test[mname], test_loss=test["loss"], test=test,
                             **extra)
    write_text_atomic(out / "results.json", dumps_json(results))
    log(f"[{name}] test {mname} {fmt(test[mname])} ({test_params} parameters), valid {mname} "
        f"{fmt(valid_metric)}; results in {out / 'results.json'}")
    return results
