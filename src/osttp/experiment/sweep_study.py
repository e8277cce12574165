"""The sweep process of `osttp sweep`: one Optuna study, trials run as `osttp train` child processes.

The process asks Optuna for a trial, writes its config to DIR/trials/NNNN.toml and runs
`python -m osttp train --config DIR/trials/NNNN.toml --out DIR/trials/NNNN --quiet`, up to
`workers` at a time; when a child ends it reads results.json and tells Optuna the valid metric.

Trial states: completed (a value), diverged / crashed (failed, but finished: they count towards
n_trials and are not repeated), interrupted (the sweep stopped or died while it ran: failed and
queued again with the same values, so a resumed sweep runs it anew).
"""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from osttp.errors import OsttpError

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130
POLL_S = 0.2
HEARTBEAT_S = 30  # a trial whose sweep process stops heart-beating for GRACE_S is failed and re-queued
GRACE_S = 180
COUNTED = ("diverged", "crashed", "invalid")  # failed trials that still count towards n_trials


@dataclass
class Running:
    trial: Any  # optuna.trial.Trial
    proc: subprocess.Popen[bytes]
    run_dir: Path
    log: IO[bytes]
    started: float


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the sweep process dies, so no orphan keeps training."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Sweep:
    def __init__(self, spec: Any, out: Path, storage_url: str, n_trials: int, workers: int, maximize: bool,
                 metric_name: str, command: str) -> None:
        self.spec, self.out, self.url, self.n_trials, self.workers = spec, out, storage_url, n_trials, workers
        self.maximize, self.metric_name, self.command = maximize, metric_name, command
        self.host = socket.gethostname()
        self.running: dict[int, Running] = {}
        self.threads = max(1, (os.cpu_count() or 1) // workers)
        self.study = self._open_study()

    # ----------------------------------------------------------------------------- study

    def _open_study(self) -> Any:
        import inspect
        import warnings

        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # We record heartbeats ourselves (ask/tell, not Study.optimize), which Optuna warns about.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        kw: dict[str, Any] = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S}
        cb = "heartbeat_stale_trial_callback"
        params = inspect.signature(optuna.storages.RDBStorage).parameters
        kw[cb if cb in params else "failed_trial_callback"] = self._requeue
        try:
            storage = optuna.storages.RDBStorage(self.url, **kw)
        except Exception as e:  # a bad URL or an unreachable database: one line, exit 2
            raise OsttpError(f"cannot open the study storage {self.url!r}: {type(e).__name__}: {e}") from None
        self.storage = storage
        seed_base = self.spec.seed
        study = optuna.create_study(study_name=self.spec.name, storage=storage, load_if_exists=True,
                                    direction="maximize" if self.maximize else "minimize",
                                    sampler=optuna.samplers.RandomSampler(seed=seed_base))
        fp = study.user_attrs.get("osttp_spec")
        if fp is None and not study.trials:
            study.set_user_attr("osttp_spec", self.spec.fingerprint())
            for point in self.spec.grid:  # a grid is a fixed queue, taken in order
                study.enqueue_trial(point)
        elif fp != self.spec.fingerprint():
            raise OsttpError(f"study {self.spec.name!r} in {self.url} was made by a different sweep spec (base "
                             "config, space, sampler, metric or seed differ); use another --out, --storage or "
                             "[sweep] name")
        if (study.direction.name == "MAXIMIZE") != self.maximize:
            raise OsttpError(f"study {self.spec.name!r} has direction {study.direction.name.lower()}, but the "
                             f"task's {self.metric_name} is {'maximised' if self.maximize else 'minimised'}")
        # A resumed sampler must not replay the random stream of the first session: seed it with the
        # number of trials already in the study (0 for a fresh sweep, so that one stays reproducible).
        study.sampler = self._sampler(optuna, seed_base * 1_000_003 + len(study.trials))
        return study

    def _sampler(self, optuna: Any, seed: int) -> Any:
        if self.spec.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)  # grid trials come from the queue

    def _requeue(self, study: Any, trial: Any) -> None:
        """Queue a failed-by-interruption trial again with the same values (a new trial number)."""
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})

    def _fail_own_stale(self) -> None:
        """RUNNING trials this directory started in an earlier session (killed sweep): failed and re-queued.
        The directory lock guarantees no live process of ours still runs them."""
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("sweep_dir") == str(self.out) and t.user_attrs.get("host") == self.host:
                self.storage.set_trial_user_attr(t._trial_id, "status", "interrupted")
                self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                self._requeue(self.study, t)
                print(f"trial {t.number}: left running by an earlier session; queued again", flush=True)

    def _counted(self) -> int:
        """Trials that count towards n_trials: finished (not interrupted) or running, on any machine."""
        n = 0
        for t in self.study.get_trials(deepcopy=False):
            state = t.state.name
            if state == "RUNNING" or state == "COMPLETE" or (state == "FAIL" and t.user_attrs.get("status") in COUNTED):
                n += 1
        return n

    def _waiting(self) -> int:
        from optuna.trial import TrialState

        return len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    # ----------------------------------------------------------------------------- trials

    def _launch(self) -> bool:
        """Start one trial; False when there is nothing left to start."""
        from optuna.trial import TrialState

        if self.spec.sampler == "grid" and not self._waiting():
            return False
        trial = self.study.ask()
        try:
            return self._start(trial)
        except BaseException:
            if trial.number not in self.running:  # never leave an asked trial RUNNING in the study
                if "status" not in trial.user_attrs:
                    trial.set_user_attr("status", "crashed")
                self._tell(trial, TrialState.FAIL)
            raise

    def _start(self, trial: Any) -> bool:
        from optuna.trial import TrialState

        from osttp.experiment.tomlio import dumps_toml
        from osttp.experiment.sweep_spec import trial_config

        fixed = "fixed_params" in self.storage.get_trial_system_attrs(trial._trial_id)
        if self.spec.sampler == "grid" and not fixed:
            # another machine took the last grid point between our check and ask()
            trial.set_user_attr("status", "surplus")
            self.study.tell(trial, state=TrialState.FAIL)
            return False
        values = {}
        for q in self.spec.params:
            if q.kind == "choice":
                enc = trial.suggest_categorical(q.key, list(q.encoded))
            elif q.kind == "int":
                enc = trial.suggest_int(q.key, int(q.low), int(q.high), log=q.log)
            else:
                enc = trial.suggest_float(q.key, float(q.low), float(q.high), log=q.log)
            values[q.key] = q.decode(enc)
        name = f"{trial.number:04d}"
        run_dir = self.out / "trials" / name
        for k, v in (("sweep_dir", str(self.out)), ("host", self.host), ("values", values),
                     ("run_dir", str(run_dir.relative_to(self.out)))):
            trial.set_user_attr(k, v)
        self.storage.record_heartbeat(trial._trial_id)
        try:
            cfg = trial_config(self.spec, values)
        except OsttpError as e:
            trial.set_user_attr("status", "invalid")
            self.study.tell(trial, state=TrialState.FAIL)
            raise OsttpError(f"trial {trial.number}: {e}") from None
        if cfg["run"]["threads"] == 0:  # share the cores between the workers instead of oversubscribing
            cfg["run"]["threads"] = self.threads
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        toml = run_dir.parent / f"{name}.toml"
        toml.write_text(dumps_toml(cfg, f"sweep {self.spec.name}, trial {trial.number}: "
                                          + json.dumps(values, default=str)))
        log = open(run_dir.parent / f"{name}.log", "wb")
        cmd = [sys.executable, "-m", "osttp", "train", "--config", str(toml), "--out", str(run_dir), "--quiet"]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        self.running[trial.number] = Running(trial, proc, run_dir, log, time.time())
        print(f"trial {trial.number}: started {json.dumps(values, default=str)}", flush=True)
        return True

    def _finish(self, r: Running, rc: int, interrupted: bool = False) -> None:
        from optuna.trial import TrialState

        r.log.close()
        wall = round(time.time() - r.started, 2)
        trial, number = r.trial, r.trial.number
        trial.set_user_attr("wall_s", wall)
        res = _results(r.run_dir)
        value = res.get(self.spec.metric) if res else None
        if rc == 0 and res is not None and isinstance(value, (int, float)) and math.isfinite(value):
            if bool(res.get("higher_is_better")) != self.maximize:
                raise OsttpError(f"trial {number}: results.json says higher_is_better = {res.get('higher_is_better')}"
                                 " but the study's direction disagrees")
            trial.set_user_attr("status", "completed")
            trial.set_user_attr("test_metric", res.get("test_metric"))
            self._tell(trial, TrialState.COMPLETE, float(value))
            print(f"trial {number}: valid {self.metric_name} {value:.4g} ({wall:.1f} s)", flush=True)
            return
        if interrupted or rc == EXIT_INTERRUPTED:
            status = "interrupted"
        elif rc == EXIT_DIVERGED:
            status = "diverged"
        elif rc == EXIT_BAD_INPUT:
            status = "invalid"
        else:
            status = "crashed"
        trial.set_user_attr("status", status)
        if self._tell(trial, TrialState.FAIL) and status == "interrupted":
            self._requeue(self.study, self.storage.get_trial(trial._trial_id))
        print(f"trial {number}: {status} (exit {rc}; log {r.run_dir.parent / (r.run_dir.name + '.log')})", flush=True)
        if status == "invalid":
            raise OsttpError(f"trial {number}: osttp train refused its config: {_last_line(r.run_dir)}")

    def _tell(self, trial: Any, state: Any, value: float | None = None) -> bool:
        import optuna

        try:
            self.study.tell(trial, value, state=state) if value is not None else self.study.tell(trial, state=state)
            return True
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
            # failed as stale by another machine's sweep while it ran (this process was paused)
            print(f"trial {trial.number}: already closed by another sweep process; its result is kept in "
                  f"{self.out / 'trials'}", flush=True)
            return False

    def _stop_all(self) -> None:
        """Ask every child to stop (SIGINT: it checkpoints and exits 130), then record them as interrupted."""
        for r in self.running.values():
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGINT)
        deadline = time.time() + 30
        for r in self.running.values():
            try:
                r.proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
        for number in list(self.running):
            self._finish(self.running.pop(number), EXIT_INTERRUPTED, interrupted=True)

    # ----------------------------------------------------------------------------- main loop

    def run(self) -> int:
        import optuna

        from osttp.experiment import sweep_report

        (self.out / "sweep.json").write_text(json.dumps(
            {"spec": str(self.spec.path), "study": self.spec.name, "storage": sweep_report._masked(self.url),
             "command": self.command}, indent=1) + "\n")
        self._fail_own_stale()
        print(f"sweep {self.spec.name}: {self.spec.sampler}, {self.n_trials} trials, {self.workers} worker(s), "
              f"valid {self.metric_name} ({'max' if self.maximize else 'min'}); {self.out}", flush=True)
        code = 0
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            beat = time.time()
            more = True
            while True:
                for number, r in list(self.running.items()):
                    rc = r.proc.poll()
                    if rc is not None:
                        self._finish(self.running.pop(number), rc)
                if time.time() - beat > HEARTBEAT_S / 2:
                    for r in self.running.values():
                        self.storage.record_heartbeat(r.trial._trial_id)
                    beat = time.time()
                while more and len(self.running) < self.workers:
                    optuna.storages.fail_stale_trials(self.study)
                    if self._counted() >= self.n_trials or not self._launch():
                        more = False
                if not self.running:
                    break
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            self._stop_all()
            code = EXIT_INTERRUPTED
        except BaseException:
            self._stop_all()
            raise
        finally:
            signal.signal(signal.SIGTERM, old_term)
            self._report()
        if code == EXIT_INTERRUPTED:
            again = self.command if self.command.endswith("--resume") else self.command + " --resume"
            print(f"osttp: sweep interrupted; continue with: {again}", file=sys.stderr)
        return code

    def _report(self) -> None:
        from osttp.experiment import sweep_report

        rows = sweep_report.trial_rows(self.spec, self.study.get_trials(deepcopy=False))
        summary = sweep_report.summarise(self.spec, rows, maximize=self.maximize, metric_name=self.metric_name,
                                         storage=self.url, n_trials=self.n_trials, command=self.command)
        j, m, png = sweep_report.write(summary, self.out)
        best = summary["best"]
        if best is not None:
            print(f"best: trial {best['number']}, valid {self.metric_name} {best['value']:.4g}, "
                  f"{json.dumps(best['values'], default=str)}", flush=True)
        print(f"summary: {m}  {j}  {png}", flush=True)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _results(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None


def _last_line(run_dir: Path) -> str:
    try:
        lines = (run_dir.parent / f"{run_dir.name}.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"
