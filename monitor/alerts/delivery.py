"""Delivery workers: drain the outbox to receivers, retry with backoff, dead-letter what cannot go.

Each receiver has ``concurrency`` worker threads. A worker claims one due group (a lease in the
store), runs the pipeline stages (inhibit, silence, dedup), sends what is left, and records each
alert as sent the moment its receiver accepted it. On a retryable failure (timeout, connection
error, 408, 429, 5xx) the rest of the group is rescheduled after ``backoff`` (exponential, with
jitter, at least the ``Retry-After`` asked for) until the delivery is ``max_age`` old; then, or
at once on a final failure (another 4xx), it becomes a dead letter. A route's ``fallback``
receiver gets the alert too once the primary has failed for ``fallback_after`` or gave up.
A failing attempt is logged when its error differs from the previous attempt's.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from monitor.alerts.config import AlertsConfig
from monitor.alerts.metrics import AlertMetrics
from monitor.alerts.notifiers import Notifier, NotifyError, build_notifier
from monitor.alerts.pipeline import Stage, build_stages, run_stages
from monitor.alerts.store import AlertStore, Delivery, RouteTarget
from monitor.logs import get_logger
from monitor.records import Alert

log = get_logger("alerts.delivery")


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before attempt ``attempt + 1``: base * 2^(attempt-1), capped, half jittered."""
        d: float = min(self.cap, self.base * (2.0 ** max(0, attempt - 1)))
        d = d / 2 + self.rng.random() * d / 2
        if retry_after is not None:
            d = max(d, retry_after)
        return d


@dataclass
class ReceiverSpec:
    name: str
    notifier: Notifier
    concurrency: int
    max_age: float
    client: httpx.Client | None = None


