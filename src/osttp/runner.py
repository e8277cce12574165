"""Training runs on disk: build a run from a config, train with checkpoints, resume, compare rules.

    setup = prepare(cfg)                       # validates everything, touches no file
    results = train_run(setup, Path("runs/x"))  # config.toml, metrics.jsonl, checkpoints/, results.json

Pieces meant to be swapped (hardware synapses, other update schemes) are single functions:
`make_network`, `make_optimizer`, `make_rule`, `evaluate`. docs/cli.md describes the files.

Reproducibility: weights come from a generator seeded with train.seed, the data order of epoch e
from (train.seed, e), and the tasks draw their own randomness from their own seeds; nothing reads
the global RNG, whose state is saved anyway. A checkpoint holds everything the loop carries
(parameters, optimizer state, position, the running train metric, history, clocks, RNG states), so
a resumed run on the CPU continues bit for bit.
"""
from __future__ import annotations

import copy
import json
import math
import os
import resource
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

import osttp
from osttp import config as C
from osttp.errors import OsttpError
from osttp.network import Network
from osttp.tasks import Task
from osttp.tasks.base import derive_seed

CHECKPOINT_FORMAT = "osttp-checkpoint-1"

Log = Callable[[str], None]


class Diverged(Exception):
    """The loss or the parameters became NaN/Inf; the last checkpoint on disk is the last good one."""


# ---------------------------------------------------------------------------------------------
# building a run


@dataclass
class Setup:
    """A validated, built run: everything but the files."""

    cfg: dict[str, Any]
    device: torch.device
    dtype: torch.dtype
    tasks: dict[str, Task]
    net: Network
    optimizer: Any  # a torch optimizer, or HardwareTraining.optimizer with simulated synapses
    learner: Any  # an osttp.Learner, or a HardwareLearner wrapping one
    hw: Any = None  # osttp.hardware.HardwareTraining when hardware.synapse is not "float"


def select_device(spec: str) -> torch.device:
    """auto: CUDA when present, else the CPU; an explicit cuda without one is bad input."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise OsttpError(f"device {spec!r} requested but CUDA is not available; use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise OsttpError(f"device {spec!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


TaskCache = dict[str, Task]


def load_tasks(cfg: Mapping[str, Any], cache: TaskCache | None = None) -> dict[str, Task]:
    """train/valid/test splits of cfg's task; the cache lets compare load each split once."""
    name, params = cfg["task"]["name"], cfg["task"]["params"]
    out = {}
    for split in ("train", "valid", "test"):
        key = json.dumps([name, split, params], sort_keys=True, default=str)
        if cache is not None and key in cache:
            out[split] = cache[key]
            continue
        out[split] = osttp.tasks.load(name, split, **params)
        if cache is not None:
            cache[key] = out[split]
    return out


def make_network(cfg: Mapping[str, Any], task: Task, device: torch.device, dtype: torch.dtype) -> Network:
    """Built on the CPU and then moved, so the initial weights are the same on every device."""
    m = cfg["model"]
    net = Network.from_sizes([task.n_in, *m["hidden"], task.n_out], cell=m["cell"], recurrent=m["recurrent"],
                             seed=cfg["train"]["seed"], dtype=dtype, cell_options=m["cell_options"],
                             feedback_scale=m["feedback_scale"])
    return net.to(device)


def make_optimizer(cfg: Mapping[str, Any], net: Network) -> torch.optim.Optimizer:
    """The one place that decides how gradients become parameter changes (hardware schemes plug in here)."""
    t = cfg["train"]
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(net.parameters(), lr=t["lr"], momentum=t["momentum"],
                               weight_decay=t["weight_decay"])
    return torch.optim.Adam(net.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])


def make_hardware(cfg: Mapping[str, Any], net: Network) -> Any:
    """The weight matrices of `net` in simulated devices ([hardware]); None for synapse = "float".

    Built after the network, so the devices are programmed with the seeded initial weights and
    w_range scales each layer's range from them: the same config gives the same devices."""
    h = cfg.get("hardware") or C.defaults()["hardware"]
    if h["synapse"] == "float":
        return None
    from osttp import hardware

    device = hardware.get_device("quantized", bits=h["bits"]) if h["synapse"] == "quantized" else h["synapse"]
    return hardware.HardwareTraining(net, device=device, scheme=h["update"], lr=cfg["train"]["lr"],
                                     seed=derive_seed(cfg["train"]["seed"], "hardware"),
                                     auto_w_max=h["w_range"] or None)


