"""Cells: one step and its local derivatives (docs/math.md §3). `make_cell(name, **options)`."""
from __future__ import annotations

import dataclasses
from typing import Any

from osttp.cells.alif import ALIF
from osttp.cells.base import (Cell, LayerState, Local, MatVec, cell_step, cell_step_with_current, dense_matvec,
                              synaptic_current, zero_state)
from osttp.cells.lif import LIF
from osttp.cells.rnn import LeakyRNN
from osttp.cells.snu import SNU, SoftSNU
from osttp import checks
from osttp.cells.surrogate import Surrogate
from osttp.errors import OsttpError
from osttp.registry import Registry

# meta: spiking -- the output is a spike (tests check firing rates and reset paths for these).
CELLS: Registry[Cell] = Registry("cell")
CELLS.register("snu", SNU, help="spiking neural unit, IBM convention (docs/math.md §3.1)", spiking=True)
CELLS.register("ssnu", SoftSNU, help="soft SNU: sigmoid output (docs/math.md §3.2)", spiking=False)
CELLS.register("lif", LIF, help="leaky integrate-and-fire, subtractive reset (docs/math.md §3.3)", spiking=True)
CELLS.register("alif", ALIF, help="LIF with an adaptive threshold (docs/math.md §3.4)", spiking=True)
CELLS.register("rnn", LeakyRNN, help="leaky tanh RNN, non-spiking (docs/math.md §3.4)", spiking=False)


def available_cells() -> list[str]:
    return CELLS.names()


def _check_numeric_options(name: str, factory: Any, options: dict[str, Any]) -> None:
    """Options whose default is a number must be numbers (d="abc" is named, not compared with 0)."""
    if not dataclasses.is_dataclass(factory):
        return
    defaults = {f.name: f.default for f in dataclasses.fields(factory)}
    for key, value in options.items():
        default = defaults.get(key)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            checks.number(f"cell {name!r} option {key}", value)


def _surrogate_option(value: Any) -> Surrogate:
    if isinstance(value, Surrogate):
        return value
    if isinstance(value, str):
        return Surrogate(value)
    if isinstance(value, dict):
        try:
            return Surrogate(**value)
        except TypeError as e:
            raise OsttpError(f"surrogate = {value!r}: {e}; expected keys kind and slope") from None
    raise OsttpError(f"surrogate = {value!r}: expected a kind name, a Surrogate or a dict "
                     "{kind, slope}")


def make_cell(name: str, **options: Any) -> Cell:
    """Build a cell by name; options are its hyperparameters (e.g. d=0.4, g="identity").

    A `surrogate` option may be a Surrogate, a kind name like "fast-sigmoid" or a dict like
    {"kind": "fast-sigmoid", "slope": 10}."""
    factory = CELLS.get(name).factory
    _check_numeric_options(name, factory, options)
    if "surrogate" in options:
        options["surrogate"] = _surrogate_option(options["surrogate"])
    try:
        return factory(**options)
    except TypeError as e:
        raise OsttpError(f"bad option for cell {name!r}: {e}") from None


__all__ = ["ALIF", "CELLS", "Cell", "LIF", "LayerState", "LeakyRNN", "Local", "MatVec", "SNU", "SoftSNU",
           "Surrogate", "available_cells", "cell_step", "cell_step_with_current", "dense_matvec", "make_cell", "synaptic_current",
           "zero_state"]
