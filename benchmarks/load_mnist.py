"""Time a cold (first in this process) load of MNIST: gunzip, IDX parse, SHA-256 check, split.

    OSTTP_DATA=/path/to/data python benchmarks/load_mnist.py
"""
from __future__ import annotations

import time

import osttp.tasks as tasks
from osttp.tasks import data


def main() -> None:
    t0 = time.perf_counter()
    data.load_mnist("train")
    data.load_mnist("test")
    t1 = time.perf_counter()
    for split in ("train", "valid", "test"):
        tasks.load("smnist-rows", split)
    t2 = time.perf_counter()
    tasks.load("smnist-rows", "train")  # served from the in-process cache
    t3 = time.perf_counter()
    print(f"MNIST files (train + test), cold, verified: {t1 - t0:.3f} s")
    print(f"smnist-rows train/valid/test tasks from them: {t2 - t1:.3f} s")
    print(f"total cold load: {t2 - t0:.3f} s (target <= 2 s)")
    print(f"smnist-rows train again (cached): {t3 - t2:.3f} s")


if __name__ == "__main__":
    main()
