"""`python -m osttp` and the `osttp` command (both call `main`).

Ctrl-C is handled from the first instant: the handler is installed before the command line and
torch (about a second to import) are loaded, so an early Ctrl-C is one line and exit 130 too, not
a traceback. The first Ctrl-C raises KeyboardInterrupt; later ones are ignored, so the clean-up
that follows (temporary files, the lock) cannot itself be interrupted.
"""
from __future__ import annotations

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
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
