"""The training loop's own per-batch checks, against the definition they replace."""
from __future__ import annotations

import pytest
import torch

import osttp
from osttp.experiment.loop import _params_finite


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_params_finite_finds_one_bad_entry_in_any_parameter(bad: float) -> None:
    net = osttp.Network.from_sizes([4, 5, 3], cell="ssnu", recurrent=True, seed=0)
    assert _params_finite(net)
    for name, p in net.named_parameters():
        for i in (0, p.numel() - 1):
            with torch.no_grad():
                kept = p.view(-1)[i].item()
                p.view(-1)[i] = bad
            assert not _params_finite(net), (name, i)
            assert _params_finite(net) == bool(all(torch.isfinite(q).all() for q in net.parameters()))
            with torch.no_grad():
                p.view(-1)[i] = kept
    assert _params_finite(net)
    with torch.no_grad():  # large but finite: still finite (a sum would overflow, the max does not)
        for p in net.parameters():
            p.fill_(3e38)
    assert _params_finite(net)
