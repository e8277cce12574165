"""Interoperability with other spiking-network tools (docs/interop.md).

NIR (the Neuromorphic Intermediate Representation): `to_nir(net)` and `from_nir(graph)`; read and
write files with `nir.write` / `nir.read`. Needs the optional `nir` package (`osttp[interop]`).
tonic: `tonic_task(dataset)` turns a tonic dataset with a frame transform into an osttp Task.
"""
from __future__ import annotations

from osttp.interop.nir_export import to_nir
from osttp.interop.nir_import import from_nir
from osttp.interop.tonic_task import tonic_task

__all__ = ["from_nir", "to_nir", "tonic_task"]
