"""The routing tree: which receivers get an alert, in which group, with which timings.

As in Alertmanager: the root matches every alert; children are tried in order and the first that
matches takes the alert (and its own children are tried in turn) unless it says ``continue: true``,
in which case later siblings are tried too. When no child matches, the node itself delivers.
Children inherit ``receiver``, ``group_by``, timings and ``fallback`` from their parent.
Matchers look at ``rule`` (also ``alertname``), ``severity``, ``entity``, ``status`` and labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from monitor.alerts.config import AlertsConfig, RouteConfig
from monitor.alerts.store import RouteTarget
from monitor.records import Alert

DEFAULT_FALLBACK_AFTER = 300.0


def alert_labels(alert: Alert) -> dict[str, str]:
    out = dict(alert.labels)
    out.update(
        alertname=alert.rule,
        rule=alert.rule,
        severity=alert.severity,
        status=alert.status,
        entity=alert.entity or "",
    )
    return out


@dataclass
class _Node:
    receiver: str
    match: dict[str, str]
    match_re: dict[str, re.Pattern[str]]
    cont: bool
    group_by: list[str]
    group_wait: float
    group_interval: float
    repeat_interval: float
    fallback: str | None
    fallback_after: float | None
    children: list[_Node] = field(default_factory=list)

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match.items()) and all(
            p.fullmatch(labels.get(k, "")) is not None for k, p in self.match_re.items()
        )


class Router:
    def __init__(self, root: _Node | None) -> None:
        self.root = root

    @classmethod
    def from_config(cls, cfg: AlertsConfig) -> Router:
        route = cfg.effective.route
        if route is None:
            return cls(None)
        return cls(
            _build(
                route,
                parent=None,
                defaults=(
                    cfg.group_by,
                    cfg.group_wait,
                    cfg.group_interval,
                    cfg.repeat_interval,
                ),
            )
        )

    def route(self, alert: Alert) -> list[RouteTarget]:
        if self.root is None:
            return []
        labels = alert_labels(alert)
        nodes: list[_Node] = []
        _walk(self.root, labels, nodes)
        out: list[RouteTarget] = []
        seen: set[str] = set()
        for n in nodes:
            if n.receiver in seen:
                continue
            seen.add(n.receiver)
            key = ",".join(f"{k}={labels.get(k, '')}" for k in n.group_by)
            out.append(
                RouteTarget(
                    receiver=n.receiver,
                    group_key=key or "*",
                    group_wait=n.group_wait,
                    group_interval=n.group_interval,
                    repeat_interval=n.repeat_interval,
                    fallback=n.fallback if n.fallback != n.receiver else None,
                    fallback_after=n.fallback_after,
                )
            )
        return out


def _walk(node: _Node, labels: dict[str, str], out: list[_Node]) -> None:
    hit = False
    for child in node.children:
        if child.matches(labels):
            _walk(child, labels, out)
            hit = True
            if not child.cont:
                break
    if not hit:
        out.append(node)


def _build(
    r: RouteConfig,
    parent: _Node | None,
    defaults: tuple[list[str], float, float, float],
) -> _Node:
    def pick(mine: float | None, theirs: float) -> float:
        return mine if mine is not None else theirs

    g_by, g_wait, g_int, rep = defaults
    receiver = r.receiver or (parent.receiver if parent else "")
    node = _Node(
        receiver=receiver,
        match=dict(r.match),
        match_re={k: re.compile(v) for k, v in r.match_re.items()},
        cont=r.continue_,
        group_by=list(
            r.group_by if r.group_by is not None else (parent.group_by if parent else g_by)
        ),
        group_wait=pick(r.group_wait, parent.group_wait if parent else g_wait),
        group_interval=pick(r.group_interval, parent.group_interval if parent else g_int),
        repeat_interval=pick(r.repeat_interval, parent.repeat_interval if parent else rep),
        fallback=r.fallback or (parent.fallback if parent else None),
        fallback_after=(
            r.fallback_after
            if r.fallback_after is not None
            else (parent.fallback_after if parent else DEFAULT_FALLBACK_AFTER)
        ),
    )
    node.children = [_build(c, node, defaults) for c in r.routes]
    return node
