"""The learning-rate schedule of training: linear warmup, linear decay, fitted to a time budget."""

from __future__ import annotations


class LinearSchedule:
    """Linear warmup then linear decay to zero at ``total``; ``total`` follows the time budget."""

    # Steps before the pace is trusted: the first ones include warm-up work and, on a shared
    # machine, whatever else briefly ran.
    MIN_STEPS = 100

    def __init__(self, total: int, warmup: int) -> None:
        self.planned = total
        self.total = total
        self.warmup = warmup

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / max(1, self.warmup)
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))

    def fit_budget(self, step: int, elapsed: float, budget: float) -> bool:
        """Set ``total`` to the steps that fit in ``budget`` seconds at the pace so far.

        A busy machine then still gets a fully annealed learning rate instead of being cut off
        at a high one. The estimate is redone on every call and may grow back up to the planned
        total (never past it), so a slow minute early on does not shorten the run for good.
        Returns True when ``total`` changed.
        """
        if step < self.MIN_STEPS or elapsed <= 0:
            return False
        projected = step + int((budget - elapsed) / (elapsed / step))
        new = max(step + 1, min(self.planned, projected))
        changed = new != self.total
        self.total = new
        return changed
