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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import osttp
from osttp.errors import OsttpError
from osttp.experiment.build import Setup, set_threads
from osttp.experiment.checkpoint import (CHECKPOINT_FORMAT, dumps_json, load_checkpoint, remove_stale_temps,
                                         rng_state, save_atomic, set_rng_state, with_digest, write_text_atomic)
from osttp.experiment.evaluate import drift_rows, drift_summary, eval_split
from osttp.experiment.progress import Log, Progress, make_progress
from osttp.experiment.results import fmt, results_record
from osttp.experiment.lock import locked_dir
from osttp.experiment.lr_schedule import lr_factor, set_lrs
from osttp.experiment.resume import (LAST, PREV, Corrupt, Position, check_history, check_optimizer_state,
                                     check_structure, pick_checkpoint, read_metrics)
from osttp.experiment.rundir import check_new_dir, run_config_text
from osttp.plots import plot_drift
from osttp.tasks import Batch, Metric
from osttp.tasks.base import derive_seed


class Diverged(Exception):
    """The loss or the parameters became NaN/Inf; the last checkpoint on disk is the last good one."""


class _Clock:
    """Wall time over all sessions: what earlier sessions recorded plus this session so far."""

    def __init__(self, base: float, start: float) -> None:
        self.base, self.start = base, start

    def now(self) -> float:
        return self.base + (time.perf_counter() - self.start)


def shuffle_seed(seed: int, epoch: int) -> int:
    """The data order of an epoch depends only on (seed, epoch): resumable and reproducible."""
    return derive_seed(seed, epoch, "epoch-order")


@torch.no_grad()
def _params_finite(net: torch.nn.Module) -> bool:
    # max |p| is finite exactly when every entry is (amax propagates NaN, |inf| is inf), and it costs
    # a quarter of isfinite's elementwise test: this runs after every batch.
    return math.isfinite(float(torch.stack([p.abs().amax() for p in net.parameters()]).amax()))


def _better(value: float, best: float | None, higher: bool) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if higher else value < best)


def _payload(setup: Setup, position: Position, wall_seconds: float | None = None) -> dict[str, Any]:
    """Everything a checkpoint holds (format and digest are added when it is written)."""
    p = copy.deepcopy(asdict(position))
    if wall_seconds is not None:
        p["wall_seconds"] = wall_seconds
    return {"format": CHECKPOINT_FORMAT, "model": setup.net.state_dict(), **setup.backend.checkpoint_state(),
            "progress": p, "rng": rng_state(setup.device), "net_config": setup.net.config,
            "osttp_version": osttp.__version__}


def nothing_trained(out: Path) -> bool:
    """A run directory killed before its first checkpoint: no checkpoint, no epoch record, no results."""
    ck = out / "checkpoints"
    if (ck / LAST).exists() or (ck / PREV).exists() or (out / "results.json").exists():
        return False
    return not read_metrics(out / "metrics.jsonl")


