"""A tonic dataset with a frame transform plugs into osttp's task interface (osttp.interop.tonic_task),
tested on a small event dataset generated here in tonic's format: per recording, a structured array of
(x, y, t, p) events written with numpy, read by a tonic.Dataset subclass as tonic's own datasets do."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from osttp import OsttpError
from interop_helpers import train_osttp
from osttp.interop import tonic_task

tonic = pytest.importorskip("tonic", reason="tonic interop needs the 'tonic' package (osttp[interop])")

SENSOR = (4, 4, 2)  # x, y, polarity


def _write_recordings(folder, n: int, seed: int) -> None:
    """Class c fires in column pair c of a 4x4 sensor (over 1000 us); lengths vary between recordings."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % 2
        k = int(rng.integers(20, 40))
        t = np.sort(rng.integers(0, int(rng.integers(600, 1000)), k))
        events = tonic.io.make_structured_array(rng.integers(2 * c, 2 * c + 2, k), rng.integers(0, 4, k), t,
                                                rng.integers(0, 2, k), dtype=tonic.io.events_struct)
        np.save(folder / f"{i:03d}_{c}.npy", events)


class EventFolder(tonic.Dataset):
    """Recordings saved as one .npy structured event array each; the class is in the file name."""

    sensor_size = SENSOR
    classes = ["left", "right"]

    def __init__(self, save_to, transform=None):
        super().__init__(str(save_to), transform=transform)
        self.files = sorted(Path(self.location_on_system).glob("*.npy"))

    def __getitem__(self, i):
        events = np.load(self.files[i])
        target = int(self.files[i].stem.split("_")[1])
        return (self.transform(events) if self.transform else events), target

    def __len__(self):
        return len(self.files)


@pytest.fixture()
def folder(tmp_path):
    _write_recordings(tmp_path / "EventFolder", 48, seed=0)
    return tmp_path


def test_frames_become_the_task_inputs(folder):
    frames = tonic.transforms.ToFrame(sensor_size=SENSOR, n_time_bins=8)
    data = EventFolder(folder, transform=frames)
    task = tonic_task(data, name="events", split="train")
    assert (len(task), task.n_in, task.n_out, task.T) == (48, 32, 2, 8)
    batch = next(iter(task.batches(5)))
    for b in range(5):
        f, target = data[b]
        assert torch.equal(batch.xs[:, b], torch.from_numpy(f.reshape(8, -1).astype(np.float32)))
        assert int(batch.ys[-1, b]) == target
    assert batch.mask[:, 0].tolist() == [0.0] * 7 + [1.0]  # label 'last'


def test_recordings_of_different_lengths_end_together(folder):
    frames = tonic.transforms.ToFrame(sensor_size=SENSOR, time_window=100)  # 6 to 10 frames each
    data = EventFolder(folder, transform=frames)
    task = tonic_task(data, split="valid", label="every")
    lengths = [data[i][0].shape[0] for i in range(len(data))]
    assert len(set(lengths)) > 1 and task.T == max(lengths)
    short = int(np.argmin(lengths))
    xs = task._make_batch(torch.tensor([short]), 0, 0, torch.float32).xs[:, 0]
    pad = task.T - lengths[short]
    assert float(xs[:pad].abs().sum()) == 0.0
    assert torch.equal(xs[pad:], torch.from_numpy(data[short][0].reshape(lengths[short], -1).astype(np.float32)))


def test_an_osttp_network_learns_the_event_task(folder):
    import osttp
    from osttp.evaluation import evaluate_model

    frames = tonic.transforms.ToFrame(sensor_size=SENSOR, n_time_bins=8)
    task = tonic_task(EventFolder(folder, transform=frames))
    net = osttp.Network.from_sizes([task.n_in, 16, task.n_out], cell="lif", seed=0)
    before = evaluate_model(net, task)["accuracy"]
    train_osttp(net, task, lr=1e-2, epochs=15, batch_size=16)
    after = evaluate_model(net, task)["accuracy"]
    assert after >= 0.9 and after > before, (before, after)


def test_raw_events_without_a_frame_transform_are_refused(folder):
    with pytest.raises(OsttpError, match="holds raw events .* give the dataset transform=tonic.transforms.ToFrame"):
        tonic_task(EventFolder(folder))


@pytest.mark.parametrize("items,kw,message", [
    ([(np.zeros((3, 4)), 0), (np.zeros((3, 5)), 1)], {"n_classes": 2}, "frames of different sizes \\[4, 5\\]"),
    ([(np.zeros((3, 4)), 2)], {"n_classes": 2}, "dataset item 0: class 2 outside \\[0, 2\\)"),
    ([(np.zeros((3, 4)), 0.5)], {"n_classes": 2}, "target 0.5; expected an integer class"),
    ([(np.zeros((3, 4)), 0)], {}, "list names no classes .*; pass n_classes"),
    ([np.zeros((3, 4))], {"n_classes": 2}, "dataset item 0 is a ndarray; expected \\(frames, target\\)"),
    ([], {"n_classes": 2}, "has no items"),
])
def test_bad_datasets_are_refused_in_one_line(items, kw, message):
    with pytest.raises(OsttpError, match=message):
        tonic_task(items, **kw)
