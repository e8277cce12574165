"""Run configurations: the schema, TOML reading and writing, merging and validation.

A configuration is a nested dict of plain values, one table per concern:

    [task]            name, and [task.params] passed to osttp.tasks.load
    [model]           cell, hidden, recurrent, dtype, feedback_scale, [model.cell_options]
    [train]           rule, seed, epochs, batch_size, optimizer, lr, ... (how parameters are learned)
    [eval]            batch_size, max_valid_batches, max_test_batches, test_params
    [hardware]        synapse, update, w_range, bits, drift_eval (simulated memristive synapses)
    [run]             device, checkpoint_every (how the process runs; may change on --resume)
    [compare]         rules, seeds (only for `osttp compare` / `osttp demo`)

Precedence: DEFAULTS < config file < command-line flags (`resolve`). Optional keys hold None when
absent; TOML has no null, so the writer leaves them out and the reader puts None back.
docs/cli.md lists every key.
"""
from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 falls back to the tomli backport
    import tomli as tomllib  # type: ignore[no-redef]

from osttp.errors import OsttpError


@dataclass(frozen=True)
class Key:
    """One config key: its kind, default and bounds.

    kind: "int" | "float" | "bool" | "str" | "ints" (list of int) | "strs" | "table" (free-form,
    checked by whoever consumes it: the task loader or the cell factory)."""

    kind: str
    default: Any = None
    lo: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None (absent) is a valid value
    nonempty: bool = False  # for lists
    strict: bool = False  # lo is exclusive (a learning rate must be > 0)


SCHEMA: dict[str, dict[str, Key]] = {
    "task": {
        "name": Key("str", optional=True),  # required in the end; checked by `require_run_keys`
        "params": Key("table", {}),
    },
    "model": {
        "cell": Key("str", "snu"),
        "hidden": Key("ints", [256, 256], lo=1, nonempty=True),
        "recurrent": Key("bool", False),
        "dtype": Key("str", "float32", choices=("float32", "float64")),
        "feedback_scale": Key("float", None, lo=0.0, optional=True),
        "cell_options": Key("table", {}),
    },
    "train": {
        "rule": Key("str", optional=True),  # required for train; compare sets it per run
        "seed": Key("int", 0, lo=0),
        "epochs": Key("int", 10, lo=1),
        "batch_size": Key("int", 64, lo=1),
        "optimizer": Key("str", "adam", choices=("adam", "sgd")),
        "lr": Key("float", 1e-3, lo=0.0, strict=True),
        "momentum": Key("float", 0.0, lo=0.0),
        "weight_decay": Key("float", 0.0, lo=0.0),
        "schedule": Key("str", "sequence-end"),
        "window": Key("int", None, lo=1, optional=True),  # tbptt only
        "shuffle": Key("bool", True),
        "max_batches": Key("int", None, lo=1, optional=True),  # training batches per epoch; None: all
    },
    "eval": {
        "batch_size": Key("int", 256, lo=1),
        "max_valid_batches": Key("int", None, lo=1, optional=True),
        "max_test_batches": Key("int", None, lo=1, optional=True),
        "test_params": Key("str", "final", choices=("final", "best-valid")),
    },
    "hardware": {
        # float: no hardware. Otherwise the weight matrices live in simulated devices (osttp.hardware)
        "synapse": Key("str", "float", choices=("float", "ideal", "quantized", "pcm")),
        "update": Key("str", "mixed-precision", choices=("mixed-precision", "stochastic", "sign")),
        # per-layer range w_max = w_range * max|W_init| (HardwareTraining's auto_w_max); 0: the device's w_max
        "w_range": Key("float", 4.0, lo=0.0),
        "bits": Key("int", 4, lo=2),  # quantized only
        "drift_eval": Key("bool", True),  # test metric against time after programming, at the end
    },
    "run": {
        "device": Key("str", "auto"),
        "checkpoint_every": Key("int", 0, lo=0),  # batches; 0: only at epoch ends
        "threads": Key("int", 0, lo=0),  # torch CPU threads; 0: torch's default
    },
    "compare": {
        "rules": Key("strs", ["osttp", "bptt"], nonempty=True),
        "seeds": Key("ints", [0], lo=0, nonempty=True),
    },
}

