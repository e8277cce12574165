"""Command-line interface: `osttp <command>` (also `python -m osttp`)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from osttp.errors import OsttpError


def _cmd_data(args: argparse.Namespace) -> int:
    from osttp.tasks import data

    if args.data_cmd == "path":
        return data.cli_path()
    return data.cli_check()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="osttp", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="where datasets are looked for, and whether their checksums hold")
    d.add_argument("data_cmd", choices=["check", "path"])
    d.set_defaults(func=_cmd_data)
    return p


class _Parser(argparse.ArgumentParser):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except OsttpError as e:
        print(f"osttp: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