def make_rule(cfg: Mapping[str, Any], net: Network, optimizer: torch.optim.Optimizer, task: Task) -> osttp.Learner:
    t = cfg["train"]
    window = t["window"] if t["rule"] == "tbptt" else None  # other rules ignore it (documented)
    return osttp.make_learner(t["rule"], net, optimizer=optimizer, schedule=t["schedule"], loss=task.loss,
                              window=window)


def set_threads(cfg: Mapping[str, Any]) -> None:
    """Small networks run faster and far more predictably on one thread on a busy machine:
    torch's intra-op threads wait on each other at every tiny op when cores are contended."""
    if cfg["run"]["threads"] > 0:
        torch.set_num_threads(cfg["run"]["threads"])


def prepare(cfg: Mapping[str, Any], cache: TaskCache | None = None) -> Setup:
    """Validate and build a run. Raises OsttpError for any bad input; writes nothing."""
    cfg = copy.deepcopy(dict(cfg))
    C.require_run_keys(cfg)
    if cfg["train"]["rule"] not in osttp.available_learners():
        raise OsttpError(f"unknown rule {cfg['train']['rule']!r}; expected one of "
                         f"{', '.join(osttp.available_learners())}")
    if cfg["model"]["cell"] not in osttp.available_cells():
        raise OsttpError(f"unknown cell {cfg['model']['cell']!r}; expected one of {', '.join(osttp.available_cells())}")
    device = select_device(cfg["run"]["device"])
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg["model"]["dtype"]]
    if cfg["train"]["lr"] >= torch.finfo(dtype).max:  # torch refuses such a step size outright
        raise OsttpError(f"learning rate {cfg['train']['lr']:g} does not fit in {cfg['model']['dtype']} "
                         f"(max {torch.finfo(dtype).max:g})")
    tasks = load_tasks(cfg, cache)
    cfg["task"]["params"] = dict(tasks["train"].params)  # resolved: config.toml states every value
    net = make_network(cfg, tasks["train"], device, dtype)
    hw = make_hardware(cfg, net)
    if hw is None:
        optimizer = make_optimizer(cfg, net)
        learner = make_rule(cfg, net, optimizer, tasks["train"])
    else:  # weights: SGD through the devices; biases: digital SGD (HardwareTraining)
        optimizer = hw.optimizer
        learner = hw.wrap(make_rule(cfg, net, optimizer, tasks["train"]))
    return Setup(cfg, device, dtype, tasks, net, optimizer, learner, hw)


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(net: torch.nn.Module, task: Task, *, batch_size: int, max_batches: int | None,
             device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    """The task's metrics of `net` on the first max_batches batches (file order) of a split.

    `net` is any module mapping xs (T, B, n_in) to outputs (T, B, C): a wrapper that simulates
    hardware at a given time can be passed instead of the Network."""
    metric = task.new_metric()
    for i, batch in enumerate(task.batches(batch_size, shuffle=False, dtype=dtype)):
        if max_batches is not None and i >= max_batches:
            break
        outputs = net(batch.xs.to(device))
        metric.update(outputs, batch)
    return metric.compute()


def _eval_model(setup: Setup, t: float = 0.0, drift_compensation: bool = False) -> torch.nn.Module:
    """The network, or with hardware its crossbars read t s after now (noisy reads, own seeded stream:
    evaluating never moves the training's random streams)."""
    if setup.hw is None:
        return setup.net
    from osttp.hardware import HardwareForward

    return HardwareForward(setup.net, setup.hw, t=t, drift_compensation=drift_compensation,
                           seed=derive_seed(setup.cfg["train"]["seed"], "hardware-eval"))


def _eval_split(setup: Setup, split: str, model: torch.nn.Module | None = None) -> dict[str, float]:
    e = setup.cfg["eval"]
    return evaluate(_eval_model(setup) if model is None else model, setup.tasks[split],
                    batch_size=e["batch_size"], max_batches=e[f"max_{split}_batches"], device=setup.device,
                    dtype=setup.dtype)


def drift_rows(setup: Setup, times: Iterable[float] | None = None) -> list[dict[str, Any]]:
    """Test metrics at each time after programming, without and with global drift compensation: the rows
    of osttp.hardware.evaluate_drift, but over eval.max_test_batches and with the run's read-noise seed."""
    from osttp.hardware import DEFAULT_DRIFT_TIMES

    rows = []
    for t in (DEFAULT_DRIFT_TIMES if times is None else times):
        for comp in (False, True):
            m = _eval_split(setup, "test", _eval_model(setup, t, comp))
            rows.append({"t_s": float(t), "compensation": comp, **m})
    return rows


def drift_summary(rows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The metric at the first and last time (1 s and 1 day by default), without/with compensation."""
    ts = sorted({r["t_s"] for r in rows})
    pick = {"first": ts[0], "last": ts[-1]}
    out: dict[str, Any] = {"metric": metric}
    for key, t in pick.items():
        for r in rows:
            if r["t_s"] == t:
                out.setdefault(key, {"t_s": t})["compensation" if r["compensation"] else "no_compensation"] = r[metric]
    return out


# ---------------------------------------------------------------------------------------------
# files


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a reader (or a resume after SIGKILL) sees
    either the old complete file or the new complete file, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """weights_only=True: a checkpoint can hold tensors and plain containers, never code."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt/foreign file: bad input, named
        raise OsttpError(f"cannot load checkpoint {str(path)!r}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise OsttpError(f"{str(path)!r} is not an osttp checkpoint ({CHECKPOINT_FORMAT})")
    return ckpt


def _finite_or_none(x: Any) -> Any:
    """JSON has no NaN/Inf: write null instead (json.dumps would write invalid NaN tokens)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    return x


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(_finite_or_none(obj), indent=indent, allow_nan=False)


def run_config_text(cfg: Mapping[str, Any], header: str) -> str:
    """config.toml of one run: every key resolved; [compare] belongs to compare dirs only."""
    return C.dumps_toml({k: v for k, v in cfg.items() if k != "compare"}, header)


def check_new_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OsttpError(f"output directory {str(out)!r} already exists; use --resume to continue it "
                         "or choose another --out")


def is_empty_dir(p: Path) -> bool:
    return p.is_dir() and not any(p.iterdir())


# ---------------------------------------------------------------------------------------------
# training


@dataclass
class Progress:
    """Where the loop is: saved in every checkpoint (plain values only)."""

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


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _params_finite(net: torch.nn.Module) -> bool:
    flags = [torch.isfinite(p).all() for p in net.parameters()]
    return bool(torch.stack(flags).all())


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _better(value: float, best: float | None, higher: bool) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if higher else value < best)


class _Bar:
    """tqdm progress (live loss, metric, ETA) or nothing under --quiet."""

    def __init__(self, quiet: bool, total: int, initial: int, desc: str) -> None:
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False,
                            file=sys.stderr)

    def update(self, postfix: dict[str, str]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)

    def describe(self, desc: str) -> None:
        if self.bar is not None:
            self.bar.set_description(desc, refresh=False)

    def write(self, line: str, log: Log) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            log(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train_run(setup: Setup, out: Path, *, resume: bool = False, quiet: bool = False, label: str | None = None,
              header: str = "", log: Log = print) -> dict[str, Any]:
    """Train `setup` in run directory `out` and return results.json's content.

    Fresh runs need `out` absent or empty; resume needs out/checkpoints/last.pt. Raises OsttpError
    for bad input (before anything is written, or with the directory it made removed again) and
    Diverged on NaN/Inf (the last checkpoint stays the last good one)."""
    cfg = setup.cfg
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.pt"
    created = False
    progress = Progress()
    session_start = time.perf_counter()
    if resume:
        if not last.is_file():
            raise OsttpError(f"cannot resume: no checkpoint {str(last)!r}; start a new run without --resume")
        ckpt = load_checkpoint(last)
        try:
            setup.net.load_state_dict(ckpt["model"])
            if setup.hw is None:
                setup.optimizer.load_state_dict(ckpt["optimizer"])
            else:  # after the net: it rewrites the hardware weights with what the devices hold
                if ckpt.get("hardware") is None:
                    raise KeyError("the checkpoint holds no hardware state (saved by a float run?)")
                setup.hw.load_state_dict(ckpt["hardware"])
        except (RuntimeError, ValueError, KeyError, OsttpError) as e:
            raise OsttpError(f"checkpoint {str(last)!r} does not match the configured model: "
                             f"{str(e).splitlines()[0]}") from None
        progress = Progress(**ckpt["progress"])
        if progress.epoch > cfg["train"]["epochs"]:
            raise OsttpError(f"train.epochs = {cfg['train']['epochs']} is less than the {progress.epoch} epochs "
                             f"already done in {str(out)!r}")
        _set_rng_state(ckpt["rng"], setup.device)
    else:
        check_new_dir(out)
        created = not out.exists()
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.toml", run_config_text(cfg, header))
        _write_metrics(out, progress.history)
        if not resume:
            _save_checkpoint(setup, progress, last)  # a first good checkpoint before any update
    except OSError as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise OsttpError(f"cannot write run directory {str(out)!r}: {e.strerror or e}") from None

    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    set_threads(cfg)
    name = label or f"{cfg['train']['rule']} s{cfg['train']['seed']}"
    wall_base = progress.wall_seconds
    try:
        _loop(setup, out, progress, session_start, quiet, name, log)
    except Diverged as e:
        results = _results(setup, progress, status="diverged", error=str(e))
        write_text_atomic(out / "results.json", dumps_json(results))
        raise
    return _finish(setup, out, progress, wall_base, session_start, log, name)


def _save_checkpoint(setup: Setup, progress: Progress, path: Path, session_start: float | None = None,
                     wall_base: float | None = None) -> None:
    p = copy.deepcopy(asdict(progress))
    if session_start is not None and wall_base is not None:
        p["wall_seconds"] = wall_base + (time.perf_counter() - session_start)
    hw = setup.hw
    save_atomic({"format": CHECKPOINT_FORMAT, "model": setup.net.state_dict(),
                 "optimizer": setup.optimizer.state_dict() if hw is None else None,
                 "hardware": hw.state_dict() if hw is not None else None,  # holds the digital optimizer too
                 "progress": p, "rng": _rng_state(setup.device),
                 "net_config": setup.net.config, "osttp_version": osttp.__version__}, path)


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    # Rewritten whole from the checkpointed history, so after a resume it never holds an epoch twice.
    write_text_atomic(out / "metrics.jsonl", "".join(dumps_json(h, indent=None) + "\n" for h in history))


def _loop(setup: Setup, out: Path, progress: Progress, session_start: float, quiet: bool, name: str,
          log: Log) -> None:
    cfg, net, learner = setup.cfg, setup.net, setup.learner
    tr, task = cfg["train"], setup.tasks["train"]
    higher = task.higher_is_better
    mname = task.metric_name
    nb = task.num_batches(tr["batch_size"])
    if tr["max_batches"] is not None:
        nb = min(nb, tr["max_batches"])
    every = cfg["run"]["checkpoint_every"]
    wall_base = progress.wall_seconds
    last = out / "checkpoints" / "last.pt"
    bar = _Bar(quiet, tr["epochs"] * nb, progress.epoch * nb + progress.batch, name)
    try:
        while progress.epoch < tr["epochs"]:
            epoch = progress.epoch
            bar.describe(f"{name} epoch {epoch + 1}/{tr['epochs']}")
            metric = task.new_metric()
            if progress.train_metric is not None:
                metric.__dict__.update(copy.deepcopy(progress.train_metric))
            batches = task.batches(tr["batch_size"], shuffle=tr["shuffle"], seed=shuffle_seed(tr["seed"], epoch),
                                   dtype=setup.dtype, start=progress.batch)
            t0 = time.perf_counter()
            for b, batch in zip(range(progress.batch, nb), batches):
                xs, ys, mask = (batch.xs.to(setup.device), batch.ys.to(setup.device), batch.mask.to(setup.device))
                B = xs.shape[1]
                learner.reset(B)
                outs = [learner.step(xs[t], ys[t], mask[t]) for t in range(xs.shape[0])]
                progress.learner_state_bytes = max(progress.learner_state_bytes, learner.state_nbytes())
                overflow = ""
                try:
                    learner.apply()
                except RuntimeError as e:  # e.g. Adam's lr / (1 - beta1) overflowing float32
                    if "overflow" not in str(e):
                        raise
                    overflow = str(e).splitlines()[0]
                loss = float(learner.loss_sum)
                if overflow or not math.isfinite(loss) or not _params_finite(net):
                    what = (f"the update overflowed ({overflow})" if overflow else f"loss {loss}"
                            if not math.isfinite(loss) else "a non-finite parameter after the update")
                    raise Diverged(f"training diverged at epoch {epoch + 1}, batch {b + 1}: {what} "
                                   f"(learning rate {tr['lr']} too large?); last good checkpoint: {last}")
                metric.update(torch.stack(outs), batch)
                progress.batch = b + 1
                progress.global_batches += 1
                now = time.perf_counter()
                progress.epoch_seconds += now - t0
                progress.train_seconds += now - t0
                t0 = now
                running = metric.compute()
                bar.update({"loss": f"{running['loss']:.4f}", mname: f"{running[mname]:.4f}"})
                if every and progress.global_batches % every == 0 and progress.batch < nb:
                    progress.train_metric = dict(metric.__dict__)
                    _save_checkpoint(setup, progress, last, session_start, wall_base)
                    t0 = time.perf_counter()  # checkpoint time is not training time
            # end of epoch: validate, record, checkpoint
            t_eval = time.perf_counter()
            valid = _eval_split(setup, "valid")
            record = {"epoch": epoch + 1, "batches": nb, "train": metric.compute(), "valid": valid,
                      "seconds": progress.epoch_seconds, "eval_seconds": time.perf_counter() - t_eval}
            progress.history.append(record)
            progress.epoch, progress.batch = epoch + 1, 0
            progress.train_metric, progress.epoch_seconds = None, 0.0
            if _better(valid[mname], progress.best_value, higher):
                progress.best_epoch, progress.best_value = epoch + 1, valid[mname]
                save_atomic({"format": CHECKPOINT_FORMAT, "model": net.state_dict(), "epoch": epoch + 1,
                             "net_config": net.config}, out / "checkpoints" / "best.pt")
            _save_checkpoint(setup, progress, last, session_start, wall_base)
            _write_metrics(out, progress.history)
            tm = record["train"]
            bar.write(f"[{name}] epoch {epoch + 1}/{tr['epochs']}  train loss {tm['loss']:.4f} {mname} "
                      f"{tm[mname]:.4f}  valid loss {valid['loss']:.4f} {mname} {valid[mname]:.4f}  "
                      f"{record['seconds']:.1f} s", log)
    finally:
        bar.close()
    progress.wall_seconds = wall_base + (time.perf_counter() - session_start)


def shuffle_seed(seed: int, epoch: int) -> int:
    """The data order of an epoch depends only on (seed, epoch): resumable and reproducible."""
    return derive_seed(seed, epoch, "epoch-order")


def _results(setup: Setup, progress: Progress, status: str, **extra: Any) -> dict[str, Any]:
    cfg, test_task = setup.cfg, setup.tasks["test"]
    last_valid = progress.history[-1]["valid"] if progress.history else {}
    h = cfg.get("hardware") or C.defaults()["hardware"]
    hw_info: dict[str, Any] = {"synapse": h["synapse"]}
    if setup.hw is not None:
        hw_info.update({"update": h["update"], "w_range": h["w_range"],
                        **({"bits": h["bits"]} if h["synapse"] == "quantized" else {}),
                        "pulses": setup.hw.pulse_counts(), "hardware": setup.hw.describe()})
    return {
        "status": status,
        "task": cfg["task"]["name"],
        "rule": cfg["train"]["rule"],
        "seed": cfg["train"]["seed"],
        "epochs": progress.epoch,
        "cell": cfg["model"]["cell"],
        "hidden": list(cfg["model"]["hidden"]),
        "recurrent": cfg["model"]["recurrent"],
        "optimizer": cfg["train"]["optimizer"],
        "lr": cfg["train"]["lr"],
        "batch_size": cfg["train"]["batch_size"],
        "schedule": setup.learner.schedule.name,
        "metric_name": test_task.metric_name,
        "higher_is_better": test_task.higher_is_better,
        "chance": test_task.chance,
        "chance_valid": setup.tasks["valid"].chance,
        "last_valid_metric": last_valid.get(test_task.metric_name),
        "best_valid_metric": progress.best_value,
        "best_epoch": progress.best_epoch,
        "train_batches": progress.global_batches,
        "train_s": progress.train_seconds,
        "wall_s": progress.wall_seconds if status == "completed" else None,
        "peak_mem_mb": _peak_mem_mb(setup.device),
        "learner_state_mb": progress.learner_state_bytes / 2**20,
        "n_params": sum(p.numel() for p in setup.net.parameters()),
        "device": str(setup.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "osttp": osttp.__version__,
        **hw_info,
        **extra,
    }


def _finish(setup: Setup, out: Path, progress: Progress, wall_base: float, session_start: float, log: Log,
            name: str) -> dict[str, Any]:
    cfg = setup.cfg
    mname = setup.tasks["test"].metric_name
    test_params = cfg["eval"]["test_params"]
    if setup.hw is not None:  # model.pt: what the devices hold (noise-free), not the last noisy read
        setup.hw.load_read(read_noise=False)
    final_state = copy.deepcopy(setup.net.state_dict())
    if test_params == "best-valid" and (out / "checkpoints" / "best.pt").is_file():
        setup.net.load_state_dict(load_checkpoint(out / "checkpoints" / "best.pt")["model"])
        valid_metric = progress.best_value
    else:
        valid_metric = progress.history[-1]["valid"][mname] if progress.history else None
    test = _eval_split(setup, "test")
    setup.net.load_state_dict(final_state)
    save_atomic({"format": CHECKPOINT_FORMAT, "model": final_state, "net_config": setup.net.config,
                 **({"hardware": setup.hw.state_dict()} if setup.hw is not None else {})}, out / "model.pt")
    extra: dict[str, Any] = {}
    if setup.hw is not None and cfg["hardware"]["drift_eval"]:
        from osttp.hardware import plot_drift

        rows = drift_rows(setup)
        write_text_atomic(out / "drift.json", dumps_json(rows))
        plot_drift(rows, str(out / "drift.png"), metric=mname,
                   title=f"{name}: {cfg['hardware']['synapse']}, {cfg['hardware']['update']}")
        extra["drift"] = drift_summary(rows, mname)
        d = extra["drift"]
        log(f"[{name}] drift: test {mname} at {d['last']['t_s']:g} s {_fmt(d['last']['no_compensation'])} "
            f"(compensated {_fmt(d['last']['compensation'])}); {out / 'drift.json'}, {out / 'drift.png'}")
    progress.wall_seconds = wall_base + (time.perf_counter() - session_start)  # test evaluation included
    results = _results(setup, progress, status="completed", test_params=test_params,
                       valid_metric=valid_metric, test_metric=test[mname], test_loss=test["loss"], test=test,
                       **extra)
    write_text_atomic(out / "results.json", dumps_json(results))
    log(f"[{name}] test {mname} {_fmt(test[mname])} ({test_params} parameters), valid {mname} "
        f"{_fmt(valid_metric)}; results in {out / 'results.json'}")
    return results


# ---------------------------------------------------------------------------------------------
# resuming and starting from the command line


def saved_config(out: Path) -> dict[str, Any]:
    path = out / "config.toml"
    if not path.is_file():
        raise OsttpError(f"cannot resume: {str(path)!r} not found (is {str(out)!r} a run directory?)")
    return C.read_toml(path)


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
                         f"{C._show(new[sec][key])} here but {C._show(saved_full[sec][key])} in {source} "
                         f"({len(diffs)} key(s) differ: {', '.join(diffs)})")


# ---------------------------------------------------------------------------------------------
# compare, summaries


def run_dir_name(rule: str, seed: int) -> str:
    return f"{rule}-s{seed}"


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
        check_resume_config(C.read_toml(out / "compare.toml"), base_cfg, str(out / "compare.toml"))
    else:
        if replace_marker and (out / replace_marker).is_file():
            shutil.rmtree(out)
        check_new_dir(out)
    header = f"written by: {command}" if command else ""
    created = not out.exists()
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
        if replace_marker:
            (out / replace_marker).write_text("made by osttp; the next run of the same command replaces it\n")
        comp = {k: v for k, v in base_cfg.items()}
        comp["train"] = {k: v for k, v in base_cfg["train"].items() if k not in ("rule", "seed")}
        write_text_atomic(out / "compare.toml", C.dumps_toml(comp, header))
        write_text_atomic(out / "command.txt", command + "\n")
    except OSError as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise OsttpError(f"cannot write {str(out)!r}: {e.strerror or e}") from None

    diverged = []
    for setup in setups:
        rule, seed = setup.cfg["train"]["rule"], setup.cfg["train"]["seed"]
        rdir = out / "runs" / run_dir_name(rule, seed)
        res_path = rdir / "results.json"
        if resume and res_path.is_file() and _read_json(res_path).get("status") == "completed":
            log(f"[{rule} s{seed}] already completed; kept")
            continue
        again = resume and (rdir / "checkpoints" / "last.pt").is_file()
        if resume and not again and rdir.exists():
            shutil.rmtree(rdir)  # a run killed before its first checkpoint: start it over
        if again:
            check_resume_config(saved_config(rdir), setup.cfg, str(rdir / "config.toml"))
        try:
            train_run(setup, rdir, resume=again, quiet=quiet, label=f"{rule} s{seed}", header=header, log=log)
        except Diverged as e:
            log(f"[{rule} s{seed}] {e}")
            diverged.append(f"{rule} s{seed}")
    summary = write_summary([out], out, command=command, title=f"osttp {kind}: {base['task']['name']}",
                            png_name="compare.png", md_name="summary.md", json_name="summary.json")
    summary["diverged"] = diverged
    return summary


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OsttpError(f"cannot read {str(path)!r}: {e}") from None


@dataclass
class RunRecord:
    path: Path
    cfg: dict[str, Any]
    history: list[dict[str, Any]]
    results: dict[str, Any] | None

    @property
    def status(self) -> str:
        return self.results.get("status", "?") if self.results else "incomplete"

    @property
    def group(self) -> tuple[str, str]:
        return self.cfg["task"]["name"], self.cfg["train"]["rule"]


def load_run(path: Path) -> RunRecord:
    cfg = C.resolve((C.read_toml(path / "config.toml"), str(path / "config.toml")))
    history = []
    mpath = path / "metrics.jsonl"
    if mpath.is_file():
        for i, line in enumerate(mpath.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                try:
                    history.append(json.loads(line))
                except ValueError:
                    raise OsttpError(f"{str(mpath)!r} line {i + 1} is not JSON") from None
    rpath = path / "results.json"
    return RunRecord(path, cfg, history, _read_json(rpath) if rpath.is_file() else None)


def find_runs(dirs: Iterable[Path]) -> list[RunRecord]:
    """Run directories among dirs: a train dir (config.toml) or a compare dir (runs/*/config.toml).

    A compare dir's runs come in its [compare] order (rules, then seeds)."""
    runs: list[RunRecord] = []
    for d in dirs:
        if (d / "runs").is_dir():
            subs = sorted(p for p in (d / "runs").iterdir() if (p / "config.toml").is_file())
            if (d / "compare.toml").is_file():
                comp = C.resolve((C.read_toml(d / "compare.toml"), str(d / "compare.toml")))["compare"]
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


def _experiment_key(cfg: Mapping[str, Any]) -> str:
    """What makes runs the same experiment up to the seed: the config without seed and run/compare keys."""
    c = {k: v for k, v in cfg.items() if k not in ("run", "compare")}
    c["train"] = {k: v for k, v in cfg["train"].items() if k != "seed"}
    return json.dumps(c, sort_keys=True, default=str)


def group_labels(runs: list[RunRecord]) -> list[str]:
    """A label per run: its rule (task/rule when tasks differ); runs of the same rule with different
    configurations get the name of their (compare) directory appended, so they are not averaged."""
    tasks = {r.cfg["task"]["name"] for r in runs}
    base = [r.cfg["train"]["rule"] if len(tasks) == 1 else f"{r.cfg['task']['name']}/{r.cfg['train']['rule']}"
            for r in runs]
    keys = [_experiment_key(r.cfg) for r in runs]
    labels = []
    for b, k, r in zip(base, keys, runs):
        if len({kk for bb, kk in zip(base, keys) if bb == b}) > 1:
            where = r.path.parent.parent.name if r.path.parent.name == "runs" else r.path.name
            b = f"{b} ({where})"
        labels.append(b)
    return labels


def _stats(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (n-1); std is None for a single value."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return {"n": 0, "mean": None, "std": None}
    return {"n": len(vals), "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None}


def summarize(runs: list[RunRecord]) -> dict[str, Any]:
    tasks = sorted({r.cfg["task"]["name"] for r in runs})
    groups: dict[str, list[RunRecord]] = {}
    for label, r in zip(group_labels(runs), runs):
        groups.setdefault(label, []).append(r)
    rows = {}
    for label, rs in groups.items():
        done = [r.results for r in rs if r.results and r.results.get("status") == "completed"]
        rows[label] = {
            "runs": len(rs),
            "completed": len(done),
            "seeds": [r.cfg["train"]["seed"] for r in rs],
            "valid_metric": _stats([d["valid_metric"] for d in done]),
            "test_metric": _stats([d["test_metric"] for d in done]),
            "wall_s": _stats([d["wall_s"] for d in done]),
            "train_s": _stats([d["train_s"] for d in done]),
            "peak_mem_mb": _stats([d["peak_mem_mb"] for d in done]),
            "learner_state_mb": _stats([d["learner_state_mb"] for d in done]),
        }
    first = next((r.results for r in runs if r.results), {}) or {}
    return {
        "tasks": tasks,
        "metric_name": first.get("metric_name"),
        "higher_is_better": first.get("higher_is_better"),
        "chance": first.get("chance"),
        "test_params": first.get("test_params", runs[0].cfg["eval"]["test_params"]),
        "rules": rows,
        "runs": [{"dir": str(r.path), "task": r.cfg["task"]["name"], "rule": r.cfg["train"]["rule"],
                  "seed": r.cfg["train"]["seed"], "status": r.status, "epochs": len(r.history),
                  **({k: r.results.get(k) for k in ("valid_metric", "test_metric", "wall_s", "peak_mem_mb")}
                     if r.results else {})} for r in runs],
    }


def _pm(s: Mapping[str, Any], digits: int = 4) -> str:
    if s["mean"] is None:
        return "n/a"
    if s["std"] is None:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def summary_table(summary: Mapping[str, Any]) -> str:
    m = summary["metric_name"] or "metric"
    lines = [f"| rule | runs | valid {m} | test {m} | wall s | train s | peak MB | learner state MB |",
             "|---|---|---|---|---|---|---|---|"]
    for label, row in summary["rules"].items():
        runs = f"{row['completed']}/{row['runs']}"
        lines.append(f"| {label} | {runs} | {_pm(row['valid_metric'])} | {_pm(row['test_metric'])} | "
                     f"{_pm(row['wall_s'], 1)} | {_pm(row['train_s'], 1)} | {_pm(row['peak_mem_mb'], 0)} | "
                     f"{_pm(row['learner_state_mb'], 3)} |")
    return "\n".join(lines)


def summary_markdown(summary: Mapping[str, Any], title: str, command: str, png_name: str) -> str:
    chance = summary["chance"]
    parts = [f"# {title}", ""]
    if command:
        parts += ["```", command, "```", ""]
    parts += [summary_table(summary), ""]
    notes = [f"runs: completed/started; values are mean ± sample standard deviation over seeds "
             f"(one value when a single seed completed)",
             f"test {summary['metric_name']} measured with the {summary['test_params']} parameters",
             "peak MB: the process's peak resident memory (CPU; a compare shares one process) or "
             "torch.cuda.max_memory_allocated (GPU); learner state MB: the largest learner.state_nbytes() "
             "at a sequence end (traces, states, BPTT's stored graph)"]
    if chance is not None:
        notes.insert(1, f"chance level (best constant guess on test): {chance:.4f}")
    parts += [f"- {n}" for n in notes]
    bad = [r for r in summary["runs"] if r["status"] != "completed"]
    if bad:
        parts += ["", "Runs not completed: " + ", ".join(f"{Path(r['dir']).name} ({r['status']})" for r in bad)]
    parts += ["", f"![learning curves]({png_name})", ""]
    drift = summary.get("drift") or []
    if drift:
        m = summary["metric_name"] or "metric"
        parts += ["## Drift (simulated synapses)", "",
                  f"Test {m} against time after programming (read noise and drift on), without and with global "
                  "drift compensation (one factor per array); from each run's drift.json.", "",
                  f"| run | synapse | update | {m} at first t, no comp. / comp. | {m} at last t, no comp. / comp. |",
                  "|---|---|---|---|---|"]
        for d in drift:
            f, la = d["summary"]["first"], d["summary"]["last"]
            parts.append(f"| {d['run']} | {d['synapse']} | {d['update']} | "
                         f"{_num(f['no_compensation'])} / {_num(f['compensation'])} (t = {f['t_s']:g} s) | "
                         f"{_num(la['no_compensation'])} / {_num(la['compensation'])} (t = {la['t_s']:g} s) |")
        parts.append("")
        parts += [f"![drift {d['run']}]({d['png']})" for d in drift]
        parts.append("")
    return "\n".join(parts)


def _num(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "n/a"


def _drift_plots(runs: list[RunRecord], out: Path, png_name: str) -> list[dict[str, Any]]:
    """One drift PNG per run that has drift.json, named after the run (drift-<run>.png in `out`)."""
    from osttp.hardware import plot_drift

    made: list[dict[str, Any]] = []
    used: set[str] = set()
    for r in runs:
        path = r.path / "drift.json"
        if not path.is_file():
            continue
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise OsttpError(f"cannot read {str(path)!r}: {e}") from None
        if not isinstance(rows, list) or not rows:
            continue
        name = r.path.name if r.path.name not in used else f"{r.path.parent.parent.name}-{r.path.name}"
        while name in used:
            name += "_"
        used.add(name)
        metric = (r.results or {}).get("metric_name")
        metric = metric if metric in rows[0] else None
        png = f"{Path(png_name).stem}-drift-{name}.png"
        h = r.cfg["hardware"]
        plot_drift(rows, str(out / png), metric=metric, title=f"{name}: {h['synapse']}, {h['update']}")
        metric = metric or next(k for k, v in rows[0].items() if k not in ("t_s", "compensation")
                                and isinstance(v, float))
        made.append({"run": name, "dir": str(r.path), "png": png, "synapse": h["synapse"], "update": h["update"],
                     "summary": drift_summary(rows, metric)})
    return made


def write_summary(dirs: list[Path], out: Path, *, command: str, title: str, png_name: str, md_name: str,
                  json_name: str | None) -> dict[str, Any]:
    from osttp import plots

    runs = find_runs(dirs)
    summary = summarize(runs)
    summary["command"] = command
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[list[dict[str, Any]]]] = {}
    for label, r in zip(group_labels(runs), runs):
        curves.setdefault(label, []).append(r.history)
    plots.learning_curves(curves, summary["metric_name"] or "metric", out / png_name, title=title,
                          chance=summary["chance"])
    summary["drift"] = _drift_plots(runs, out, png_name)
    if json_name:
        write_text_atomic(out / json_name, dumps_json(summary))
    write_text_atomic(out / md_name, summary_markdown(summary, title, command, png_name))
    return summary
