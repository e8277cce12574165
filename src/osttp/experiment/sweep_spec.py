"""Sweep specifications: the TOML file of `osttp sweep`, its search space, and the trial configs.

    [sweep]
    base = "../configs/demo.toml"   # optional; relative to this file. Other tables here override it
    sampler = "tpe"                 # grid | random | tpe
    n_trials = 20                   # grid: default and maximum = number of grid points
    metric = "valid_metric"         # or "best_valid_metric" (from each trial's results.json)
    [sweep.space]
    "train.lr" = { low = 1e-4, high = 1e-2, log = true }   # grid: add num = N points
    "train.optimizer" = ["adam", "sgd"]
    "model.hidden" = [[128], [256, 256]]
    "task.params.label" = ["last", "from:14"]

Keys are dotted config keys (docs/cli.md); a third part addresses an entry of a free-form table
(`task.params`, `model.cell_options`). Only the valid split is ever used to compare trials.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from osttp.experiment import config as C
from osttp.experiment.tomlio import read_toml
from osttp.errors import OsttpError

SAMPLERS = ("grid", "random", "tpe")
METRICS = ("valid_metric", "best_valid_metric")
SWEEP_KEYS = ("base", "name", "sampler", "n_trials", "seed", "metric", "space")
RANGE_KEYS = ("low", "high", "log", "num")


@dataclass(frozen=True)
class Param:
    """One swept key: a numeric range (kind "float" or "int") or a list of choices (kind "choice").

    For Optuna, choices that are not plain scalars (lists, tables) are handed over as their JSON
    text; `encoded` holds what Optuna sees, `choices` the config values, index for index."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    encoded: tuple[Any, ...] = ()

    def decode(self, value: Any) -> Any:
        if self.kind == "choice":
            return copy.deepcopy(self.choices[self.encoded.index(value)])
        return int(value) if self.kind == "int" else float(value)

    def extremes(self) -> list[Any]:
        """Values that bound what a sampler can propose: both ends of a range, every choice."""
        if self.kind == "choice":
            return list(self.choices)
        return [self.decode(self.low), self.decode(self.high)]


@dataclass
class Spec:
    path: Path
    name: str
    base: dict[str, Any]  # resolved config the trials start from
    base_layers: list[tuple[dict[str, Any], str]]
    sampler: str
    n_trials: int
    seed: int
    metric: str
    params: list[Param] = field(default_factory=list)
    grid: list[dict[str, Any]] = field(default_factory=list)  # encoded values per grid point (grid only)

    def fingerprint(self) -> str:
        """What makes two specs the same sweep (n_trials and [run] may differ between sessions)."""
        base = {k: v for k, v in self.base.items() if k != "run"}
        space = [(p.key, p.kind, p.low, p.high, p.log, list(p.encoded)) for p in self.params]
        return json.dumps({"base": base, "space": space, "sampler": self.sampler, "metric": self.metric,
                           "seed": self.seed}, sort_keys=True, default=str)


def _bad(path: Path, what: str) -> OsttpError:
    return OsttpError(f"sweep spec {str(path)!r}: {what}")


def _scalar(v: Any) -> bool:
    return isinstance(v, (bool, int, float, str))


def _check_key(path: Path, key: str) -> None:
    parts = key.split(".")
    sec = parts[0]
    if len(parts) < 2 or sec not in C.SCHEMA or parts[1] not in C.SCHEMA[sec]:
        raise _bad(path, f"space key {key!r} is not a config key; expected section.key such as train.lr "
                         "(see docs/cli.md)")
    kind = C.SCHEMA[sec][parts[1]].kind
    if len(parts) == 3 and kind != "table" or len(parts) > 3 or len(parts) == 3 and not parts[2]:
        raise _bad(path, f"space key {key!r}: only free-form tables (task.params, model.cell_options) take a "
                         "third part")


def _param(path: Path, key: str, value: Any, sampler: str) -> Param:
    _check_key(path, key)
    if isinstance(value, list):
        if not value:
            raise _bad(path, f"space key {key!r} has an empty list of choices")
        encoded = [v if _scalar(v) else json.dumps(v, sort_keys=True) for v in value]
        if len(set(map(json.dumps, encoded))) != len(encoded):
            raise _bad(path, f"space key {key!r} lists a choice twice")
        return Param(key, "choice", choices=tuple(value), encoded=tuple(encoded))
    if not isinstance(value, Mapping):
        raise _bad(path, f"space key {key!r} = {value!r}; expected a list of choices or a table "
                         "{ low, high, log, num }")
    unknown = sorted(set(value) - set(RANGE_KEYS))
    if unknown or "low" not in value or "high" not in value:
        raise _bad(path, f"space key {key!r}: a range needs low and high (and optionally log, num); "
                         f"got {', '.join(sorted(value))}")
    low, high, log = value["low"], value["high"], value.get("log", False)
    nums = (low, high)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in nums):
        raise _bad(path, f"space key {key!r}: low and high must be finite numbers, got {low!r}, {high!r}")
    if not isinstance(log, bool):
        raise _bad(path, f"space key {key!r}: log = {log!r}; expected true or false")
    if not low < high:
        raise _bad(path, f"space key {key!r}: low = {low} must be below high = {high}")
    if log and low <= 0:
        raise _bad(path, f"space key {key!r}: a log range needs low > 0, got {low}")
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    if sampler != "grid":
        if "num" in value:
            raise _bad(path, f"space key {key!r}: num applies only to sampler = \"grid\"")
        return Param(key, kind, low=low, high=high, log=log)
    num = value.get("num")
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise _bad(path, f"space key {key!r}: a grid needs a list of values or a range with num = N >= 2 points")
    pts = np.geomspace(low, high, num) if log else np.linspace(low, high, num)
    vals: list[Any] = sorted({int(round(p)) for p in pts}) if kind == "int" else [float(p) for p in pts]
    return Param(key, "choice", choices=tuple(vals), encoded=tuple(vals))


