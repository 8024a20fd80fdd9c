"""The ``worker`` role: score raw news into the scored topic (see monitor.score.worker)."""

from __future__ import annotations

from monitor.roles import RoleContext, RoleRunner
from monitor.score.worker import Worker


def build(ctx: RoleContext) -> RoleRunner:
    return Worker(ctx)
