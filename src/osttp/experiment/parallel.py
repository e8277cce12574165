"""`osttp train` over several processes (docs/distributed.md).

    torchrun --nproc-per-node N -m osttp train ...     # or on several machines, with rendezvous args
    osttp train --nproc N ...                          # the same, launched here by torch's elastic agent

Every process runs the same command. torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) makes `join` open the process group: gloo on the CPU, NCCL on CUDA with one
GPU per process (cuda:LOCAL_RANK). Rank 0 alone touches the run directory; the others read it only
to resume, after rank 0 has cleaned it up.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from datetime import timedelta
from typing import Any, Mapping, Sequence

import torch

from osttp import checks
from osttp.distributed import DataParallel
from osttp.errors import OsttpError
from osttp.experiment.backend import on_devices
from osttp.tasks import Task

EXIT_RANK_FAILED = 1
EXIT_INTERRUPTED = 130
TIMEOUT = timedelta(minutes=10)  # a collective that waits longer than this means a rank is gone


def world_size_from_environment() -> int:
    """WORLD_SIZE as torchrun sets it; 1 outside torchrun."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return checks.integer("WORLD_SIZE (environment)", int(raw), ge=1)
    except ValueError:
        raise checks.fail("WORLD_SIZE (environment)", raw, "a positive integer (as torchrun sets it)") from None


def join(device: torch.device) -> tuple[DataParallel | None, torch.device]:
    """Open the process group when started by torchrun with more than one process; the device this
    process computes on (its own GPU under CUDA)."""
    world = world_size_from_environment()
    if world == 1:
        return None, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    return DataParallel.from_process_group(device), device


def leave(parallel: DataParallel | None) -> None:
    """Close the process group (gloo's threads abort the interpreter's exit otherwise)."""
    if parallel is not None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def check_supported(cfg: Mapping[str, Any], task: Task, world: int) -> None:
    """What data parallelism cannot run exactly is refused before anything is written."""
    t = cfg["train"]
    if on_devices(cfg["hardware"]["synapse"]):
        raise OsttpError(f"hardware.synapse = {cfg['hardware']['synapse']}: simulated synapses are not data-parallel "
                         "(each process would program its own devices); expected synapse float with more than "
                         "one process")
    if t["rate_reg"] > 0:
        raise OsttpError(f"train.rate_reg = {t['rate_reg']}: the firing-rate regulariser couples the samples of a "
                         "batch through its batch mean, which the shards do not see; expected rate_reg 0 with more "
                         "than one process")
    sizes = {t["batch_size"]}
    if len(task) % t["batch_size"] and (t["max_batches"] is None or t["max_batches"] >= task.num_batches(t["batch_size"])):
        sizes.add(len(task) % t["batch_size"])  # the epoch's last, smaller batch
    if min(sizes) < world:
        raise OsttpError(f"train.batch_size = {t['batch_size']}: a training batch of {min(sizes)} sequences leaves a "
                         f"process without samples; expected at least {world} (one per process) in every batch")


LAUNCHED = "OSTTP_LAUNCHED"  # set by `launch`: rank 0 alone reports errors every process meets alike


def silent_rank() -> bool:
    """A rank > 0 started by `launch`: rank 0 reports what every process meets alike."""
    return os.environ.get(LAUNCHED) == "1" and os.environ.get("RANK", "0") != "0"


def rank_error(line: str) -> str:
    """An error line as this process reports it: as is outside a group; prefixed by its rank under
    torchrun; empty from ranks > 0 started by `launch` (rank 0 prints the same line)."""
    if world_size_from_environment() == 1:
        return line
    if silent_rank():
        return ""
    return f"[rank {os.environ.get('RANK', '0')}] {line}"


def _raised_in_collective(e: BaseException) -> bool:
    """Whether the error came out of torch.distributed (gloo raises a plain RuntimeError when a peer's
    connection drops; NCCL a DistError)."""
    import torch.distributed as dist

    if isinstance(e, dist.DistError):
        return True
    tb = e.__traceback__
    while tb is not None:
        if f"torch{os.sep}distributed{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def lost_contact_line(e: BaseException) -> str | None:
    """A collective that failed because another process is gone, as one line ("" under `launch`,
    which names the process that ended); None for any other error."""
    if world_size_from_environment() == 1 or not _raised_in_collective(e):
        return None
    if os.environ.get(LAUNCHED) == "1":
        return ""
    first = " ".join(str(e).split())[:160]
    return (f"[rank {os.environ.get('RANK', '0')}] lost contact with the other processes ({first}); continue the run "
            "with --resume")


def _quiet_agent() -> None:
    """The elastic agent logs every start and stop; osttp prints its own one-line outcome. Its
    loggers set their own levels, so each is silenced by name."""
    for name in ["torch.distributed.elastic", *logging.root.manager.loggerDict]:
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run `python -m osttp <argv>` in nproc local processes through torch's elastic agent (what
    torchrun --standalone does); one line and a non-zero exit when a process fails."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    _quiet_agent()
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=0.1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default: N processes share the cores
    os.environ[LAUNCHED] = "1"
    try:
        elastic_launch(config, sys.executable)("-m", "osttp", *argv)
    except SignalException as e:  # Ctrl-C or a kill of this launcher: the agent has stopped the processes
        if e.sigval == signal.SIGINT:
            return EXIT_INTERRUPTED  # rank 0 has printed its one line
        print(f"osttp: error: stopped by signal {signal.Signals(e.sigval).name}; the processes were stopped "
              "(continue the run with --resume)", file=sys.stderr)
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        # The cause, not a consequence: a process that lost its peer exits EXIT_RANK_FAILED, maybe
        # before the agent has noticed the peer's own end, so those come last whatever their time.
        rank, failure = min(e.failures.items(),
                            key=lambda kv: (kv[1].exitcode == EXIT_RANK_FAILED, kv[1].timestamp))
        if failure.exitcode in (2, 3):
            return failure.exitcode  # bad input (2) or divergence (3): rank 0 has printed its line
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        print(f"osttp: error: process {rank} of {nproc} ended with {how}; the others were stopped "
              "(continue the run with --resume)", file=sys.stderr)
        return failure.exitcode if failure.exitcode > 0 else EXIT_RANK_FAILED
    return 0