def _resume_position(setup: Setup, out: Path, log: Log) -> Position | None:
    """The position of the newest good checkpoint, loaded into the setup; None when nothing was
    trained yet (the run starts over); OsttpError when there is nothing good to resume from."""
    template = _payload(setup, Position())
    metric_keys = set(setup.tasks["train"].new_metric(setup.cfg["eval"]["decision"]).sums())
    metrics = read_metrics(out / "metrics.jsonl")

    def verify(ckpt: dict[str, Any], fallback: bool) -> Position:
        position = check_structure(ckpt, template, metric_keys)
        if ckpt["net_config"] != template["net_config"]:
            raise Corrupt("its network (net_config) differs from the configured model")
        check_history(position, metrics, fallback)
        try:
            setup.net.load_state_dict(ckpt["model"])
            setup.backend.load_checkpoint_state(ckpt)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise Corrupt(f"does not fit the configured model: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                          ) from None
        check_optimizer_state(setup.backend.torch_optimizers())
        return position

    picked = pick_checkpoint(out / "checkpoints", verify)
    if picked is None:
        if nothing_trained(out):
            return None
        raise OsttpError(f"cannot resume: no checkpoint in {str(out / 'checkpoints')!r}; start a new run "
                         "without --resume")
    ckpt, position, path, skipped = picked
    for why in skipped:
        log(f"osttp: warning: {why}; resuming from {path}")
    if position.epoch > setup.cfg["train"]["epochs"]:
        raise OsttpError(f"train.epochs = {setup.cfg['train']['epochs']} is less than the {position.epoch} epochs "
                         f"already done in {str(out)!r}")
    set_rng_state(ckpt["rng"], setup.device)
    return position


def train_run(setup: Setup, out: Path, *, resume: bool = False, quiet: bool = False, label: str | None = None,
              header: str = "", log: Log = print) -> dict[str, Any]:
    """Train `setup` in run directory `out` and return results.json's content.

    Fresh runs need `out` absent or empty; resume continues from the newest good checkpoint (or starts
    over when the run was killed before its first one). The directory is locked for the whole run
    (lock.RunLock). Raises OsttpError for bad input (before anything is written, or with the directory
    it made removed again) and Diverged on NaN/Inf (the last checkpoint stays the last good one)."""
    if not setup.writes:
        return _train_follower(setup, out, resume, label)
    if not resume:
        check_new_dir(out)
    with locked_dir(out) as created:
        return _train_locked(setup, out, resume, created, quiet, label, header, log)


def _train_locked(setup: Setup, out: Path, resume: bool, created: bool, quiet: bool, label: str | None,
                  header: str, log: Log) -> dict[str, Any]:
    cfg = setup.cfg
    last = out / "checkpoints" / LAST
    session_start = time.perf_counter()
    for d in (out, out / "checkpoints"):
        remove_stale_temps(d)  # ours now: we hold the lock, so their writers are dead
    position = _resume_position(setup, out, log) if resume else None
    fresh = position is None
    if not resume:
        check_new_dir(out)  # again, under the lock: no other writer started meanwhile
    position = position or Position()
    clock = _Clock(position.wall_seconds, session_start)
    try:
        last.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.toml", run_config_text(cfg, header))
        _write_metrics(out, position.history)
        if fresh:
            _save_checkpoint(setup, position, last)  # a first good checkpoint before any update
    except OSError as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise OsttpError(f"cannot write run directory {str(out)!r}: {e.strerror or e}") from None
    _join_group(setup)

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


def _join_group(setup: Setup) -> None:
    """Data-parallel: the other processes wait until rank 0 has made, cleaned or checkpointed the run
    directory, then every process checks that it holds the same weights and optimizer state."""
    if setup.parallel is not None:
        setup.parallel.barrier()
        setup.parallel.check_identical(setup.named_state(), "the weights and optimizer state to start from")


def _train_follower(setup: Setup, out: Path, resume: bool, label: str | None) -> dict[str, Any]:
    """A data-parallel process other than rank 0: the same run, reading the directory only to resume."""
    setup.parallel.barrier()  # type: ignore[union-attr]  # rank 0 is done with the directory's set-up

    def silent(line: str) -> None:
        pass
    position = (_resume_position(setup, out, silent) if resume else None) or Position()
    setup.parallel.check_identical(setup.named_state(), "the weights and optimizer state to start from")  # type: ignore[union-attr]
    clock = _Clock(position.wall_seconds, time.perf_counter())
    set_threads(setup.cfg)
    name = label or f"{setup.cfg['train']['rule']} s{setup.cfg['train']['seed']}"
    _loop(setup, out, position, clock, True, name, silent)
    return _finish(setup, out, position, clock, silent, name)


def _save_checkpoint(setup: Setup, position: Position, path: Path, clock: _Clock | None = None) -> None:
    """The newest checkpoint becomes last.pt; the one it replaces is kept as prev.pt."""
    save_atomic(with_digest(_payload(setup, position, clock.now() if clock else None)), path,
                keep=path.with_name(PREV))


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    # Rewritten whole from the checkpointed history, so after a resume it never holds an epoch twice.
    write_text_atomic(out / "metrics.jsonl", "".join(dumps_json(h, indent=None) + "\n" for h in history))


def _loop(setup: Setup, out: Path, position: Position, clock: _Clock, quiet: bool, name: str, log: Log) -> None:
    """Train epoch by epoch from `position` to train.epochs, with the progress bar."""
    tr = setup.cfg["train"]
    nb = _batches_per_epoch(setup)
    bar = make_progress(quiet, tr["epochs"] * nb, position.epoch * nb + position.batch, name, log)
    try:
        while position.epoch < tr["epochs"]:
            bar.describe(f"{name} epoch {position.epoch + 1}/{tr['epochs']}")
            metric = _train_epoch(setup, out, position, clock, nb, bar)
            _end_epoch(setup, out, position, clock, metric, nb, bar, name)
    finally:
        bar.close()
    position.wall_seconds = clock.now()


def _batches_per_epoch(setup: Setup) -> int:
    tr = setup.cfg["train"]
    nb = setup.tasks["train"].num_batches(tr["batch_size"])
    return nb if tr["max_batches"] is None else min(nb, tr["max_batches"])


def _train_epoch(setup: Setup, out: Path, position: Position, clock: _Clock, nb: int, bar: Progress) -> Metric:
    """The remaining batches of the epoch at `position`; returns its running train metric. Checkpoints
    every run.checkpoint_every batches (the time they take is not training time)."""
    cfg, task = setup.cfg, setup.tasks["train"]
    tr, every = cfg["train"], cfg["run"]["checkpoint_every"]
    metric = task.new_metric(cfg["eval"]["decision"])
    if position.train_metric is not None:
        metric.set_sums(position.train_metric)
    batches = task.batches(tr["batch_size"], shuffle=tr["shuffle"], seed=shuffle_seed(tr["seed"], position.epoch),
                           dtype=setup.dtype, start=position.batch)
    t0 = time.perf_counter()
    for b, batch in zip(range(position.batch, nb), batches):
        _train_batch(setup, out, position, metric, batch, b)
        position.batch = b + 1
        position.global_batches += 1
        now = time.perf_counter()
        position.epoch_seconds += now - t0
        position.train_seconds += now - t0
        t0 = now
        running = metric.compute()
        bar.update({"loss": f"{running['loss']:.4f}", task.metric_name: f"{running[task.metric_name]:.4f}"})
        if every and position.global_batches % every == 0 and position.batch < nb:
            position.train_metric = metric.sums()
            if setup.writes:
                _save_checkpoint(setup, position, out / "checkpoints" / LAST, clock)
            t0 = time.perf_counter()
    return metric


def _train_batch(setup: Setup, out: Path, position: Position, metric: Metric, batch: Batch, b: int) -> None:
    """One batch: reset, every step, the update; Diverged on a non-finite loss or parameter."""
    stepper, tr = setup.stepper, setup.cfg["train"]
    lr = tr["lr"]
    if tr["lr_schedule"] != "constant":  # constant leaves the optimizer's lr alone: runs as before
        nb = _batches_per_epoch(setup)
        factor = lr_factor(tr["lr_schedule"], position.epoch * nb + b, tr["epochs"] * nb)
        set_lrs(setup.backend.optimizer.param_groups, setup.base_lrs, factor)
        lr = lr * factor
    if setup.parallel is not None:
        batch = setup.parallel.shard(batch)
    xs, ys, mask = (batch.xs.to(setup.device), batch.ys.to(setup.device), batch.mask.to(setup.device))
    stepper.reset(xs.shape[1])
    # A learner checks the batch's values once (`steps`); a wrapper (hardware) is driven step by step.
    if isinstance(stepper, osttp.Learner):
        outs = stepper.steps(xs, ys, mask)
    else:
        outs = torch.stack([stepper.step(xs[t], ys[t], mask[t]) for t in range(xs.shape[0])])
    position.learner_state_bytes = max(position.learner_state_bytes, setup.learner.state_nbytes())
    overflow = ""
    try:
        stepper.apply()
    except RuntimeError as e:  # e.g. Adam's lr / (1 - beta1) overflowing float32
        if "overflow" not in str(e):
            raise
        overflow = str(e).splitlines()[0]
    loss = float(stepper.loss_sum) if setup.parallel is None else setup.parallel.sum(stepper.loss_sum)
    if overflow or not math.isfinite(loss) or not _params_finite(setup.net):
        what = (f"the update overflowed ({overflow})" if overflow else f"loss {loss}"
                if not math.isfinite(loss) else "a non-finite parameter after the update")
        raise Diverged(f"training diverged at epoch {position.epoch + 1}, batch {b + 1}: {what} "
                       f"(learning rate {lr} too large?); last good checkpoint: {out / 'checkpoints' / LAST}")
    _update_metric(setup, metric, outs, batch)


def _end_epoch(setup: Setup, out: Path, position: Position, clock: _Clock, metric: Metric, nb: int,
               bar: Progress, name: str) -> None:
    """Validate, record the epoch, keep the best parameters, checkpoint."""
    net, task, epochs = setup.net, setup.tasks["train"], setup.cfg["train"]["epochs"]
    mname, epoch = task.metric_name, position.epoch
    t_eval = time.perf_counter()
    valid = eval_split(setup, "valid")
    record = {"epoch": epoch + 1, "batches": nb, "train": metric.compute(), "valid": valid,
              "seconds": position.epoch_seconds, "eval_seconds": time.perf_counter() - t_eval}
    position.history.append(record)
    position.epoch, position.batch = epoch + 1, 0
    position.train_metric, position.epoch_seconds = None, 0.0
    if _better(valid[mname], position.best_value, task.higher_is_better):
        position.best_epoch, position.best_value = epoch + 1, valid[mname]
        if setup.writes:
            save_atomic(with_digest({"model": net.state_dict(), "epoch": epoch + 1, "net_config": net.config}),
                        out / "checkpoints" / "best.pt")
    if setup.writes:
        _save_checkpoint(setup, position, out / "checkpoints" / LAST, clock)
        _write_metrics(out, position.history)
    tm = record["train"]
    bar.write(f"[{name}] epoch {epoch + 1}/{epochs}  train loss {tm['loss']:.4f} {mname} "
              f"{tm[mname]:.4f}  valid loss {valid['loss']:.4f} {mname} {valid[mname]:.4f}  "
              f"{record['seconds']:.1f} s")


def _update_metric(setup: Setup, metric: Metric, outputs: torch.Tensor, batch: Batch) -> None:
    """Add a batch to the running metric; data-parallel: every process adds the whole batch's sums."""
    if setup.parallel is None:
        metric.update(outputs, batch)
        return
    part = setup.tasks["train"].new_metric(setup.cfg["eval"]["decision"])
    part.update(outputs, batch)
    setup.parallel.reduce_metric(part)
    batch_sums = part.sums()
    metric.set_sums({k: v + batch_sums[k] for k, v in metric.sums().items()})


def _finish(setup: Setup, out: Path, position: Position, clock: _Clock, log: Log, name: str) -> dict[str, Any]:
    cfg = setup.cfg
    if setup.parallel is not None:
        setup.parallel.barrier()  # rank 0 has written best.pt, which every process may read below
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
    position.wall_seconds = clock.now()
    if not setup.writes:
        return results_record(setup, position, status="completed", test_params=test_params,
                              valid_metric=valid_metric, test_metric=test[mname], test_loss=test["loss"], test=test)
    save_atomic(with_digest({"model": final_state, "net_config": setup.net.config, **setup.backend.model_state()}),
                out / "model.pt")
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
