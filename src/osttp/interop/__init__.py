"""Interoperability with other spiking-network tools (docs/interop.md).

NIR (the Neuromorphic Intermediate Representation): `to_nir(net)` and `from_nir(graph)`; read and
write files with `nir.write` / `nir.read`. Needs the optional `nir` package (`osttp[interop]`).
"""
from __future__ import annotations

from osttp.interop.nir_export import to_nir
from osttp.interop.nir_import import from_nir

__all__ = ["from_nir", "to_nir"]
