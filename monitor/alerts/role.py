"""The ``alerter`` role: scored records in, alerts out to ``riskwire.alerts`` and the outbox.

One batch, in this order (each step is what makes a crash at any point safe):

1. poll scored records; decode each or send it to the DLQ;
2. evaluate rules in event time (see :mod:`monitor.alerts.engine`);
3. write the new alerts (marked "not yet produced") and their deliveries to the outbox store
   in one SQLite transaction (an alert id already there — a replay — is skipped), and wake the
   delivery workers and the publisher (:mod:`monitor.alerts.publish`), which produces outbox
   alerts to ``topics.alerts`` keyed by fingerprint from its own thread and marks them produced
   once flushed: neither delivery nor this loop waits for the bus;
4. at most every ``alerts.checkpoint_interval``: save the window state changed since the last
   checkpoint, then ``monitor.bus.checkpoint`` (flush what went to the DLQ, then commit offsets
   — last), so a crash replays the records since the previous checkpoint onto the state saved
   with it, and step 3 recognises the alerts it re-derives (same alert ids). Alerts a crash left
   unpublished are produced by the next publisher.

The delivery workers (:mod:`monitor.alerts.delivery`) run in threads beside this loop and drain
the outbox; they only read what step 3 committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from monitor.alerts.config import AlertsConfig, _AlertsDoc
from monitor.alerts.delivery import Deliverer
from monitor.alerts.engine import Engine
from monitor.alerts.metrics import AlertMetrics
from monitor.alerts.publish import Publisher
from monitor.alerts.routing import Router
from monitor.alerts.store import AlertStore
from monitor.bus import Consumer, Message, Producer, TopicPartition, checkpoint, next_offsets
from monitor.bus.dlq import decode_or_dead_letter
from monitor.errors import ConfigError
from monitor.lag import LagReporter
from monitor.logs import get_logger
from monitor.metrics import CoreMetrics
from monitor.records import Alert, ScoredItem
from monitor.roles import RoleContext

log = get_logger("alerts.role")
GROUP = "riskwire-alerter"
STAGE = "alerter"


class AlerterRole:
    name = "alerter"

    def __init__(
        self,
        ctx: RoleContext,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        max_records: int = 500,
    ) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.cfg: AlertsConfig = ctx.config.alerts
        self.clock = clock
        self.max_records = max_records
        self.metrics = AlertMetrics.create(ctx.registry)
        assert ctx.core is not None
        self.core: CoreMetrics = ctx.core
        self.store = AlertStore(self.cfg.outbox(self.config.data_dir))
        self.engine = self._engine(self.cfg)
        self.router = Router.from_config(self.cfg)
        self.deliverer = Deliverer.from_config(
            self.cfg,
            self.store,
            data_dir=self.config.data_dir,
            metrics=self.metrics,
            clock=clock,
            transport=transport,
        )
        self._ready = threading.Event()
        self._pruned_at = float("-inf")
        self._offsets: dict[TopicPartition, int] = {}
        self._dlq_pending = False
        self.publisher: Publisher | None = None
        self._checkpointed_at = time.monotonic()

    def _engine(self, cfg: AlertsConfig) -> Engine:
        # Disabled: records are still consumed and committed, no rule runs; the outbox drains.
        doc = cfg.effective if cfg.enabled else _AlertsDoc()
        return Engine(
            doc,
            state=self.store,
            watermark=self.store.watermark(),
            on_late=lambda rule: self.metrics.late_events.labels(rule=rule).inc(),
        )

    def ready(self) -> bool:
        return self._ready.is_set()

    def run(self, stop: threading.Event) -> None:
        topics = self.config.bus.topics
        bus = self.ctx.bus
        bus.ensure_topics([topics.scored, topics.alerts])
        consumer = bus.consumer(GROUP, [topics.scored])
        producer = bus.producer()
        lag = LagReporter(self.core.consumer_lag, GROUP, consumer)
        self.store.start_checkpointer()
        # Publishing once a second, not per batch: each bus flush is an fsync that holds the
        # embedded log's write lock, which our offset commits also need.
        self.publisher = Publisher(
            self.store,
            bus.producer(),
            topics.alerts,
            enabled=self.cfg.producer_topic,
            poll_interval=1.0,
        )
        self.publisher.start()  # first publishes what a crash may have left unpublished
        # An empty flush now: the embedded bus runs its periodic retention pass in a producer's
        # first flush, which can take seconds on a large log; better before we take traffic.
        producer.flush()
        self.deliverer.start()
        self._ready.set()
        log.info(
            "alerter started",
            extra={
                "rules": len(self.engine.rules),
                "receivers": sorted(self.deliverer.receivers),
                "outbox": str(self.store.path),
            },
        )
        try:
            while not stop.is_set():
                if self.ctx.reload.is_set():
                    self._reload()
                    self.ctx.reload.clear()
                msgs = consumer.poll(self.max_records, timeout=0.2)
                lag.maybe_report()
                self._maybe_prune()
                if msgs:
                    self.process(msgs, producer, consumer, force=False)
                else:
                    self.maybe_checkpoint(producer, consumer, force=False)
            self.maybe_checkpoint(producer, consumer, force=True)
        finally:
            self._ready.clear()
            self.publisher.stop(self.config.shutdown.grace_seconds / 4)
            self.deliverer.stop(self.config.shutdown.grace_seconds / 2)
            consumer.close()
            producer.close()
            self.store.close()

    def process(
        self, msgs: list[Message], producer: Producer, consumer: Consumer, *, force: bool = True
    ) -> list[Alert]:
        """One batch: evaluate, store (publish and deliver from there), checkpoint if due.

        The run loop passes ``force=False`` and checkpoints every ``checkpoint_interval``.
        """
        t0 = time.perf_counter()
        alerts: list[Alert] = []
        now = self.clock()
        for m in msgs:
            item = decode_or_dead_letter(
                m, ScoredItem.from_json, producer, STAGE, self.core.dead_letters
            )
            if item is None:
                self._dlq_pending = True
                continue
            alerts += self.engine.process(item)
            self.core.e2e_latency.labels(to_stage=STAGE).observe(
                max(0.0, now - item.fetched_at.timestamp())
            )
        self.core.items.labels(stage=STAGE).inc(len(msgs))
        self.metrics.records.inc(len(msgs))
        pairs = [(a, self.router.route(a)) for a in alerts]
        new = self.store.commit_batch(pairs, [], now=self.clock())
        if new:
            self.deliverer.wake()
        for a in new:
            self.metrics.alerts.labels(rule=a.rule, severity=a.severity, status=a.status).inc()
            log.info(
                "alert raised",
                extra={
                    "alert_id": a.id,
                    "fingerprint": a.fingerprint,
                    "rule": a.rule,
                    "entity": a.entity,
                    "status": a.status,
                },
            )
        self.metrics.eval_seconds.observe(time.perf_counter() - t0)
        for tp, off in next_offsets(msgs).items():
            self._offsets[tp] = max(off, self._offsets.get(tp, 0))
        self.maybe_checkpoint(producer, consumer, force=force)
        return new

    def maybe_checkpoint(self, producer: Producer, consumer: Consumer, *, force: bool) -> None:
        """Flush and commit (offsets last) at most every ``checkpoint_interval``, or now.

        Committing less often than every batch is safe: the outbox and window state are
        already durable and replaying records is idempotent; it saves two fsyncs per batch.
        """
        if not self._offsets:
            return
        now = time.monotonic()
        if not force and now - self._checkpointed_at < self.cfg.checkpoint_interval:
            return
        # Window state as of these offsets, then the bus; offsets last: see the docstring.
        self.store.commit_batch(
            [], self.engine.dirty_states(), now=self.clock(), watermark=self.engine.max_ts
        )
        # The producer only carries dead letters here; with none, skip its flush (an idle
        # embedded producer's flush may run a retention pass).
        checkpoint(producer if self._dlq_pending else None, consumer, dict(self._offsets))
        self._checkpointed_at = now
        self._offsets.clear()
        self._dlq_pending = False

    def _maybe_prune(self) -> None:
        now = self.clock()
        if now - self._pruned_at < 3600:
            return
        self._pruned_at = now
        n = self.store.prune(before=now - self.cfg.retention)
        if n:
            log.info("outbox pruned", extra={"deliveries": n})

    def _reload(self) -> None:
        """SIGHUP: re-read rules (and routing) from the config file; receivers stay as they are."""
        path = self.ctx.config_path
        if path is None:
            return
        from monitor.config import load_config

        try:
            cfg = load_config(path).alerts
        except ConfigError as exc:
            log.error("reload failed; keeping the current rules", extra={"error": str(exc)})
            return
        self.engine = self._engine(cfg)
        self.router = Router.from_config(cfg)
        log.info("rules reloaded", extra={"rules": len(self.engine.rules)})


def build(ctx: RoleContext) -> AlerterRole:
    return AlerterRole(ctx)