# Keys that may differ between a saved run and the command that resumes it.
RESUMABLE_CHANGES: frozenset[str] = frozenset({"run.device", "run.checkpoint_every", "run.threads",
                                               "train.epochs", "hardware.drift_eval"})


def defaults() -> dict[str, Any]:
    return {sec: {k: copy.deepcopy(key.default) for k, key in keys.items()} for sec, keys in SCHEMA.items()}


# ---------------------------------------------------------------------------------------------
# checking


def _fail(where: str, value: Any, expected: str) -> OsttpError:
    # where="" when the caller names the value itself (a command-line flag)
    return OsttpError(f"{where + ' = ' if where else ''}{_show(value)} is invalid; expected {expected}")


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def check_value(where: str, key: Key, value: Any) -> Any:
    """The value, normalised (int -> float for float keys), or an OsttpError naming it."""
    if value is None:
        if key.optional:
            return None
        raise _fail(where, value, f"a {key.kind} value")
    k = key.kind
    if k == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, value, "an integer")
        if key.lo is not None and value < key.lo:
            raise _fail(where, value, f"an integer >= {int(key.lo)}")
        return value
    if k == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, value, "a number")
        v = float(value)
        if not math.isfinite(v):
            raise _fail(where, value, "a finite number")
        if key.lo is not None and (v <= key.lo if key.strict else v < key.lo):
            raise _fail(where, value, f"a number {'>' if key.strict else '>='} {key.lo:g}")
        return v
    if k == "bool":
        if not isinstance(value, bool):
            raise _fail(where, value, "true or false")
        return value
    if k == "str":
        if not isinstance(value, str):
            raise _fail(where, value, "a string")
        if key.choices is not None and value not in key.choices:
            raise _fail(where, value, "one of " + ", ".join(key.choices))
        return value
    if k in ("ints", "strs"):
        if not isinstance(value, (list, tuple)):
            raise _fail(where, value, "a list")
        if key.nonempty and not value:
            raise _fail(where, value, "a non-empty list")
        item = Key("int" if k == "ints" else "str", lo=key.lo)
        out = [check_value(f"{where}[{i}]", item, v) for i, v in enumerate(value)]
        if len(set(out)) != len(out) and where.startswith("compare."):
            raise _fail(where, value, "a list without repeats")
        return out
    if k == "table":
        if not isinstance(value, Mapping):
            raise _fail(where, value, "a table")
        return copy.deepcopy(dict(value))
    raise AssertionError(f"unknown key kind {k}")  # a bug in SCHEMA, not user input


