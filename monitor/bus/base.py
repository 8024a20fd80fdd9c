"""The bus contract: what every backend (embedded SQLite log, Kafka) provides.

Delivery is at-least-once. A consuming stage processes a batch, produces its outputs, and then
calls :func:`checkpoint`, which flushes the producer and only then commits the consumer's
offsets: a crash between the two re-delivers the batch, never loses it. Consumers must therefore
be idempotent (item ids, alert fingerprints).

Offsets follow Kafka's convention: a committed offset is the offset of the *next* record to read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, order=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return f"{topic}.dlq"


@runtime_checkable
class Producer(Protocol):
    def produce(
        self, topic: str, key: bytes | str | None, value: bytes, timestamp_ms: int | None = None
    ) -> None:
        """Queue one record stamped ``timestamp_ms`` (default: now).

        Kafka's time retention and time seeks use this stamp; collectors pass the fetch time.
        """

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued record is durably acknowledged; raise BusError otherwise."""

    def close(self) -> None: ...


@runtime_checkable
class Consumer(Protocol):
    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Message]:
        """Return up to ``max_records`` records, waiting at most ``timeout`` seconds for any."""

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (next offset to read), default: the position after the last poll."""

    def seek_to_timestamp(self, timestamp_ms: int) -> None:
        """Move every assigned partition to the first record at or after ``timestamp_ms``."""

    def seek_to_beginning(self) -> None: ...

    def assignment(self) -> set[TopicPartition]:
        """Partitions this member currently owns."""

    def committed(self, tp: TopicPartition) -> int | None: ...

    def lag(self) -> dict[TopicPartition, int]:
        """Per assigned partition: end offset minus committed offset (or position if none)."""

    def pause(self) -> None:
        """Stop fetching (backpressure) while staying a member of the group."""

    def resume(self) -> None: ...

    def close(self) -> None:
        """Leave the group. Does not commit: call :func:`checkpoint` first."""


@runtime_checkable
class Bus(Protocol):
    """A factory of producers and consumers over one log (one SQLite file or one Kafka cluster)."""

    kind: str

    def producer(self) -> Producer: ...

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        from_beginning: bool = True,
        max_poll_interval_s: float = 300.0,
    ) -> Consumer:
        """A member of consumer group ``group``; members of one group share the partitions.

        With no committed offset, a new group starts at the beginning (``from_beginning``) or at
        the end of each partition.
        """

    def ensure_topics(self, topics: Iterable[str], partitions: int | None = None) -> None:
        """Create missing topics with ``partitions`` partitions (default: the configured count)."""

    def partitions(self, topic: str) -> list[int]: ...

    def end_offsets(self, topic: str) -> dict[int, int]: ...

    def ping(self, timeout: float = 2.0) -> bool:
        """True when the bus answers (used by /readyz)."""

    def close(self) -> None: ...


def checkpoint(
    producer: Producer | None,
    consumer: Consumer,
    offsets: Mapping[TopicPartition, int] | None = None,
) -> None:
    """End a batch: 1. flush the producer, 2. commit the consumer's offsets — in that order.

    This is where the at-least-once guarantee is enforced: offsets are committed only once every
    record produced from the batch is acknowledged.
    """
    if producer is not None:
        producer.flush()
    consumer.commit(offsets)


def next_offsets(messages: Iterable[Message]) -> dict[TopicPartition, int]:
    """The offsets to commit after processing ``messages`` (highest offset + 1 per partition)."""
    out: dict[TopicPartition, int] = {}
    for m in messages:
        if m.offset + 1 > out.get(m.tp, -1):
            out[m.tp] = m.offset + 1
    return out
