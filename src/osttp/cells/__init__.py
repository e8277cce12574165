"""Cells: one step and its local derivatives (SPEC §3). `make_cell(name, **options)`."""
from __future__ import annotations

from typing import Any, Callable

from osttp.cells.alif import ALIF
from osttp.cells.base import (Cell, LayerState, Local, MatVec, cell_step, dense_matvec, synaptic_current,
                              zero_state)
from osttp.cells.lif import LIF
from osttp.cells.rnn import LeakyRNN
from osttp.cells.snu import SNU, SoftSNU
from osttp.cells.surrogate import Surrogate
from osttp.errors import OsttpError

CELLS: dict[str, Callable[..., Cell]] = {
    "snu": SNU,
    "ssnu": SoftSNU,
    "lif": LIF,
    "alif": ALIF,
    "rnn": LeakyRNN,
}


def available_cells() -> list[str]:
    return list(CELLS)


def make_cell(name: str, **options: Any) -> Cell:
    """Build a cell by name; options are its hyperparameters (e.g. d=0.4, g="identity").

    A `surrogate` option may be a Surrogate or a dict like {"kind": "fast-sigmoid", "slope": 10}."""
    if isinstance(name, str) and name in CELLS:
        factory = CELLS[name]
    else:
        raise OsttpError(f"unknown cell {name!r}; expected one of {available_cells()}")
    if isinstance(options.get("surrogate"), dict):
        options["surrogate"] = Surrogate(**options["surrogate"])
    try:
        return factory(**options)
    except TypeError as e:
        raise OsttpError(f"bad option for cell {name!r}: {e}") from None


__all__ = ["ALIF", "CELLS", "Cell", "LIF", "LayerState", "LeakyRNN", "Local", "MatVec", "SNU", "SoftSNU",
           "Surrogate", "available_cells", "cell_step", "dense_matvec", "make_cell", "synaptic_current",
           "zero_state"]
