"""A tonic dataset (event recordings turned into frames by a tonic transform) as an osttp Task.

    import tonic
    frames = tonic.transforms.ToFrame(sensor_size=tonic.datasets.SHD.sensor_size, n_time_bins=100)
    train = tonic_task(tonic.datasets.SHD("data", train=True, transform=frames), split="train")

Any indexable dataset whose items are (frames, target) works: frames (T, ...) — per time bin, a count
per sensor cell and polarity, as tonic.transforms.ToFrame gives — and an integer class. Each frame is
flattened to one input vector, n_in = prod(frames.shape[1:]). Recordings with fewer frames (ToFrame with
time_window or event_count) are padded with empty frames at the start, so every sequence ends on its
last frame, where the class is read; zero input leaves osttp's zero initial states where they are.
The frames are built once and kept in memory (osttp's TensorClassTask), so the transform runs once.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from osttp.errors import OsttpError
from osttp.tasks.base import TensorClassTask, check_split, parse_label


def _frames(item: Any, i: int) -> tuple[np.ndarray, int]:
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise OsttpError(f"dataset item {i} is a {type(item).__name__}; expected (frames, target) from a tonic "
                         "dataset with a frame transform such as tonic.transforms.ToFrame")
    frames, target = item
    arr = np.asarray(frames)
    if arr.dtype.names is not None:
        raise OsttpError(f"dataset item {i} holds raw events (a structured array with fields {arr.dtype.names}); "
                         "expected frames: give the dataset transform=tonic.transforms.ToFrame(...)")
    if arr.ndim < 2 or arr.shape[0] == 0 or not np.issubdtype(arr.dtype, np.number):
        raise OsttpError(f"dataset item {i}: frames of shape {arr.shape} and dtype {arr.dtype}; expected numbers of "
                         "shape (T >= 1, ...): one frame per time bin")
    t = np.asarray(target)
    if t.shape != () or not np.issubdtype(t.dtype, np.integer):  # bools are not np.integer
        raise OsttpError(f"dataset item {i}: target {target!r}; expected an integer class")
    return arr.reshape(arr.shape[0], -1).astype(np.float32), int(t)


def _n_classes(dataset: Any, n_classes: int | None) -> int:
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise OsttpError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        return n_classes
    classes = getattr(dataset, "classes", None)
    if classes is None or len(classes) < 2:
        raise OsttpError(f"{type(dataset).__name__} names no classes (tonic datasets have .classes); pass n_classes")
    return len(classes)


def tonic_task(dataset: Any, *, name: str = "tonic", split: str = "train", n_classes: int | None = None,
               label: Any = "last", limit: int | None = None) -> TensorClassTask:
    """The first `limit` items (all: None) of `dataset` as a classification task.

    label: which steps are supervised ('last', 'every', 'from:k', k: tasks.base.parse_label); the
    default 'last' reads the class at the end of each recording."""
    split = check_split(split)
    C = _n_classes(dataset, n_classes)
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n < 1:
        raise OsttpError(f"{type(dataset).__name__} has no items; expected at least one recording")
    items = [_frames(dataset[i], i) for i in range(n)]
    widths = {f.shape[1] for f, _ in items}
    if len(widths) != 1:
        raise OsttpError(f"frames of different sizes {sorted(widths)}; give ToFrame a fixed sensor_size")
    labels = np.array([t for _, t in items], dtype=np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= C))
    if bad.size:
        raise OsttpError(f"dataset item {int(bad[0])}: class {int(labels[bad[0]])} outside [0, {C})")
    T = max(f.shape[0] for f, _ in items)
    xs = np.zeros((n, T, widths.pop()), dtype=np.float32)
    for k, (f, _) in enumerate(items):
        xs[k, T - f.shape[0]:] = f  # empty frames first: every recording ends at step T - 1
    first, spec = parse_label(name, label, T)
    mask = (torch.arange(T) >= first).to(torch.float32)
    params = {"label": spec, "limit": limit, "n_classes": C}
    return TensorClassTask(name, split, params, torch.from_numpy(xs), torch.from_numpy(labels), mask, C)
