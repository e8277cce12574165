"""The optional datasets of `osttp data check`: files only some tasks need, checked when present.

- SHD (shd/shd_{train,test}.h5): SHD's layout and values, 20 classes (no checksum is recorded);
- the spoken digits (spoken-digits/*.h5, 10 classes; spoken-digits-20/*.h5, 20 classes): layout and
  values, and each file's SHA-256 against the manifest.json written beside them by `osttp data make`;
- the FSDD recordings (fsdd/recordings/): the checksum listed in docs/data.md over every file.

An absent optional dataset is reported, not counted as a failure; a present one that does not
verify is.
"""
from __future__ import annotations

import json
from pathlib import Path

from osttp.errors import DataError
from osttp.tasks import data
from osttp.tasks.data import FileStatus, file_sha256

FSDD_DIR = "fsdd/recordings"


def _manifest_problem(relpath: str, path: Path) -> str | None:
    """Why a spoken-digit file disagrees with the manifest beside it (None: it agrees, or no manifest)."""
    manifest = path.parent / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        entry = json.loads(manifest.read_text()).get("files", {}).get(path.name)
    except (OSError, ValueError, AttributeError) as e:
        return f"{manifest} cannot be read as the converter's manifest ({type(e).__name__})"
    if not isinstance(entry, dict) or "sha256" not in entry:
        return f"{manifest} lists no SHA-256 for {path.name}"
    got = file_sha256(path)
    if got != entry["sha256"]:
        return f"SHA-256 is {got}, manifest.json says {entry['sha256']} (changed or damaged file; rebuild it)"
    return None


def _spike_file_status(relpath: str, root: str | None) -> FileStatus | None:
    from osttp.tasks.shd_file import load_spike_file

    try:
        path = data.locate(relpath, root)
    except DataError:
        return None
    n_classes = 20 if relpath.startswith(("shd/", "spoken-digits-20/")) else 10
    try:
        load_spike_file(relpath, n_classes, root)
    except DataError as e:
        return FileStatus(relpath, path, str(e))
    problem = _manifest_problem(relpath, path) if relpath.startswith(("spoken-digits/", "spoken-digits-20/")) else None
    return FileStatus(relpath, path, problem)


def _fsdd_status(root: str | None) -> FileStatus | None:
    from osttp.audio.fsdd import RECORDINGS_SHA256, recordings_digest

    for d in data.search_dirs(root):
        folder = d / FSDD_DIR
        if folder.is_dir():
            got = recordings_digest(folder)
            ok = got == RECORDINGS_SHA256
            return FileStatus(FSDD_DIR, folder, None if ok else
                              f"checksum of the recordings is {got}, expected {RECORDINGS_SHA256} "
                              "(FSDD at commit 26eb9aa; docs/data.md)")
    return None


def optional_statuses(root: str | None = None) -> tuple[list[FileStatus], list[str]]:
    """(statuses of the optional files found, relative paths of those absent)."""
    found, absent = [], []
    for relpath in data.OPTIONAL_FILES:
        st = _spike_file_status(relpath, root)
        (found.append(st) if st is not None else absent.append(relpath))
    st = _fsdd_status(root)
    (found.append(st) if st is not None else absent.append(FSDD_DIR + "/"))
    return found, absent
