"""Publishing news items to the raw topic, with group commit.

Feeds are polled on several threads and each poll must know that its items are durable before it
writes them to the seen-set. A flush per poll would serialise every poll behind one fsync, so
polls share flushes: each poll produces its records and takes a sequence number; whoever gets
the flush lock flushes everything produced so far, and a poll whose number is already covered
by a finished flush returns without flushing again. ``publish`` still returns only once the
caller's records are acknowledged (or raises BusError, and the caller retries later).

A record is stamped with the item's fetch time, not its publication time. Kafka's time
retention deletes a log segment once its newest timestamp is older than ``retention.ms``: stamped
with the event time, a first poll that backfills a feed's month-old entries would be deleted at
the broker's next retention check, possibly before any worker read it. Brokers may also reject
timestamps far from their clock (``log.message.timestamp.before/after.max.ms``). The event time
travels in the record itself; replay by time range filters on it (monitor/replay/readers.py).
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
        self._seq_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._produced = 0
        self._flushed = 0
        self.flushes = 0

    def publish(self, items: Sequence[NewsItem]) -> None:
        """Returns only once every item is durably on the bus; raises BusError otherwise."""
        if not items:
            return
        with self._seq_lock:
            for item in items:
                ts = int(item.fetched_at.timestamp() * 1000)
                self.producer.produce(self.topic, item.key, item.to_json(), timestamp_ms=ts)
            self._produced += 1
            seq = self._produced
        with self._flush_lock:
            if self._flushed >= seq:
                return  # a flush that started after our produce has already finished
            with self._seq_lock:
                target = self._produced
            self.producer.flush(self.flush_timeout_s)
            self.flushes += 1
            self._flushed = target
