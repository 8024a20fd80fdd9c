"""Exponential backoff with jitter, up to a ceiling, forever: a failing feed is never abandoned."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_s: float = 60.0
    ceiling_s: float = 3600.0
    jitter: float = 0.5

    def delay(self, failures: int, u: float) -> float:
        """Delay after ``failures`` consecutive failures (>= 1); ``u`` is uniform in [0, 1).

        ``base * 2**(failures-1)``, capped at the ceiling, then reduced by up to ``jitter`` of
        itself so that feeds failing together (one host down) do not retry in lockstep.
        """
        if failures <= 0:
            return 0.0
        exp = min(failures - 1, 62)
        full = min(self.ceiling_s, self.base_s * float(2**exp))
        return full * (1.0 - self.jitter * u)
