"""results.json of a run: what was trained, how it scored, what it cost."""
from __future__ import annotations

import resource
import sys
from typing import Any

import torch

import osttp

from osttp.experiment.build import Setup
from osttp.experiment.resume import Position


def fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def results_record(setup: "Setup", position: "Position", status: str, **extra: Any) -> dict[str, Any]:
    """results.json's content; `extra` adds the test metrics (completed) or the error (diverged)."""
    cfg, test_task = setup.cfg, setup.tasks["test"]
    last_valid = position.history[-1]["valid"] if position.history else {}
    return {
        "status": status,
        "task": cfg["task"]["name"],
        "rule": cfg["train"]["rule"],
        "seed": cfg["train"]["seed"],
        "epochs": position.epoch,
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
        "best_valid_metric": position.best_value,
        "best_epoch": position.best_epoch,
        "train_batches": position.global_batches,
        "train_s": position.train_seconds,
        "wall_s": position.wall_seconds if status == "completed" else None,
        "peak_mem_mb": peak_mem_mb(setup.device),
        "learner_state_mb": position.learner_state_bytes / 2**20,
        "n_params": sum(p.numel() for p in setup.net.parameters()),
        "device": str(setup.device),
        "processes": 1 if setup.parallel is None else setup.parallel.world_size,  # data-parallel group size
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "osttp": osttp.__version__,
        **setup.backend.result_fields(),
        **extra,
    }
