"""`osttp export RUN_DIR --format nir --out model.nir`: a trained run's network in another tool's format.

The network is rebuilt from the run's model.pt (its net_config and final parameters, loaded with
weights_only=True) and written through osttp.interop (docs/interop.md) to a temporary file beside
--out, renamed over it only once complete: a failed export leaves nothing half-written.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from osttp.errors import OsttpError
from osttp.experiment.checkpoint import load_checkpoint, temp_path
from osttp.experiment.tomlio import read_toml
from osttp.network import Network

FORMATS = ("nir",)


def trained_network(run: Path) -> Network:
    """The final network of a completed run directory."""
    if not run.is_dir():
        raise OsttpError(f"run directory {str(run)!r} not found")
    model = run / "model.pt"
    if not model.is_file():
        raise OsttpError(f"{str(run)!r} has no model.pt: not a completed run directory (osttp train writes it at "
                         "the end of training)")
    config = run / "config.toml"
    synapse = read_toml(config).get("hardware", {}).get("synapse", "float") if config.is_file() else "float"
    if synapse != "float":
        raise OsttpError(f"run {str(run)!r} trained simulated {synapse!r} synapses; an export holds float weights "
                         "only (expected a run with hardware.synapse = 'float')")
    ckpt = load_checkpoint(model)
    state: dict[str, Any] = ckpt["model"]
    dtype = state["readout.weight"].dtype if isinstance(state.get("readout.weight"), torch.Tensor) else torch.float32
    try:
        net = Network.from_sizes(dtype=dtype, **ckpt["net_config"])
        net.load_state_dict(state)
    except (TypeError, KeyError, RuntimeError) as e:
        raise OsttpError(f"{str(model)!r} does not hold a network osttp can rebuild "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return net


def _write_nir(net: Network, out: Path, dt: float, unit_resistance: bool) -> None:
    from osttp.interop import to_nir
    from osttp.interop.nir_export import load_nir

    graph = to_nir(net, dt=dt, unit_resistance=unit_resistance)  # refusals before any file is touched
    nir = load_nir()
    tmp = temp_path(out)
    try:
        nir.write(str(tmp), graph)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_run(run: Path, fmt: str, out: Path, dt: float = 1e-4, unit_resistance: bool = False) -> None:
    if fmt not in FORMATS:
        raise OsttpError(f"export format {fmt!r} is not known; expected one of {', '.join(FORMATS)}")
    if out.is_dir():
        raise OsttpError(f"--out {str(out)!r} is a directory; expected a file name such as model.nir")
    if not out.parent.is_dir():
        raise OsttpError(f"--out {str(out)!r}: its directory {str(out.parent)!r} does not exist")
    _write_nir(trained_network(run), out, dt, unit_resistance)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a completed run directory (osttp train --out DIR)")
    p.add_argument("--format", required=True, choices=FORMATS, help="nir: the Neuromorphic Intermediate Representation")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (replaced only once complete)")
    p.add_argument("--dt", type=float, default=1e-4, metavar="SECONDS",
                   help="the step the time constants are written for (default 1e-4, what snnTorch assumes)")
    p.add_argument("--unit-resistance", action="store_true",
                   help="write r = 1 with the Euler gain in the weights (what norse's importer reads)")


def command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    export_run(Path(args.run_dir), args.format, Path(args.out), dt=args.dt, unit_resistance=args.unit_resistance)
    print(f"wrote {args.out}")
    return 0
