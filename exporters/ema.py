"""Exponential moving average of a model's weights, evaluated beside the raw weights.

Validation scores of a small encoder swing by a point or more between neighbouring checkpoints;
the averaged weights are steadier and usually at least as good, so training scores both and keeps
whichever validates better.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """EMA of every floating-point tensor in ``model.state_dict()``.

    The effective decay ramps up as ``(1 + n) / (10 + n)`` so the average follows the early
    steps instead of staying near the pretrained weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {
            k: v.detach().clone()
            for k, v in model.state_dict().items()
            if v.dtype.is_floating_point
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1.0 - d)

    def state_dict_for(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state with the averaged tensors in place of the raw ones."""
        return {k: self.shadow.get(k, v).detach().clone() for k, v in model.state_dict().items()}

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Swap the averaged weights in for the duration of the block."""
        # load_state_dict copies into the parameters: the shadow is never aliased.
        raw = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(raw, strict=False)
