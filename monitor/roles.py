"""What a role is, and where each role's implementation lives.

A role (collector, worker, alerter) is built by ``build(ctx)`` in its module and then driven by
``monitor.app``: ``run(stop)`` loops until ``stop`` is set, then finishes the batch in hand,
flushes, commits and returns. ``ready()`` feeds /readyz.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry

from monitor.bus.base import Bus
from monitor.config import Config, Role
from monitor.errors import RoleUnavailable
from monitor.metrics import CoreMetrics

ROLE_MODULES: dict[str, str] = {
    "collector": "monitor.collect.role",
    "worker": "monitor.score.role",
    "alerter": "monitor.alerts.role",
}


@dataclass
class RoleContext:
    """Everything a role may use: injected, never global."""

    config: Config
    bus: Bus
    registry: CollectorRegistry
    reload: threading.Event = field(default_factory=threading.Event)
    config_path: Path | None = None
    #: Metrics shared by every stage (items, e2e latency, lag, dead letters); created on
    #: ``registry`` when not given. The daemon passes its own so each is registered once.
    core: CoreMetrics | None = None

    def __post_init__(self) -> None:
        if self.core is None:
            self.core = CoreMetrics.create(self.registry)

    @property
    def metrics(self) -> CoreMetrics:
        assert self.core is not None
        return self.core


class RoleRunner(Protocol):
    name: str

    def run(self, stop: threading.Event) -> None: ...

    def ready(self) -> bool: ...


class RoleFactory(Protocol):
    def __call__(self, ctx: RoleContext) -> RoleRunner: ...


def load_role(name: Role | str) -> RoleFactory:
    """The ``build`` function of role ``name``; :class:`RoleUnavailable` if this build lacks it."""
    module_name = ROLE_MODULES.get(name)
    if module_name is None:
        raise RoleUnavailable(f"unknown role {name!r}; roles: {', '.join(ROLE_MODULES)}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise RoleUnavailable(f"role {name!r} is not available in this build yet") from exc
    build: RoleFactory = module.build
    return build