def check_partial(cfg: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check the tables and keys of a (possibly partial) config; unknown names are errors.

    source names where it came from ("config file 'x.toml'") and prefixes every message."""
    try:
        return _check_partial(cfg, source)
    except OsttpError as e:
        if str(e).startswith(source):
            raise
        raise OsttpError(f"{source}: {e}") from None


def _check_partial(cfg: Mapping[str, Any], source: str) -> dict[str, Any]:
    if not isinstance(cfg, Mapping):
        raise OsttpError(f"{source}: a config must be a table of tables, got {_show(cfg)}")
    out: dict[str, Any] = {}
    for sec, table in cfg.items():
        if sec not in SCHEMA:
            raise OsttpError(f"{source}: unknown config table [{sec}]; expected one of {', '.join(SCHEMA)}")
        if not isinstance(table, Mapping):
            raise OsttpError(f"{source}: [{sec}] must be a table, got {_show(table)}")
        out[sec] = {}
        for k, v in table.items():
            if k not in SCHEMA[sec]:
                raise OsttpError(f"{source}: unknown config key {sec}.{k}; expected one of "
                                 f"{', '.join(SCHEMA[sec])}")
            out[sec][k] = check_value(f"{sec}.{k}", SCHEMA[sec][k], v)
    return out


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """base updated by over, table by table; free-form tables merge key by key, so a
    --task-param adds to the config file's [task.params] instead of replacing it."""
    out = copy.deepcopy(base)
    for sec, table in over.items():
        dst = out.setdefault(sec, {})
        for k, v in table.items():
            if SCHEMA[sec][k].kind == "table" and isinstance(dst.get(k), dict):
                dst[k] = {**dst[k], **copy.deepcopy(v)}
            else:
                dst[k] = copy.deepcopy(v)
    return out


def resolve(*layers: tuple[Mapping[str, Any], str]) -> dict[str, Any]:
    """DEFAULTS merged with each (partial config, source name) in turn, each checked first."""
    cfg = defaults()
    checked = []
    for partial, source in layers:
        checked.append((check_partial(partial, source), source))
        cfg = merge(cfg, checked[-1][0])
    _hardware_optimizer(cfg, checked)
    check_consistency(cfg)
    return cfg


def _hardware_optimizer(cfg: dict[str, Any], layers: list[tuple[dict[str, Any], str]]) -> None:
    """Simulated synapses are trained by plain SGD through the devices (HardwareTraining's optimizer),
    so train.optimizer becomes "sgd"; a layer that explicitly asks for adam (the last one to set the key)
    is refused rather than silently ignored. The default (adam) is replaced without a word."""
    synapse = cfg["hardware"]["synapse"]
    if synapse == "float":
        return
    setters = [(p["train"]["optimizer"], src) for p, src in layers if "optimizer" in p.get("train", {})]
    if setters and setters[-1][0] != "sgd":
        opt, src = setters[-1]
        raise OsttpError(f"{src + ': ' if src else ''}train.optimizer = {_show(opt)} cannot be used with "
                         f"hardware.synapse = {_show(synapse)}: simulated synapses are trained by plain SGD "
                         "through the devices; use --optimizer sgd or leave the optimizer unset")
    cfg["train"]["optimizer"] = "sgd"


def check_consistency(cfg: Mapping[str, Any]) -> None:
    """Rules that involve several keys."""
    tr = cfg["train"]
    if tr["optimizer"] != "sgd" and tr["momentum"] != 0.0:
        raise OsttpError(f"config key train.momentum = {tr['momentum']} applies only to optimizer sgd, "
                         f"not {tr['optimizer']}")
    hw = cfg["hardware"]
    if hw["synapse"] != "float":
        for key in ("momentum", "weight_decay"):
            if tr[key] != 0.0:
                raise OsttpError(f"config key train.{key} = {tr[key]} is not supported with hardware.synapse = "
                                 f"{_show(hw['synapse'])}: the devices are trained by plain SGD")
        if cfg["eval"]["test_params"] != "final":
            raise OsttpError(f"eval.test_params = {_show(cfg['eval']['test_params'])} is not supported with "
                             f"hardware.synapse = {_show(hw['synapse'])}: the devices hold only the final weights; "
                             "use final")
        if hw["synapse"] == "quantized" and hw["bits"] > 32:
            raise _fail("hardware.bits", hw["bits"], "an integer from 2 to 32")
    dev = cfg["run"]["device"]
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", dev):
        raise _fail("run.device", dev, "auto, cpu, cuda or cuda:N")


def require_run_keys(cfg: Mapping[str, Any]) -> None:
    if not cfg["task"]["name"]:
        raise OsttpError("no task given: use --task NAME or set [task] name in the config file")
    if not cfg["train"]["rule"]:
        raise OsttpError("no learning rule given: use --rule NAME or set [train] rule in the config file")


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two full configs (free-form tables compared whole)."""

    def norm(key: Key, v: Any) -> Any:
        # a None entry in a free-form table equals an absent one: config.toml cannot write None
        return {x: y for x, y in v.items() if y is not None} if key.kind == "table" and isinstance(v, dict) else v

    out = []
    for sec in SCHEMA:
        for k, key in SCHEMA[sec].items():
            va, vb = norm(key, a.get(sec, {}).get(k)), norm(key, b.get(sec, {}).get(k))
            if va != vb:
                out.append(f"{sec}.{k}")
    return out


# ---------------------------------------------------------------------------------------------
# TOML in and out


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; any failure (missing, unreadable, malformed) is one OsttpError line."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise OsttpError(f"cannot read config file {str(p)!r}: {e.strerror or e}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise OsttpError(f"config file {str(p)!r} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise OsttpError(f"config file {str(p)!r} is not valid TOML: {e}") from None


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
