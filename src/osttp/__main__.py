"""`python -m osttp` and the `osttp` command (both call `main`).

Ctrl-C is handled from the first instant: the handler is installed before the command line and
torch (about a second to import) are loaded, so an early Ctrl-C is one line and exit 130 too, not
a traceback. The first Ctrl-C raises KeyboardInterrupt; later ones are ignored, so the clean-up
that follows (temporary files, the lock) cannot itself be interrupted.
"""
from __future__ import annotations

import os
import signal
import sys
from types import FrameType

EXIT_INTERRUPTED = 130


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> int:
    try:
        signal.signal(signal.SIGINT, _interrupt)
        from osttp.experiment import cli
    except KeyboardInterrupt:
        print("osttp: interrupted (continue a run with --resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    rc = cli.main()
    if os.environ.get("WORLD_SIZE", "1") != "1":
        # A process of a data-parallel group ends here without the interpreter's finalization: gloo's
        # worker threads can still hold tensors whose release then needs the GIL of a dying
        # interpreter, and std::terminate aborts the process (seen as SIGABRT in ~1 of 20 runs under
        # load). Everything osttp writes is closed and renamed into place by now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
