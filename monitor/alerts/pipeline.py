"""The notify pipeline, after Alertmanager's.

inhibit -> silence -> per receiver {wait, dedup, retry, record}.

Every step is a :class:`Stage`: it takes the deliveries of one claimed group and returns those
that go on; a stage that stops one closes it in the store with a reason. ``wait`` is the outbox
itself (a group is claimed only once its ``not_before`` — group_wait, group_interval, a retry's
backoff — has passed); ``retry`` and ``record`` live in :mod:`monitor.alerts.delivery`, which
writes the notification log only after the receiver accepted the alert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from monitor.alerts.config import InhibitRule
from monitor.alerts.metrics import AlertMetrics
from monitor.alerts.routing import alert_labels
from monitor.alerts.store import AlertStore, Delivery, Silence
from monitor.logs import get_logger
from monitor.records import Alert

log = get_logger("alerts.pipeline")


class Stage(Protocol):
    def exec(self, now: float, deliveries: list[Delivery]) -> list[Delivery]: ...


class Muter(Protocol):
    """Silences and inhibitions: a reason when ``alert`` must not be sent now, else None."""

    def mutes(self, alert: Alert, now: float) -> str | None: ...

    def refresh(self, now: float) -> None:
        """Called once per claimed group before ``mutes``."""


class Silencer:
    """Active silences, read once per claimed group (``refresh``), not once per alert."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store
        self._active: list[Silence] = []

    def refresh(self, now: float) -> None:
        self._active = self.store.silences(now=now)

    def mutes(self, alert: Alert, now: float) -> str | None:
        for s in self._active:
            if s.active(now) and s.mutes(alert):
                return f"silenced by {s.id} until {s.ends_at:.0f}: {s.reason}"
        return None


class Inhibitor:
    """While a source alert fires (its fingerprint's latest alert is firing), targets wait."""

    def __init__(self, store: AlertStore, rules: Sequence[InhibitRule], horizon_s: float) -> None:
        self.store = store
        self.rules = list(rules)
        self.horizon_s = horizon_s

    def refresh(self, now: float) -> None:
        pass  # sources are read per target alert: they change with every batch

    def mutes(self, alert: Alert, now: float) -> str | None:
        if not self.rules or alert.status != "firing":
            return None
        labels = alert_labels(alert)
        targets = [r for r in self.rules if all(labels.get(k) == v for k, v in r.target.items())]
        if not targets:
            return None
        for source in self.store.recent_firing(now - self.horizon_s):
            if source.fingerprint == alert.fingerprint:
                continue
            sl = alert_labels(source)
            for r in targets:
                if all(sl.get(k) == v for k, v in r.source.items()) and all(
                    sl.get(k) == labels.get(k) for k in r.equal
                ):
                    return f"inhibited by {source.id} ({source.rule})"
        return None


class MuteStage:
    def __init__(
        self, muter: Muter, store: AlertStore, state: str, metrics: AlertMetrics | None
    ) -> None:
        self.muter = muter
        self.store = store
        self.state = state
        self.metrics = metrics

    def exec(self, now: float, deliveries: list[Delivery]) -> list[Delivery]:
        out = []
        self.muter.refresh(now)
        for d in deliveries:
            reason = self.muter.mutes(d.alert, now)
            if reason is None:
                out.append(d)
                continue
            self.store.mark_done(d, self.state, reason, now=now)
            log.info(
                "alert not sent",
                extra={"alert_id": d.alert.id, "receiver": d.receiver, "reason": reason},
            )
            if self.metrics is not None:
                self.metrics.silenced.labels(rule=d.alert.rule, reason=self.state).inc()
                self.metrics.deliveries.labels(receiver=d.receiver, outcome=self.state).inc()
        return out


class DedupStage:
    """Consults the notification log; says why an alert is sent, or why it is not."""

    def __init__(self, store: AlertStore, metrics: AlertMetrics | None) -> None:
        self.store = store
        self.metrics = metrics

    def reason(
        self, d: Delivery, now: float, local: dict[str, tuple[str, str, float]]
    ) -> tuple[bool, str]:
        a = d.alert
        last = local.get(a.fingerprint) or self.store.last_notified(d.receiver, a.fingerprint)
        if a.status == "resolved":
            if last is None or last[1] != "firing":
                return False, "resolved, but its firing was never notified"
            return True, "resolved"
        if last is None:
            return True, "first notification"
        if last[1] == "resolved":
            return True, "firing again after resolved"
        if now - last[2] >= d.route.repeat_interval:
            return True, "repeat interval elapsed"
        return False, f"within repeat interval ({d.route.repeat_interval:.0f}s) of {last[0]}"

    def exec(self, now: float, deliveries: list[Delivery]) -> list[Delivery]:
        out = []
        # The log is written only after a send, so alerts earlier in this same batch count as
        # notified for the ones after them.
        local: dict[str, tuple[str, str, float]] = {}
        for d in deliveries:
            send, why = self.reason(d, now, local)
            if send:
                local[d.alert.fingerprint] = (d.alert.id, d.alert.status, now)
                out.append(d)
                continue
            self.store.mark_done(d, "suppressed", why, now=now)
            log.debug(
                "alert suppressed",
                extra={"alert_id": d.alert.id, "receiver": d.receiver, "reason": why},
            )
            if self.metrics is not None:
                self.metrics.deliveries.labels(receiver=d.receiver, outcome="suppressed").inc()
        return out


def run_stages(stages: Sequence[Stage], now: float, deliveries: list[Delivery]) -> list[Delivery]:
    """MultiStage: each stage on what the previous one let through."""
    for stage in stages:
        if not deliveries:
            break
        deliveries = stage.exec(now, deliveries)
    return deliveries


def build_stages(
    store: AlertStore,
    inhibit_rules: Sequence[InhibitRule],
    *,
    horizon_s: float,
    metrics: AlertMetrics | None,
) -> list[Stage]:
    return [
        MuteStage(Inhibitor(store, inhibit_rules, horizon_s), store, "inhibited", metrics),
        MuteStage(Silencer(store), store, "silenced", metrics),
        DedupStage(store, metrics),
    ]


Clock = Callable[[], float]
