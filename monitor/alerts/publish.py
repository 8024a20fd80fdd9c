"""Publishes outbox alerts to ``riskwire.alerts`` from a thread and a producer of its own.

The outbox row is the durable record of an alert; the topic gets it from here, at least once:
rows are marked produced only after the bus acknowledged them (a flush), and whatever a crash
left unmarked is produced again by the next publisher. Keeping this off the consuming loop means
a slow bus flush (an fsync on a busy disk) delays neither rule evaluation nor delivery.
"""

from __future__ import annotations

import threading

from monitor.alerts.store import AlertStore
from monitor.bus.base import Producer
from monitor.errors import BusError
from monitor.logs import get_logger

log = get_logger("alerts.publish")


class Publisher:
    def __init__(
        self,
        store: AlertStore,
        producer: Producer,
        topic: str,
        *,
        enabled: bool = True,
        poll_interval: float = 0.5,
        batch: int = 500,
    ) -> None:
        self.store = store
        self.producer = producer
        self.topic = topic
        self.enabled = enabled
        self.poll_interval = poll_interval
        self.batch = batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def drain_once(self) -> int:
        """Produce up to ``batch`` unpublished alerts, flush, mark them; returns how many."""
        pending = self.store.unproduced(limit=self.batch)
        if not pending:
            return 0
        if self.enabled:
            for a in pending:
                self.producer.produce(self.topic, a.fingerprint, a.to_json())
            self.producer.flush()
        self.store.mark_produced([a.id for a in pending])
        return len(pending)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while self.drain_once() >= self.batch:
                    pass
            except BusError as exc:
                log.warning("publishing alerts failed; will retry", extra={"error": str(exc)})
                self._stop.wait(1.0)
            if self._wake.wait(self.poll_interval):
                self._wake.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="riskwire-alert-publisher")
        self._thread.daemon = True
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, then publish what is left (best effort: a restart does the rest)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            while self.drain_once() >= self.batch:
                pass
        except BusError as exc:
            log.warning("alerts left unpublished at shutdown", extra={"error": str(exc)})
        self.producer.close()
