"""Dataset files on disk: where they are looked for, their checksums, and verified, cached loads.

Search path: the folders in $OSTTP_DATA (several allowed, separated by os.pathsep), or, when it
is unset or empty, ~/.cache/osttp/data. Each file is looked for at <folder>/<relative path>, first
folder first. Every load checks structure (gzip, IDX magic numbers and sizes, JSON layout, note
range) and then the SHA-256 sum; verified results are cached per process, keyed by the file's
path, size and modification time, so MNIST is parsed once. Only plain formats are decoded (IDX
with numpy.frombuffer, JSB with json): no Python object serialisation, so a file cannot run code.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from osttp.errors import DataError, OsttpError

ENV_VAR = "OSTTP_DATA"
DEFAULT_DIR = "~/.cache/osttp/data"
DOCS = "see docs/data.md"

MNIST_SOURCE = "the MNIST page of Yann LeCun (http://yann.lecun.com/exdb/mnist/) or any mirror of the official files"
JSB_SOURCE = "the GitHub repository czhuang/JSB-Chorales-dataset (file jsb-chorales-quarter.json)"


@dataclass(frozen=True)
class DataFile:
    """One dataset file. digest_of: "uncompressed" (SHA-256 of the gunzipped bytes, so that any
    mirror's gzip of the official files verifies) or "file" (SHA-256 of the bytes on disk).
    sha256 "" means no checksum is recorded: the file is checked for structure only."""

    relpath: str
    sha256: str
    digest_of: str
    source: str


FILES: dict[str, DataFile] = {
    f.relpath: f
    for f in (
        DataFile("mnist/train-images-idx3-ubyte.gz",
                 "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", "uncompressed", MNIST_SOURCE),
        DataFile("mnist/train-labels-idx1-ubyte.gz",
                 "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", "uncompressed", MNIST_SOURCE),
        DataFile("mnist/t10k-images-idx3-ubyte.gz",
                 "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", "uncompressed", MNIST_SOURCE),
        DataFile("mnist/t10k-labels-idx1-ubyte.gz",
                 "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", "uncompressed", MNIST_SOURCE),
        DataFile("jsb/jsb-chorales-quarter.json",
                 "2db9329f1881a1d3f49703ec556bf1d6f84b4f6c1d702c156536e93cf31e1c91", "file", JSB_SOURCE),
    )
}

SHD_SOURCE = ("the Spiking Heidelberg Digits page of the Zenke lab (https://zenkelab.org/resources/"
              "spiking-heidelberg-datasets-shd/; gunzip shd_train.h5.gz / shd_test.h5.gz)")
SPOKEN_DIGITS_SOURCE = ("`osttp data make spoken-digits --source DIR`, DIR a git clone of the public "
                        "free-spoken-digit-dataset repository (it writes <data folder>/spoken-digits/)")
SPOKEN_DIGITS_20_SOURCE = ("`osttp data make spoken-digits-20` (espeak-ng from `pip install 'osttp[speech]'`; "
                           "it writes <data folder>/spoken-digits-20/)")
# Files only some tasks need: not part of `osttp data check`'s required set. No SHA-256 of the SHD
# files is recorded (none was available to verify here), so they are checked for layout only.
OPTIONAL_FILES: dict[str, DataFile] = {
    f.relpath: f
    for f in (
        DataFile("shd/shd_train.h5", "", "file", SHD_SOURCE),
        DataFile("shd/shd_test.h5", "", "file", SHD_SOURCE),
        *(DataFile(f"spoken-digits/{kind}_{split}.h5", "", "file", SPOKEN_DIGITS_SOURCE)
          for kind in ("speakers", "official") for split in ("train", "valid", "test")),
        *(DataFile(f"spoken-digits-20/voices_{split}.h5", "", "file", SPOKEN_DIGITS_20_SOURCE)
          for split in ("train", "valid", "test")),
    )
}

# MNIST part -> (images file, labels file, number of images)
MNIST_PARTS: dict[str, tuple[str, str, int]] = {
    "train": ("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz", 60000),
    "test": ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz", 10000),
}
JSB_FILE = "jsb/jsb-chorales-quarter.json"
JSB_SPLITS = ("train", "valid", "test")
NOTE_MIN, NOTE_MAX = 21, 108  # the 88 piano keys A0..C8 as MIDI numbers

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

_cache: dict[tuple[str, str, int, int, str], Any] = {}


def data_dirs() -> list[Path]:
    """The folders searched for dataset files, in order."""
    env = os.environ.get(ENV_VAR, "")
    dirs = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    return dirs or [Path(DEFAULT_DIR).expanduser()]


def _search(root: str | os.PathLike[str] | None) -> list[Path]:
    return [Path(root).expanduser()] if root is not None else data_dirs()


def _file(relpath: str) -> DataFile:
    return FILES[relpath] if relpath in FILES else OPTIONAL_FILES[relpath]


def _how_to_get(relpath: str) -> str:
    return f"get it from {_file(relpath).source} ({DOCS})"


def _fail(relpath: str, where: Path | str, what: str) -> DataError:
    """One-line error: file, what is wrong, where, how to get a good copy."""
    msg = f"dataset file {relpath} ({where}): {what}; {_how_to_get(relpath)}"
    return DataError(" ".join(msg.split()))  # collapse any newline that slipped into `what`


def locate(relpath: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The first existing <folder>/<relpath> on the search path (or under root, if given)."""
    dirs = _search(root)
    for d in dirs:
        p = d / relpath
        if p.is_file():
            return p
    looked = ", ".join(str(d) for d in dirs)
    hint = f"put it under {dirs[0] / relpath}" + (f" or set {ENV_VAR} to the folder that holds it" if root is None else "")
    raise DataError(
        f"dataset file {relpath} not found; looked in: {looked}; {hint}; {_how_to_get(relpath)}"
    )


def _read(relpath: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise _fail(relpath, path, f"cannot be read ({e.strerror or e})") from None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (a large file is not held in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_digest(relpath: str, path: Path, data: bytes) -> None:
    f = _file(relpath)
    if not f.sha256:
        return
    got = hashlib.sha256(data).hexdigest()
    if got != f.sha256:
        of = "of the uncompressed bytes " if f.digest_of == "uncompressed" else ""
        raise _fail(relpath, path, f"SHA-256 {of}is {got}, expected {f.sha256} (wrong or damaged file)")


def _cached(relpath: str, root: str | os.PathLike[str] | None, load: Callable[[Path], Any],
            variant: str = "") -> Any:
    """load(path) of relpath's file, once per file version and variant (a reader's setting that
    changes what a load checks, such as the class count of a spike file)."""
    path = locate(relpath, root)
    st = path.stat()
    # Size and mtime in the key: a replaced or repaired file is re-verified, not served stale.
    key = (relpath, str(path.resolve()), st.st_size, st.st_mtime_ns, variant)
    if key not in _cache:
        _cache[key] = load(path)
    return _cache[key]


def clear_cache() -> None:
    """Forget verified loads (tests use it; a long-lived process could too)."""
    _cache.clear()


# ---------------------------------------------------------------------------------------------
# MNIST (IDX)


def _parse_idx(relpath: str, path: Path, data: bytes, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    ndim = len(shape)
    head = 4 + 4 * ndim
    if len(data) < head:
        raise _fail(relpath, path, f"IDX header is truncated ({len(data)} bytes)")
    got_magic = struct.unpack(">I", data[:4])[0]
    if got_magic != magic:
        raise _fail(relpath, path, f"IDX magic number is 0x{got_magic:08x}, expected 0x{magic:08x}")
    dims = struct.unpack(">" + "I" * ndim, data[4:head])
    if tuple(dims) != shape:
        raise _fail(relpath, path, f"IDX dimensions are {tuple(dims)}, expected {shape}")
    n = int(np.prod(shape))
    if len(data) != head + n:
        raise _fail(relpath, path, f"IDX payload is {len(data) - head} bytes, expected {n}")
    arr = np.frombuffer(data, dtype=np.uint8, offset=head).reshape(shape)
    return arr


def _read_idx_gz(relpath: str, path: Path, magic: int, shape: tuple[int, ...]) -> bytes:
    """The gunzipped IDX bytes, decompressed as a stream and never more than the header announces:
    the header is read first, then at most one byte beyond the expected payload, so a small .gz that
    expands to gigabytes (a "gzip bomb") is refused after len(payload) + 1 bytes, not after all of them."""
    head = 4 + 4 * len(shape)
    n = int(np.prod(shape))
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(head)
            if len(header) == head and struct.unpack(">I", header[:4])[0] == magic and \
                    struct.unpack(">" + "I" * len(shape), header[4:head]) == shape:
                payload = f.read(n + 1)
            else:
                payload = b""  # _parse_idx names what is wrong with the header
    except (EOFError, zlib.error) as e:
        raise _fail(relpath, path, f"truncated or corrupt gzip ({type(e).__name__}: {e})") from None
    except OSError as e:  # BadGzipFile (not gzip) or an I/O error
        raise _fail(relpath, path, f"cannot be read as gzip ({e.strerror or e})") from None
    if len(payload) > n:
        raise _fail(relpath, path, f"decompresses to more than the {head + n} bytes its IDX header announces")
    return header + payload


def _load_idx(relpath: str, magic: int, shape: tuple[int, ...], root: str | os.PathLike[str] | None) -> np.ndarray:
    def load(path: Path) -> np.ndarray:
        data = _read_idx_gz(relpath, path, magic, shape)
        arr = _parse_idx(relpath, path, data, magic, shape)
        _check_digest(relpath, path, data)
        if magic == _IDX_LABELS_MAGIC and int(arr.max(initial=0)) > 9:
            raise _fail(relpath, path, f"label {int(arr.max())} outside 0..9")
        return arr  # frombuffer over bytes: read-only, so the cached copy cannot be modified

    return _cached(relpath, root, load)


def load_mnist(part: str, root: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The official MNIST "train" (60000) or "test" (10000) file pair, verified.

    Returns read-only uint8 arrays: images (N, 28, 28) with values 0..255, labels (N,) in 0..9."""
    if part not in MNIST_PARTS:
        raise OsttpError(f"MNIST part {part!r}; expected 'train' or 'test'")
    img_file, lab_file, n = MNIST_PARTS[part]
    images = _load_idx(img_file, _IDX_IMAGES_MAGIC, (n, 28, 28), root)
    labels = _load_idx(lab_file, _IDX_LABELS_MAGIC, (n,), root)
    return images, labels


# ---------------------------------------------------------------------------------------------
# JSB Chorales (JSON)


def _small_int(text: str) -> int:
    """JSON integers of a chorale file are MIDI notes: a literal of thousands of digits is refused
    before Python converts it (quadratic time, and a ValueError past 4300 digits)."""
    if len(text.lstrip("-")) > 18:
        raise ValueError(f"integer literal of {len(text)} characters")
    return int(text)


def _validate_jsb(path: Path, obj: Any) -> dict[str, list[list[list[int]]]]:
    rel = JSB_FILE
    if not isinstance(obj, dict) or set(obj) != set(JSB_SPLITS):
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise _fail(rel, path, f"wrong structure: top level must be an object with keys train, valid, test, got {keys}")
    for split in JSB_SPLITS:
        chorales = obj[split]
        if not isinstance(chorales, list) or not chorales:
            raise _fail(rel, path, f"wrong structure: {split} must be a non-empty list of chorales")
        for ci, chorale in enumerate(chorales):
            # two steps at least: input at t and target at t+1
            if not isinstance(chorale, list) or len(chorale) < 2:
                raise _fail(rel, path, f"wrong structure: {split} chorale {ci} must be a list of at least 2 time steps")
            for ti, step in enumerate(chorale):
                if not isinstance(step, list):
                    raise _fail(rel, path, f"wrong structure: {split} chorale {ci} step {ti} is not a list of notes")
                for note in step:
                    if isinstance(note, bool) or not isinstance(note, int):
                        raise _fail(rel, path, f"{split} chorale {ci} step {ti}: note {note!r} is not an integer")
                    if not NOTE_MIN <= note <= NOTE_MAX:
                        raise _fail(rel, path,
                                    f"{split} chorale {ci} step {ti}: note {note} outside MIDI {NOTE_MIN}..{NOTE_MAX}")
    return obj


def load_jsb(root: str | os.PathLike[str] | None = None) -> dict[str, list[list[list[int]]]]:
    """JSB Chorales, quarter notes, Boulanger-Lewandowski split: {"train"|"valid"|"test": chorales},
    each chorale a list of steps, each step a list of MIDI notes in 21..108. Verified and cached;
    treat the result as read-only."""

    def load(path: Path) -> dict[str, list[list[list[int]]]]:
        raw = _read(JSB_FILE, path)
        try:
            obj = json.loads(raw.decode("utf-8"), parse_int=_small_int)
        except UnicodeDecodeError as e:
            raise _fail(JSB_FILE, path, f"not valid JSON ({e})") from None
        except RecursionError:  # '[[[[...' nested deeper than any chorale file
            raise _fail(JSB_FILE, path, "not valid JSON (nested too deeply)") from None
        except ValueError as e:  # JSONDecodeError, or an integer literal too long (_small_int)
            raise _fail(JSB_FILE, path, f"not valid JSON ({e})") from None
        data = _validate_jsb(path, obj)
        _check_digest(JSB_FILE, path, raw)
        return data

    return _cached(JSB_FILE, root, load)


# ---------------------------------------------------------------------------------------------
# CLI helpers (osttp data check | path)


def _verify(relpath: str, root: str | os.PathLike[str] | None) -> None:
    if relpath == JSB_FILE:
        load_jsb(root)
        return
    for part, (img, lab, n) in MNIST_PARTS.items():
        if relpath == img:
            _load_idx(img, _IDX_IMAGES_MAGIC, (n, 28, 28), root)
            return
        if relpath == lab:
            _load_idx(lab, _IDX_LABELS_MAGIC, (n,), root)
            return
    raise KeyError(relpath)


class FileStatus(NamedTuple):
    """One dataset file: where it was found (None: in no searched folder) and why it does not verify
    (None: it does; for a missing file, where to get it)."""

    relpath: str
    path: Path | None
    problem: str | None


def search_dirs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for dataset files, in order (root alone when given)."""
    return _search(root)


def file_statuses(root: str | os.PathLike[str] | None = None) -> list[FileStatus]:
    """Every dataset file of FILES, located and verified."""
    out = []
    for relpath in FILES:
        try:
            path = locate(relpath, root)
        except DataError:
            out.append(FileStatus(relpath, None, _how_to_get(relpath)))
            continue
        try:
            _verify(relpath, root)
        except DataError as e:
            out.append(FileStatus(relpath, path, str(e)))
            continue
        out.append(FileStatus(relpath, path, None))
    return out
