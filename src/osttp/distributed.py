"""Data parallelism over processes (torch.distributed): every process holds the same network and
takes a disjoint shard of each batch; only sums are exchanged (docs/distributed.md).

    dp = DataParallel.from_process_group()         # after torch.distributed.init_process_group
    learner.gradient_reducer = dp.reduce_gradients  # sum the accumulated gradients before each step
    shard = dp.shard(batch)                         # this process's samples of a (T, B, ...) batch

Why this is exact: every rule's gradient is a sum over the samples of a batch (the loss is summed
over B, and states, traces and learning signals are per sample), so summing the shards' accumulated
gradients gives the single-process gradient of the whole batch, up to the order of the additions.
The same holds for the metrics, which are sums (counts, loss sums) until `compute()`. What couples
samples (the firing-rate regulariser's batch mean) is refused by the application.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor

from osttp.errors import OsttpError
from osttp.tasks.base import Batch
from osttp.tasks.metrics import Metric


def shard_bounds(batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Samples [lo, hi) of a batch for `rank`: contiguous, in order, sizes differing by at most one,
    so the shards of ranks 0..world_size-1 put side by side are the batch itself."""
    return rank * batch_size // world_size, (rank + 1) * batch_size // world_size


def tensor_digest(tensors: Iterable[tuple[str, Tensor]]) -> int:
    """A 63-bit digest of names, dtypes, shapes and exact bytes (equal digests: identical tensors)."""
    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel group. `device` is where collectives run (the CPU for
    gloo, the process's GPU for NCCL)."""

    rank: int
    world_size: int
    device: torch.device

    @classmethod
    def from_process_group(cls, device: torch.device | str = "cpu") -> "DataParallel":
        if not dist.is_available() or not dist.is_initialized():
            raise OsttpError("no torch.distributed process group; expected init_process_group() first")
        return cls(dist.get_rank(), dist.get_world_size(), torch.device(device))

    @property
    def leader(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    def shard(self, batch: Batch) -> Batch:
        """This rank's samples of a time-major batch (T, B, ...)."""
        lo, hi = shard_bounds(batch.xs.shape[1], self.rank, self.world_size)
        return Batch(batch.xs[:, lo:hi], batch.ys[:, lo:hi], batch.mask[:, lo:hi])

    def all_reduce_(self, tensors: list[Tensor]) -> None:
        """Sum each tensor over the ranks, in place, with one collective (one flat buffer)."""
        if not tensors:
            return
        flat = torch.cat([t.reshape(-1).to(self.device, tensors[0].dtype) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def reduce_gradients(self, acc: dict[str, Tensor]) -> None:
        """The learner's accumulated gradients, summed over the ranks (Learner.gradient_reducer)."""
        self.all_reduce_(list(acc.values()))

    def sum(self, value: Tensor | float) -> float:
        """A scalar summed over the ranks (a loss sum, a flag), in float64."""
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    def reduce_metric(self, metric: Metric) -> None:
        """Replace the metric's sums by their totals over the ranks."""
        sums = metric.sums()
        t = torch.tensor([float(v) for v in sums.values()], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        metric.set_sums(dict(zip(sums, t.tolist())))

    def check_identical(self, tensors: Iterable[tuple[str, Tensor]], what: str) -> None:
        """Refuse to go on when the ranks hold different tensors (seeds, files or code that differ):
        a silent divergence would train W models that all believe they are the same."""
        mine = torch.tensor([tensor_digest(tensors)], dtype=torch.int64, device=self.device)
        every = [torch.zeros_like(mine) for _ in range(self.world_size)]
        dist.all_gather(every, mine)
        differ = [r for r, d in enumerate(every) if int(d.item()) != int(every[0].item())]
        if differ:
            raise OsttpError(f"{what} differ between rank 0 and rank(s) {', '.join(map(str, differ))}; expected "
                             "the same seed, config, data and osttp version on every process")

    def barrier(self) -> None:
        dist.barrier()
