"""Will this run fit the machine? Checked before any file is written or any weight allocated.

    check_threads(cfg)                        # OsttpError: more threads than the machine can sensibly run
    check_memory(cfg, task, dtype, device)    # OsttpError: memory estimate above what is available

The memory estimate is an upper-bound-minded count of what the run keeps alive at once (the learner
allocates nothing else of this size):

- network: every parameter with its gradient (.grad), its accumulator and the optimizer's slots
  (the `slots` of its OPTIMIZERS entry: Adam 2, SGD with momentum 1), plus the fixed feedback matrices;
- traces (online rules): per hidden layer, what the rule's trace kind says it allocates
  (`TraceKind.nbytes`: diagonal batch x n x k x (fan-in + n if recurrent + 1), exact n times that;
  k = the cell's state size);
- BPTT graph: per stored time step, about (3 k + 6) tensors of batch x n per hidden layer, plus
  autograd's bookkeeping of ~2 kB per saved tensor (6 per layer and 6 for the readout and loss).

It is compared with MemAvailable of /proc/meminfo (GPU: the free device memory), with a margin for
the data and the interpreter. A machine that does not report its memory is not checked.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from osttp import checks
from osttp.cells import make_cell
from osttp.errors import OsttpError
from osttp.experiment.optimizers import optimizer_slots
from osttp.rules import PRESETS, TRACE_KINDS
from osttp.rules.bptt import AUTOGRAD_BYTES_PER_SAVED
from osttp.rules.presets import TBPTT_DEFAULT_WINDOW
from osttp.tasks import Task

THREADS_PER_CORE = 4  # more threads than this per core only adds contention (and libgomp fails at ~20000)
HEADROOM = 0.9  # leave a tenth of the available memory to the data, the interpreter and the allocator


def available_memory(device: torch.device) -> int | None:
    """Bytes the run may use: MemAvailable (CPU) or free device memory (CUDA); None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _seq_len(task: Task) -> int:
    """The longest training sequence (the BPTT graph holds one)."""
    if isinstance(getattr(task, "T", None), int):
        return int(task.T)  # type: ignore[attr-defined]
    lengths = getattr(task, "lengths", None)
    if lengths:
        return int(max(lengths))
    return int(next(iter(task.batches(1, shuffle=False))).xs.shape[0])


def memory_estimate(cfg: Mapping[str, Any], task: Task, dtype: torch.dtype,
                    batch_size: int | None = None) -> dict[str, int]:
    """Bytes of network, traces and BPTT graph of the run `cfg` with `batch_size` parallel sequences
    (default train.batch_size; see the module docstring)."""
    m, t = cfg["model"], cfg["train"]
    k = int(make_cell(m["cell"], **dict(m["cell_options"])).n_states)
    sizes = [task.n_in, *m["hidden"], task.n_out]
    hidden = sizes[1:-1]
    B, rec = int(t["batch_size"] if batch_size is None else batch_size), bool(m["recurrent"])
    params = sum(n * (n_in + (n if rec else 0) + 1) for n_in, n in zip(sizes[:-2], hidden))
    params += sizes[-1] * (sizes[-2] + 1)
    slots = optimizer_slots(t)
    elem = torch.empty((), dtype=dtype).element_size()
    acc_elem = max(elem, 4)  # accumulators are at least float32
    network = params * ((2 + slots) * elem + acc_elem) + sum(hidden) * sizes[-1] * elem
    entry = PRESETS.get(t["rule"])
    traces = graph = 0
    if entry.meta.get("online"):
        kind = TRACE_KINDS.build(entry.meta["trace"])
        traces = sum(kind.nbytes(B, n_in, n, k, rec, elem) for n_in, n in zip(sizes[:-2], hidden))
    else:
        steps = _seq_len(task)
        if entry.meta.get("windowed"):
            steps = min(steps, int(t["window"] or TBPTT_DEFAULT_WINDOW))
        graph = steps * (B * (sum(hidden) * (3 * k + 6) + 4 * sizes[-1]) * elem
                         + 6 * (len(hidden) + 1) * AUTOGRAD_BYTES_PER_SAVED)
    return {"network": network, "traces": traces, "bptt graph": graph}


def _gb(n: float) -> str:
    return f"{n / 2**30:.3g} GB"


def check_memory(cfg: Mapping[str, Any], task: Task, dtype: torch.dtype, device: torch.device,
                 batch_size: int | None = None) -> None:
    est = memory_estimate(cfg, task, dtype, batch_size)
    need = sum(est.values())
    avail = available_memory(device)
    if avail is None or need <= HEADROOM * avail:
        return
    parts = ", ".join(f"{k} {_gb(v)}" for k, v in est.items() if v)
    raise OsttpError(f"this run needs about {_gb(need)} of memory ({parts}) but {_gb(avail)} is available on "
                     f"{device.type}; use smaller or fewer hidden layers (model.hidden = {m_hidden(cfg)}), a "
                     "smaller batch size or another rule")


def m_hidden(cfg: Mapping[str, Any]) -> str:
    return checks.show(list(cfg["model"]["hidden"]))


def check_threads(cfg: Mapping[str, Any]) -> None:
    cores = os.cpu_count() or 1
    limit = THREADS_PER_CORE * cores
    checks.integer("run.threads", cfg["run"]["threads"], ge=0, le=limit)
