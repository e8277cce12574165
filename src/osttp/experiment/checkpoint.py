"""Files of a run directory that must never be seen half-written: atomic text/torch writes, JSON
without NaN tokens, and checkpoints loaded with weights_only=True (tensors and plain containers,
never code), each carrying a format version and a content digest checked on load.

A checkpoint ("osttp-checkpoint-3") is a dict: format, digest (SHA-256 of everything else, see
`content_digest`), model (state_dict), optimizer / hardware (the backend's state, see backend.py),
progress (plain values; the running train metric as its `Metric.sums()`), rng, net_config,
osttp_version. Files of another format are refused (pre-1.0: no reader for older formats).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from osttp import checks
from osttp.errors import OsttpError

CHECKPOINT_FORMAT = "osttp-checkpoint-3"
TMP_SUFFIX = ".tmp"


def temp_path(path: Path) -> Path:
    """A temporary name beside `path`, unique to this process and call (two writers never share one);
    hidden and ending in .tmp, so a reader never mistakes it for the real file."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def _write_atomic(path: Path, mode: str, write: Any, keep: Path | None = None) -> None:
    """Write to a temporary file, fsync, rename over `path`: a reader (or a resume after SIGKILL)
    sees the old complete file or the new complete file, never a torn one. On any failure
    (ENOSPC, Ctrl-C, ...) the temporary file is removed before the error goes on. keep: where the
    file being replaced goes (the previous checkpoint), linked only once the new one is complete."""
    tmp = temp_path(path)
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep is not None and path.is_file():
            _keep_copy(path, keep)
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def _discard(path: Path) -> None:
    """Remove a temporary file on the way out of a failed write; a failure to remove it must not
    hide the error that got us here (the next lock holder sweeps leftovers)."""
    try:
        path.unlink()
    except OSError:
        pass


def _keep_copy(path: Path, keep: Path) -> None:
    """`keep` becomes the current `path` (a hard link, or a copy where links are not supported), while
    `path` itself never disappears: a reader polling it always finds a complete file."""
    link = temp_path(keep)
    try:
        try:
            os.link(path, link)
        except OSError:
            shutil.copyfile(path, link)
        os.replace(link, keep)
    except BaseException:
        _discard(link)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    _write_atomic(path, "w", lambda f: f.write(text))


def save_atomic(obj: Any, path: Path, keep: Path | None = None) -> None:
    """torch.save, atomically (see _write_atomic)."""
    _write_atomic(path, "wb", lambda f: torch.save(obj, f), keep)


def remove_stale_temps(directory: Path) -> None:
    """Temporary files a killed writer left behind (call only while holding the directory's lock)."""
    for p in directory.glob(f".*{TMP_SUFFIX}"):
        try:
            p.unlink()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# content digest


def _leaves(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) pairs in a fixed order: dict keys sorted by their repr, lists in order."""
    if isinstance(obj, Mapping):
        for k in sorted(obj, key=repr):
            yield from _leaves(obj[k], f"{path}/{k!r}")
    elif isinstance(obj, (list, tuple)):
        yield f"{path}:{type(obj).__name__}{len(obj)}", None
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, obj


def content_digest(obj: Mapping[str, Any]) -> str:
    """SHA-256 over every entry but "digest": for a tensor its path, dtype, shape and raw bytes; for a
    plain value its path, type and repr. Deterministic: independent of pickling and zip layout."""
    h = hashlib.sha256()
    for path, leaf in _leaves({k: v for k, v in obj.items() if k != "digest"}):
        h.update(path.encode("utf-8", "surrogatepass") + b"\0")
        if isinstance(leaf, torch.Tensor):
            t = leaf.detach().cpu().contiguous().reshape(-1)
            h.update(f"{t.dtype}{tuple(leaf.shape)}".encode() + b"\0")
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(f"{type(leaf).__name__}:{leaf!r}".encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def with_digest(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "format": CHECKPOINT_FORMAT, "digest": content_digest({**obj, "format": CHECKPOINT_FORMAT})}


def load_checkpoint(path: Path) -> dict[str, Any]:
    """weights_only=True: a checkpoint can hold tensors and plain containers, never code. The format
    and the digest are checked; any failure is an OsttpError naming the file (never torch's advice to
    retry with weights_only=False: that would run whatever code the file holds)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise OsttpError(f"cannot read checkpoint {str(path)!r}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 -- the bytes are untrusted: whatever torch's unpickler raises
        # on them (UnpicklingError, EOFError, struct.error, RuntimeError, ...) means a corrupt file
        what = "truncated or not a torch file" if not isinstance(e, pickle.UnpicklingError) else \
            "holds objects other than tensors and plain values"
        raise OsttpError(f"checkpoint {str(path)!r} is corrupt ({what}; {type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = f"format {checks.show(ckpt.get('format'))}" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise OsttpError(f"{str(path)!r} is not an osttp checkpoint of format {CHECKPOINT_FORMAT} (found {found})")
    stored = ckpt.get("digest")
    if not isinstance(stored, str) or content_digest(ckpt) != stored:
        raise OsttpError(f"checkpoint {str(path)!r} is corrupt: its content digest does not match "
                         "(damaged or edited file)")
    return ckpt


# ---------------------------------------------------------------------------------------------
# JSON and RNG


def _finite_or_none(x: Any) -> Any:
    """JSON has no NaN/Inf: write null instead (json.dumps would write invalid NaN tokens)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    return x


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(_finite_or_none(obj), indent=indent, allow_nan=False)


def read_json(path: Path) -> Any:
    """Parsed JSON of a file we wrote; anything unreadable (I/O, not UTF-8, not JSON, nested too
    deeply, a number too long) is one OsttpError naming the file."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise OsttpError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise OsttpError(f"cannot read {str(path)!r}: not UTF-8 text") from None
    except (ValueError, RecursionError) as e:
        raise OsttpError(f"cannot read {str(path)!r}: not valid JSON ({type(e).__name__})") from None


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
