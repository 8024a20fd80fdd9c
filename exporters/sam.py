"""Sharpness-aware minimisation (Foret et al., 2021) for the fine-tuning loop.

A step's gradient is taken at the worst nearby weights, ``w + rho * g / ||g||``, instead of at
``w``; the optimizer then updates ``w`` with it. Minima the step settles in are flat across a
ball of radius ``rho``, and flat minima of fine-tuned encoders generalise better on small,
noisy data (Bahri et al., 2022). Each step pays a second forward and backward pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def ascended(params: Sequence[nn.Parameter], rho: float) -> Iterator[float]:
    """Move ``params`` a distance ``rho`` (L2, over all of them) along their current gradient.

    Inside the block the weights sit at the ascended point and their gradients are cleared for
    the second pass; on leaving, the original weights are copied back (bit for bit), keeping the
    gradients taken inside. Yields the norm of the first gradient.
    """
    if rho <= 0:
        raise ValueError(f"SAM radius rho must be > 0, not {rho}")
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        raise ValueError("SAM needs the gradient of a first backward pass; none is set")
    norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm(2) for p in with_grad])))  # type: ignore[union-attr]
    saved = [p.detach().clone() for p in with_grad]
    scale = rho / (norm + 1e-12)
    with torch.no_grad():
        for p in with_grad:
            p.add_(p.grad, alpha=scale)  # type: ignore[arg-type]
            p.grad = None
    try:
        yield norm
    finally:
        with torch.no_grad():
            for p, w in zip(with_grad, saved, strict=True):
                p.copy_(w)
