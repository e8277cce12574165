"""Progress of a training run, suited to where it goes.

- a terminal (stderr is a TTY): a live tqdm bar with loss, metric and ETA, redrawn in place;
- a file, pipe or CI log: no bar (its redraws would be thousands of partial lines), but a plain line
  now and then during a long epoch (at most one per `every_s` seconds);
- --quiet: nothing but the per-epoch lines.

In every case the loop's own lines (one per epoch, the test result) go through `write`.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

Log = Callable[[str], None]


class Progress:
    """Nothing live: lines only (--quiet)."""

    def __init__(self, log: Log) -> None:
        self.log = log

    def describe(self, desc: str) -> None:
        pass

    def update(self, postfix: dict[str, str]) -> None:
        pass

    def write(self, line: str) -> None:
        self.log(line)

    def close(self) -> None:
        pass


class BarProgress(Progress):
    """A live tqdm bar on the terminal; lines are printed above it."""

    def __init__(self, log: Log, total: int, initial: int, desc: str, file: TextIO) -> None:
        super().__init__(log)
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False, file=file)

    def describe(self, desc: str) -> None:
        self.bar.set_description(desc, refresh=False)

    def update(self, postfix: dict[str, str]) -> None:
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def write(self, line: str) -> None:
        self.bar.write(line)

    def close(self) -> None:
        self.bar.close()


class LineProgress(Progress):
    """For logs: one complete line at most every `every_s` seconds, e.g.
    ``[osttp s0 epoch 2/10] batch 120/469 (26%)  loss 0.4521 accuracy 0.8812  41 s``."""

    def __init__(self, log: Log, total: int, initial: int, desc: str, every_s: float = 60.0) -> None:
        super().__init__(log)
        self.total, self.done, self.desc, self.every_s = total, initial, desc, every_s
        self.start = self.last = time.monotonic()

    def describe(self, desc: str) -> None:
        self.desc = desc

    def update(self, postfix: dict[str, str]) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            values = " ".join(f"{k} {v}" for k, v in postfix.items())
            self.log(f"[{self.desc}] batch {self.done}/{self.total} ({100 * self.done // max(self.total, 1)}%)  "
                     f"{values}  {now - self.start:.0f} s")


def make_progress(quiet: bool, total: int, initial: int, desc: str, log: Log,
                  stream: TextIO | None = None) -> Progress:
    """The reporter for this run: see the module docstring. `stream` (default stderr) is where a bar would go."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return Progress(log)
    if stream.isatty():
        return BarProgress(log, total, initial, desc, stream)
    return LineProgress(log, total, initial, desc)