class Deliverer:
    """Runs the delivery workers of every receiver until ``stop`` is set."""

    def __init__(
        self,
        store: AlertStore,
        receivers: Sequence[ReceiverSpec],
        *,
        stages: Sequence[Stage],
        backoff: Backoff,
        lease_s: float,
        poll_interval: float,
        metrics: AlertMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.receivers = {r.name: r for r in receivers}
        self.stages = list(stages)
        self.backoff = backoff
        self.lease_s = lease_s
        self.poll_interval = poll_interval
        self.metrics = metrics
        self.clock = clock
        self.owner = uuid.uuid4().hex[:12]
        self._wake: dict[str, threading.Event] = {n: threading.Event() for n in self.receivers}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._depth_at = float("-inf")

    @classmethod
    def from_config(
        cls,
        cfg: AlertsConfig,
        store: AlertStore,
        *,
        data_dir: Path,
        metrics: AlertMetrics | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> Deliverer:
        d = cfg.delivery
        specs = []
        for r in cfg.effective.receivers:
            notifier, client = build_notifier(
                r, data_dir=data_dir, timeout_s=d.timeout_s, transport=transport
            )
            specs.append(
                ReceiverSpec(
                    name=r.name,
                    notifier=notifier,
                    concurrency=r.concurrency or d.concurrency,
                    max_age=r.max_age or d.max_age,
                    client=client,
                )
            )
        longest = max([r.timeout_s or d.timeout_s for r in cfg.effective.receivers] or [1.0])
        return cls(
            store,
            specs,
            stages=build_stages(
                store, cfg.effective.inhibit_rules, horizon_s=cfg.repeat_interval, metrics=metrics
            ),
            backoff=Backoff(d.backoff_base, d.backoff_max, rng or random.Random()),
            lease_s=d.lease if d.lease is not None else longest * 2 + 5,
            poll_interval=d.poll_interval,
            metrics=metrics,
            clock=clock,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for spec in self.receivers.values():
            for i in range(spec.concurrency):
                t = threading.Thread(
                    target=self._worker,
                    args=(spec,),
                    name=f"riskwire-deliver-{spec.name}-{i}",
                    daemon=True,
                )
                t.start()
                self._threads.append(t)

    def wake(self) -> None:
        """New rows are in the outbox: let idle workers look now."""
        for ev in self._wake.values():
            ev.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        left = [t.name for t in self._threads if t.is_alive()]
        if left:
            log.warning("delivery workers still busy at shutdown", extra={"threads": left})
        for spec in self.receivers.values():
            if spec.client is not None:
                spec.client.close()

    # --- work --------------------------------------------------------------------------------

    def _worker(self, spec: ReceiverSpec) -> None:
        owner = f"{self.owner}-{threading.get_ident()}"
        wake = self._wake[spec.name]
        while not self._stop.is_set():
            try:
                did = self.step(spec.name, owner=owner)
            except Exception:  # a worker must not die: log, back off, go on
                log.exception("delivery worker error", extra={"receiver": spec.name})
                did = False
                self._stop.wait(self.poll_interval)
            if not did and wake.wait(self._idle_wait(spec.name)):
                wake.clear()

    def _idle_wait(self, receiver: str) -> float:
        due = self.store.next_due(receiver)
        if due is None:
            return self.poll_interval
        return min(self.poll_interval, max(0.001, due - self.clock()))

    def step(self, receiver: str, *, owner: str | None = None) -> bool:
        """Claim and process one due group of ``receiver``; False when none was due."""
        owner = owner or self.owner
        spec = self.receivers[receiver]
        now = self.clock()
        batch = self.store.claim(receiver, now=now, lease_s=self.lease_s, owner=owner)
        if batch is None:
            return False
        group_key = batch[0].group_key if batch else ""
        flushed: float | None = None
        released = False
        try:
            todo = run_stages(self.stages, now, batch)
            if todo:
                flushed, released = self._send(spec, todo, owner)
        finally:
            if not released:
                self.store.release(receiver, group_key, owner, flushed_at=flushed)
        self._report_depth()
        return True

    def _report_depth(self) -> None:
        now = time.monotonic()
        if self.metrics is None or now - self._depth_at < 1.0:
            return
        self._depth_at = now
        for name, n in self.store.depth_all(list(self.receivers)).items():
            self.metrics.outbox_depth.labels(receiver=name).set(n)

    def _send(
        self, spec: ReceiverSpec, todo: list[Delivery], owner: str
    ) -> tuple[float | None, bool]:
        """Send; returns (flush time or None, whether the group's lease is already released)."""
        by_id = {d.alert.id: d for d in todo}
        sent: set[str] = set()
        start = self.clock()
        last = todo[-1].alert.id

        def on_sent(alert: Alert) -> None:
            d = by_id[alert.id]
            now = self.clock()
            # The last one of the group also releases the lease, in the same transaction.
            self.store.mark_sent(
                d,
                now=now,
                owner=owner,
                lease_s=self.lease_s,
                release_flushed_at=start if alert.id == last else None,
            )
            sent.add(alert.id)
            log.info(
                "alert delivered",
                extra={
                    "alert_id": alert.id,
                    "receiver": d.receiver,
                    "attempt": d.attempts + 1,
                    "fingerprint": alert.fingerprint,
                },
            )
            if self.metrics is not None:
                self.metrics.deliveries.labels(receiver=d.receiver, outcome="sent").inc()
                self.metrics.delivery_latency.labels(receiver=d.receiver).observe(
                    max(0.0, now - d.created_at)
                )

        retry, err = spec.notifier.notify([d.alert for d in todo], on_sent)
        if err is None or last in sent:
            return start, last in sent
        left = [d for d in todo if d.alert.id not in sent]
        now = self.clock()
        # A per-alert notifier (the generic webhook) failed on the first unsent alert; the ones
        # after it were not tried and simply stay due. A group notifier failed for all.
        failed = left[:1] if getattr(spec.notifier, "per_alert", False) and not retry else left
        # One delay for the whole group, so its rows stay due together and in order.
        delay = self.backoff.delay(max(d.attempts for d in failed) + 1, err.retry_after)
        for d in failed:
            self._failed(spec, d, retry, err, now, delay)
        return (start if sent else None), False

    def _failed(
        self,
        spec: ReceiverSpec,
        d: Delivery,
        retry: bool,
        err: NotifyError,
        now: float,
        delay: float,
    ) -> None:
        attempts = d.attempts + 1
        age = now - d.created_at
        msg = str(err)
        extra = {
            "alert_id": d.alert.id,
            "receiver": d.receiver,
            "attempt": attempts,
            "error": msg,
            "status": err.status,
        }
        if not retry or age >= spec.max_age:
            reason = msg if not retry else f"gave up after {attempts} attempts in {age:.0f}s: {msg}"
            self.store.mark_done(d, "dead", reason, now=now)
            log.error("alert dead-lettered", extra={**extra, "reason": reason})
            if self.metrics is not None:
                self.metrics.deliveries.labels(receiver=d.receiver, outcome="dead").inc()
                self.metrics.dead_letters.labels(receiver=d.receiver).inc()
            self._fallback(d, now)
            return
        self.store.mark_retry(d, msg, now=now, not_before=now + delay)
        if msg != d.last_error:
            log.warning("delivery failed, will retry", extra={**extra, "retry_in_s": delay})
        if self.metrics is not None:
            self.metrics.deliveries.labels(receiver=d.receiver, outcome="retry").inc()
        first = d.first_error_at if d.first_error_at is not None else now
        after = d.route.fallback_after
        if after is not None and now - first >= after:
            self._fallback(d, now)

    def _fallback(self, d: Delivery, now: float) -> None:
        fb = d.route.fallback
        if fb is None or d.fallback_done or fb == d.receiver or fb not in self.receivers:
            return
        target = RouteTarget(
            receiver=fb,
            group_key=d.group_key,
            group_wait=0.0,
            group_interval=0.0,
            repeat_interval=d.route.repeat_interval,
        )
        self.store.hand_to(d, target, now=now)
        log.warning(
            "alert handed to fallback receiver",
            extra={"alert_id": d.alert.id, "receiver": d.receiver, "fallback": fb},
        )
        self._wake[fb].set()
