"""One writer per run directory: `<dir>/.lock`, an fcntl.flock held for the life of the process.

    with RunLock(out):        # OsttpError naming the holder's PID when another process has it
        ...
    with locked_dir(out) as created:   # make `out` if needed, then lock it (train and stream runs)
        ...

The kernel releases a flock when its process dies (SIGKILL included), so a lock file left behind by
a dead process is stale by construction and the next writer simply takes it over. The file itself is
never deleted while in use (deleting a lock file others may have open lets two processes "hold" two
different files); it only records the PID of its last holder, for the message.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from osttp.errors import OsttpError

LOCK_NAME = ".lock"
_held: dict[str, "RunLock"] = {}  # directories this process holds: re-entry (compare -> train_run) is a no-op


class RunLock:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None
        self._reentered = False

    def acquire(self) -> "RunLock":
        key = str(self.directory.resolve())
        if key in _held:
            self._reentered = True
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise OsttpError(f"run directory {str(self.directory)!r} is in use by process {holder} "
                             f"(lock {str(self.path)!r}); wait for it to finish or stop it") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        _held[key] = self
        return self

    def release(self) -> None:
        if self._reentered or self._fd is None:
            return
        _held.pop(str(self.directory.resolve()), None)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


@contextmanager
def locked_dir(out: Path) -> Iterator[bool]:
    """Make directory `out` if it is absent and hold its lock inside the block; yields whether it was
    made here. When the lock cannot be taken, a directory made here is removed again."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OsttpError(f"cannot create run directory {str(out)!r}: {e.strerror or e}") from None
    lock = RunLock(out)
    try:
        lock.acquire()
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    try:
        yield created
    finally:
        lock.release()
