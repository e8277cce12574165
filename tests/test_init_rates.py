"""Every shipped config starts with hidden layers that fire at a sensible rate on real batches of
its task, and the calibration that
gets them there is deterministic and does what it says."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import osttp
from osttp.calibration import calibrate_firing, firing_rates
from osttp.experiment import config as C
from osttp.experiment.build import prepare
from osttp.experiment.tomlio import read_toml

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_fire_between_1_and_50_percent_at_init(path: Path) -> None:
    cfg = C.resolve((C.defaults(), "defaults"), (read_toml(path), str(path)))
    cfg["train"]["rule"] = cfg["train"]["rule"] or "bptt"
    try:
        setup = prepare(cfg)
    except osttp.DataError as e:
        pytest.skip(str(e))
    if not osttp.cells.CELLS.get(setup.net.config["cell"]).meta["spiking"]:
        pytest.skip(f"{setup.net.config['cell']} does not spike")
    train = setup.tasks["train"]
    batch = next(iter(train.batches(64, shuffle=True, seed=123, dtype=setup.dtype)))  # not the calibration batch
    for l, rate in enumerate(firing_rates(setup.net, batch.xs)):
        assert 0.01 <= rate <= 0.5, f"{path.name}: layer {l} fires on {rate:.1%} of its units per step"


def test_calibration_reaches_the_rate_and_is_deterministic() -> None:
    g = torch.Generator().manual_seed(0)
    xs = (torch.rand(20, 32, 10, generator=g) < 0.1).to(torch.float32)
    rates = {}
    for target in (0.05, 0.2):
        nets = [osttp.Network.from_sizes([10, 40, 30, 3], cell="lif", recurrent=True, seed=4) for _ in range(2)]
        gains = [calibrate_firing(n, xs, rate=target) for n in nets]
        assert gains[0] == gains[1] and torch.equal(nets[0].layers[1].W, nets[1].layers[1].W)
        rates[target] = firing_rates(nets[0], xs)
        assert all(abs(r - target) < 0.02 for r in rates[target]), rates
    before = firing_rates(osttp.Network.from_sizes([10, 40, 30, 3], cell="lif", recurrent=True, seed=4), xs)
    assert min(before) < 0.01  # uncalibrated, the deeper layer is nearly silent on these sparse inputs
    with pytest.raises(osttp.OsttpError, match="rate"):
        calibrate_firing(nets[0], xs, rate=1.5)
    rnn = osttp.Network.from_sizes([10, 5, 3], cell="rnn")
    assert calibrate_firing(rnn, xs) == [1.0]  # non-spiking layers are left alone
