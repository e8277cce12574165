"""Building a run from a resolved config: validate everything, load the data, make the network, its
backend (float or simulated synapses) and its learner. Touches no file.

    setup = prepare(cfg)          # OsttpError for any bad input

Reproducibility: weights come from a generator seeded with train.seed and the tasks draw their own
randomness from their own seeds; nothing here reads the global RNG.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

import osttp
import osttp.tasks
from osttp.errors import OsttpError
from osttp.experiment import config as C
from osttp import checks
from osttp.experiment.backend import Backend, Stepper, make_backend
from osttp.experiment.lr_schedule import base_lrs
from osttp.experiment.parallel import check_supported
from osttp.experiment.resources import check_memory, check_threads
from osttp.distributed import DataParallel
from osttp.calibration import calibrate_firing
from osttp.rules.regularisers import RateRegulariser
from osttp.network import Network
from osttp.tasks import Task

TaskCache = dict[str, Task]
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Setup:
    """A validated, built run: everything but the files."""

    cfg: dict[str, Any]
    device: torch.device
    dtype: torch.dtype
    tasks: dict[str, Task]
    net: Network
    backend: Backend
    learner: osttp.Learner  # the rule itself (its schedule, its state size)
    stepper: Stepper  # what the loop drives: the learner, or the backend's wrapper around it
    parallel: DataParallel | None = None  # this process's place in a data-parallel group, if any
    base_lrs: list[float] = field(default_factory=list)  # per parameter group, what train.lr_schedule scales

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files (rank 0 of a group, or the only process)."""
        return self.parallel is None or self.parallel.leader

    def named_state(self) -> list[tuple[str, torch.Tensor]]:
        """What must be identical on every process: parameters, feedback matrices, optimizer slots."""
        out = list(self.net.state_dict().items())
        for i, opt in enumerate(self.backend.torch_optimizers()):
            for pid, slots in sorted(opt.state_dict()["state"].items()):
                out += [(f"optimizer{'.' + str(i) if i else ''}.{pid}.{k}",
                         v if isinstance(v, torch.Tensor) else torch.tensor(float(v))) for k, v in sorted(slots.items())]
        return out


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


CALIBRATION_BATCH = 256  # training sequences (file order) the firing calibration looks at


def make_network(cfg: Mapping[str, Any], task: Task, device: torch.device, dtype: torch.dtype) -> Network:
    """Built (and calibrated) on the CPU and then moved, so the initial weights are the same on every device."""
    m = cfg["model"]
    net = Network.from_sizes([task.n_in, *m["hidden"], task.n_out], cell=m["cell"], recurrent=m["recurrent"],
                             seed=cfg["train"]["seed"], dtype=dtype, cell_options=m["cell_options"],
                             feedback_scale=m["feedback_scale"], readout=m["readout"], kappa=m["kappa"])
    if m["init_rate"] is not None:
        batch = next(iter(task.batches(CALIBRATION_BATCH, shuffle=False, dtype=dtype)))
        calibrate_firing(net, batch.xs, rate=m["init_rate"])
    return net.to(device)


def make_rule(cfg: Mapping[str, Any], net: Network, backend: Backend, task: Task) -> osttp.Learner:
    t = cfg["train"]
    learner = osttp.make_learner(t["rule"], net, optimizer=backend.optimizer, schedule=t["schedule"],
                                 loss=task.loss, window=t["window"], signal_options=t["signal_options"] or None)
    learner.fit(task)
    if t["rate_reg"] > 0:
        learner.rate_regulariser = RateRegulariser(t["rate_reg"], t["rate_target"])
    return learner


def set_threads(cfg: Mapping[str, Any]) -> None:
    """Small networks run faster and far more predictably on one thread on a busy machine:
    torch's intra-op threads wait on each other at every tiny op when cores are contended."""
    if cfg["run"]["threads"] > 0:
        torch.set_num_threads(cfg["run"]["threads"])


def check_lr(lr: float, name: str, dtype: torch.dtype) -> None:
    """The learning rate must be a normal number of the run's dtype: above its max torch refuses the
    step size; below its smallest normal number lr * gradient underflows to zero or to denormals, and
    the run would report "completed" with parameters that never moved (float32: lr >= 1.2e-38).
    Learning rates that are representable but below the weights' resolution are allowed: whether an
    update survives rounding depends on the gradient (SGD) and on each weight's magnitude."""
    fi = torch.finfo(dtype)
    if not fi.tiny <= lr < fi.max:
        raise checks.fail("train.lr", lr, f"a learning rate between {fi.tiny:.3g} and {fi.max:.3g}, the normal "
                                          f"numbers of {name} (model.dtype)")


def check_run(cfg: Mapping[str, Any], dtype: torch.dtype) -> None:
    """What can be checked before any data is loaded (names were checked when the config was read)."""
    check_lr(cfg["train"]["lr"], cfg["model"]["dtype"], dtype)
    check_threads(cfg)


def build_model(cfg: Mapping[str, Any], task: Task, device: torch.device, dtype: torch.dtype,
                batch_size: int) -> tuple[Network, Backend, osttp.Learner]:
    """Network, backend and learner on the training split `task`, after the memory check for
    `batch_size` parallel sequences: the one build path of train, compare, sweep trials and stream."""
    check_memory(cfg, task, dtype, device, batch_size)  # before any weight is allocated
    net = make_network(cfg, task, device, dtype)
    backend = make_backend(cfg, net)
    return net, backend, make_rule(cfg, net, backend, task)


def prepare(cfg: Mapping[str, Any], cache: TaskCache | None = None, parallel: DataParallel | None = None,
            device: torch.device | None = None) -> Setup:
    """Validate and build a run. Raises OsttpError for any bad input; writes nothing. With `parallel`
    (experiment.parallel.join) the learner sums its gradients over the group's processes."""
    cfg = copy.deepcopy(dict(cfg))
    C.require_run_keys(cfg)
    device = device or select_device(cfg["run"]["device"])
    dtype = DTYPES[cfg["model"]["dtype"]]
    check_run(cfg, dtype)
    tasks = load_tasks(cfg, cache)
    cfg["task"]["params"] = dict(tasks["train"].params)  # resolved: config.toml states every value
    if parallel is not None:
        check_supported(cfg, tasks["train"], parallel.world_size)
    net, backend, learner = build_model(cfg, tasks["train"], device, dtype, cfg["train"]["batch_size"])
    setup = Setup(cfg, device, dtype, tasks, net, backend, learner, backend.stepper(learner), parallel,
                  base_lrs(backend.optimizer.param_groups))  # before a checkpoint sets the scheduled rates
    if parallel is not None:
        learner.gradient_reducer = parallel.reduce_gradients
        parallel.check_identical(setup.named_state(), "the initial weights and feedback matrices")
    return setup