def apply(cfg: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of cfg with each dotted key set to its value."""
    out = copy.deepcopy(dict(cfg))
    for key, v in values.items():
        parts = key.split(".")
        table = out.setdefault(parts[0], {})
        if len(parts) == 2:
            table[parts[1]] = copy.deepcopy(v)
        else:
            sub = dict(table.get(parts[1]) or {})
            sub[parts[2]] = copy.deepcopy(v)
            table[parts[1]] = sub
    return out


def trial_config(spec: Spec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The full, checked config of one trial: the base with the trial's values set."""
    over = apply({}, values)
    cfg = C.resolve(*spec.base_layers, (over, "sweep space values " + json.dumps(values, default=str)))
    C.require_run_keys(cfg)
    return cfg


def read_spec(path: str | Path) -> Spec:
    """Parse and check a sweep spec; every problem is one OsttpError naming the file and the key."""
    p = Path(path)
    doc = read_toml(p)
    if not isinstance(doc.get("sweep"), dict):
        raise _bad(p, "has no [sweep] table")
    sw = doc.pop("sweep")
    unknown = sorted(set(sw) - set(SWEEP_KEYS))
    if unknown:
        raise _bad(p, f"unknown [sweep] key(s) {', '.join(unknown)}; expected some of {', '.join(SWEEP_KEYS)}")
    layers: list[tuple[dict[str, Any], str]] = []
    if "base" in sw:
        if not isinstance(sw["base"], str):
            raise _bad(p, f"base = {sw['base']!r}; expected the path of a config file, relative to the spec")
        base_path = (p.parent / sw["base"]).resolve()
        if not base_path.is_file():
            raise _bad(p, f"base config {sw['base']!r} not found at {base_path} (relative to the spec's folder)")
        layers.append((read_toml(base_path), f"config file {str(base_path)!r}"))
    layers.append((doc, f"sweep spec {str(p)!r}"))
    base = C.resolve(*layers)
    if not base["task"]["name"]:
        raise _bad(p, "no task: set [task] name in the base config or the spec")

    sampler = sw.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise _bad(p, f"sampler = {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    metric = sw.get("metric", "valid_metric")
    if metric not in METRICS:
        raise _bad(p, f"metric = {metric!r}; expected one of {', '.join(METRICS)} (trials are compared on "
                      "the valid split only)")
    seed = sw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _bad(p, f"seed = {seed!r}; expected an integer >= 0")
    name = sw.get("name", p.stem)
    if not isinstance(name, str) or not name.strip():
        raise _bad(p, f"name = {name!r}; expected a non-empty study name")
    space = sw.get("space")
    if not isinstance(space, dict) or not space:
        raise _bad(p, "needs a non-empty [sweep.space] table of config keys to vary")
    params = [_param(p, k, v, sampler) for k, v in space.items()]

    spec = Spec(p, name, base, layers, sampler, 0, seed, metric, params)
    if sampler == "grid":
        spec.grid = [dict(zip([q.key for q in params], pt)) for pt in itertools.product(*(q.encoded for q in params))]
    spec.n_trials = _n_trials(p, sw.get("n_trials"), spec)
    _check_values(spec)
    return spec


def _n_trials(path: Path, n: Any, spec: Spec) -> int:
    if n is None:
        if spec.sampler == "grid":
            return len(spec.grid)
        raise _bad(path, f"n_trials is required with sampler = {spec.sampler!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise _bad(path, f"n_trials = {n!r}; expected an integer >= 1")
    return n


def check_n_trials(spec: Spec, n: int) -> int:
    if spec.sampler == "grid" and n > len(spec.grid):
        raise _bad(spec.path, f"n_trials = {n} exceeds the {len(spec.grid)} points of the grid")
    return n


def _check_values(spec: Spec) -> None:
    """Every value a sampler can propose must give a valid config: try each extreme and choice
    on its own (the config checks are per key, apart from a few pairs which a trial reports)."""
    check_n_trials(spec, spec.n_trials)
    base_values = {q.key: q.extremes()[0] for q in spec.params}
    for q in spec.params:
        for v in q.extremes():
            try:
                trial_config(spec, {**base_values, q.key: v})
            except OsttpError as e:
                raise _bad(spec.path, f"space key {q.key!r} value {v!r} gives an invalid config: {e}") from None
