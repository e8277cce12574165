"""TOML in and out: config files, config.toml/compare.toml of run directories, command-line values.

Python reads TOML (tomllib) but does not write it; configs hold only tables of scalars, lists and
sub-tables, so the writer below is small. TOML has no null: None values are left out when writing.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 falls back to the tomli backport
    import tomli as tomllib  # type: ignore[no-redef]

from osttp.errors import OsttpError


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; any failure (missing, unreadable, malformed) is one OsttpError line."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise OsttpError(f"cannot read config file {str(p)!r}: {e.strerror or e}") from None
    try:
        # utf-8-sig: a byte-order mark some editors put first is not part of the TOML
        return tomllib.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise OsttpError(f"config file {str(p)!r} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise OsttpError(f"config file {str(p)!r} is not valid TOML: {e}") from None
    except RecursionError:
        raise OsttpError(f"config file {str(p)!r} is not valid TOML: nested too deeply") from None


def parse_scalar(text: str) -> Any:
    """A command-line value as TOML would read it (1 -> int, 0.5 -> float, true -> bool,
    [1, 2] -> list); anything TOML cannot read is taken as a plain string (label=last)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else json.dumps(k)


def _toml_value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)  # shortest round-trip form; '1e-05' is valid TOML
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x, where) for x in v) + "]"
    if isinstance(v, Mapping):
        items = ", ".join(f"{_toml_key(str(k))} = {_toml_value(x, where)}" for k, x in v.items() if x is not None)
        return "{" + items + "}"
    raise OsttpError(f"cannot write {where} = {v!r} to TOML")


def dumps_toml(cfg: Mapping[str, Any], header: str = "") -> str:
    """Write a config (tables of scalars, lists and sub-tables) as TOML; None values are left out."""
    lines: list[str] = [f"# {h}" if h else "#" for h in header.splitlines()]

    def table(path: list[str], t: Mapping[str, Any]) -> None:
        scalars = [(k, v) for k, v in t.items() if v is not None and not isinstance(v, Mapping)]
        subs = [(k, v) for k, v in t.items() if isinstance(v, Mapping)]
        if path:
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        for k, v in scalars:
            lines.append(f"{_toml_key(str(k))} = {_toml_value(v, '.'.join(path + [str(k)]))}")
        for k, v in subs:
            table(path + [str(k)], v)

    table([], cfg)
    return "\n".join(lines) + "\n"
