"""How argparse reads the flag of a config key (config.SCHEMA), from the key's declared kind:
comma-separated lists, KEY=VALUE tables, booleans with --no-, choices."""
from __future__ import annotations

import argparse
from typing import Any

from osttp.experiment import config as C
from osttp.experiment.tomlio import parse_scalar


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 256,256, got {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 256,256, got {text!r}")
    return vals


def _str_list(text: str) -> list[str]:
    vals = [v.strip() for v in text.split(",") if v.strip()]
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated names like osttp,bptt, got {text!r}")
    return vals


def _assignment(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), parse_scalar(value.strip())


def argparse_options(key: C.Key) -> dict[str, Any]:
    """How argparse reads a config key's flag, from its declared kind (and choices)."""
    by_kind: dict[str, dict[str, Any]] = {
        "int": {"type": int}, "float": {"type": float}, "bool": {"action": argparse.BooleanOptionalAction},
        # a registry's names are checked with the config (one message, live names), not by argparse
        "str": {"choices": list(key.choices)} if isinstance(key.choices, tuple) else {},
        "ints": {"type": _int_list}, "strs": {"type": _str_list},
        "table": {"type": _assignment, "action": "append"},
    }
    kw = dict(by_kind[key.kind])
    if key.metavar and "choices" not in kw and key.kind != "bool":
        kw["metavar"] = key.metavar
    return kw
