"""Publishing news items to the raw topic: produce every record, then flush, under one lock.

Feeds are polled on several threads; one lock keeps each batch's produce+flush together so a
flush acknowledges exactly the batch that asked for it (a producer is not assumed thread-safe).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from monitor.bus.base import Producer
from monitor.records import NewsItem


class Publisher:
    def __init__(self, producer: Producer, topic: str, flush_timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self.flush_timeout_s = flush_timeout_s
        self._lock = threading.Lock()

    def publish(self, items: Sequence[NewsItem]) -> None:
        """Returns only once every item is durably on the bus; raises BusError otherwise."""
        if not items:
            return
        with self._lock:
            for item in items:
                ts = int(item.published_at.timestamp() * 1000)
                self.producer.produce(self.topic, item.key, item.to_json(), timestamp_ms=ts)
            self.producer.flush(self.flush_timeout_s)
