"""Config keys are declared once (the schema) and the command line is built from it; every bad value,
wherever it is checked, is reported in one format: `<name> = <value>: expected <what>`."""
from __future__ import annotations

import math
import re

import pytest

import osttp.tasks
from osttp import checks
from osttp.errors import OsttpError
from osttp.experiment import config as C
from osttp.experiment.cli import build_parser
from osttp.hardware import PCMDevice

FORMAT = re.compile(r"^(.+) = (.+): expected (.+)$")


def _options(cmd: str) -> dict[str, object]:
    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    return {opt: action for action in sub.choices[cmd]._actions for opt in action.option_strings}


def test_every_declared_flag_is_an_option_of_exactly_its_commands() -> None:
    options = {cmd: _options(cmd) for cmd in ("train", "compare", "demo")}
    flags = 0
    for sec, keys in C.SCHEMA.items():
        for name, key in keys.items():
            if not key.flag:
                continue
            flags += 1
            for cmd, opts in options.items():
                if cmd not in key.commands:
                    assert key.flag not in opts, (key.flag, cmd)
                    continue
                action = opts[key.flag]
                assert action.dest == f"{sec}.{name}" and action.default is None, key.flag
                if isinstance(key.choices, tuple) and key.kind == "str":
                    assert list(action.choices) == list(key.choices), key.flag
    assert flags >= 30  # every key the command line could set before the schema declared them


@pytest.mark.parametrize("call, name, shown", [
    (lambda: C.check_value("train.lr", C.SCHEMA["train"]["lr"], 0), "train.lr", "0"),
    (lambda: C.check_value("train.epochs", C.SCHEMA["train"]["epochs"], "ten"), "train.epochs", '"ten"'),
    (lambda: C.check_value("hardware.synapse", C.SCHEMA["hardware"]["synapse"], "rram"), "hardware.synapse",
     '"rram"'),
    (lambda: C.check_value("compare.seeds", C.SCHEMA["compare"]["seeds"], [0, 0]), "compare.seeds", "[0, 0]"),
    (lambda: PCMDevice(w_max=math.nan), "PCMDevice.w_max", "nan"),
    (lambda: osttp.tasks.load("delayed-xor", "train", delay=-1), "task 'delayed-xor' parameter delay", "-1"),
    (lambda: osttp.tasks.load("store-recall", "train", distractor_p=1.5),
     "task 'store-recall' parameter distractor_p", "1.5"),
])
def test_one_message_format_everywhere(call, name: str, shown: str) -> None:
    with pytest.raises(OsttpError) as info:
        call()
    m = FORMAT.match(str(info.value))
    assert m is not None, str(info.value)
    assert (m.group(1), m.group(2)) == (name, shown)


def test_checkers_normalise_and_refuse() -> None:
    assert checks.integer("n", 3, ge=1) == 3 and checks.number("x", 2, gt=0) == 2.0
    assert isinstance(checks.number("x", 2, gt=0), float)
    for bad in (True, 1.5, "3"):
        with pytest.raises(OsttpError, match="expected an integer >= 1"):
            checks.integer("n", bad, ge=1)
    for bad in (math.inf, math.nan, 0.0, False):
        with pytest.raises(OsttpError, match="expected a finite number > 0"):
            checks.number("x", bad, gt=0.0)
    with pytest.raises(OsttpError, match="expected one of a, b"):
        checks.string("s", "c", ("a", "b"))


@pytest.mark.parametrize("sec, key, registry", [("train", "rule", "PRESETS"), ("model", "cell", "CELLS"),
                                                ("train", "optimizer", "OPTIMIZERS"),
                                                ("hardware", "update", "SCHEMES")])
def test_a_bad_registry_name_in_a_config_file_fails_at_load_listing_the_valid_names(sec: str, key: str,
                                                                                   registry: str) -> None:
    from osttp.cells import CELLS
    from osttp.experiment.optimizers import OPTIMIZERS
    from osttp.hardware import SCHEMES
    from osttp.rules import PRESETS

    names = {"PRESETS": PRESETS, "CELLS": CELLS, "OPTIMIZERS": OPTIMIZERS, "SCHEMES": SCHEMES}[registry].names()
    with pytest.raises(OsttpError) as info:
        C.resolve(({sec: {key: "nope"}}, "config file 'x.toml'"))
    msg = str(info.value)
    assert msg.startswith(f"config file 'x.toml': {sec}.{key} = \"nope\": expected one of {', '.join(names)}")
    assert "\n" not in msg


def test_a_name_registered_after_import_is_a_valid_config_value() -> None:
    from osttp.rules import PRESETS, register_online_preset

    register_online_preset("toy-later", "diagonal", "target-projection")
    try:
        cfg = C.resolve(({"train": {"rule": "toy-later"}, "compare": {"rules": ["toy-later", "bptt"]}}, "test"))
        assert cfg["train"]["rule"] == "toy-later"
    finally:
        PRESETS.unregister("toy-later")
    with pytest.raises(OsttpError, match=r"compare.rules\[0\]"):
        C.resolve(({"compare": {"rules": ["toy-later"]}}, "test"))
