"""The weight average that training validates beside the raw weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from exporters.ema import WeightAverage


def test_average_trails_the_weights_and_swaps_back() -> None:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = WeightAverage(model, decay=0.9)
    for _ in range(200):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update(model)
    raw = model.weight.detach().clone()
    averaged = ema.shadow["weight"]
    # A linearly rising weight: the EMA lags it by about decay / (1 - decay) = 9 steps.
    assert torch.allclose(raw - averaged, torch.full_like(raw, 9.0), atol=0.5)
    with ema.applied(model):
        assert torch.equal(model.weight, averaged)
    assert torch.equal(model.weight, raw)


def test_early_updates_follow_the_weights_not_the_start() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = WeightAverage(model, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    # Warm-up decay (1 + 1) / (10 + 1): the first update moves most of the way.
    assert ema.shadow["weight"].item() == pytest.approx(9 / 11)


def test_decay_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(nn.Linear(1, 1), decay=1.0)
