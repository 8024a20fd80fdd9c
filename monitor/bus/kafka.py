"""The Kafka backend of the bus contract (monitor/bus/base.py), on kafka-python 3.0.

* Topics are created with the configured partition count before anything produces to or
  subscribes to them (the broker's auto-create would use its own default, usually 1).
* The producer is idempotent (``enable_idempotence=True, acks="all"``) and batches: ``produce``
  only queues; :meth:`KafkaProducerAdapter.flush` waits for every queued record and raises
  :class:`BusError` if any of them failed, so :func:`monitor.bus.checkpoint` never commits
  offsets past a record Kafka did not acknowledge.
* Consumers are members of a classic consumer group (kafka-python does not speak KIP-848) with
  auto-commit off: offsets move only through :meth:`KafkaConsumerAdapter.commit`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTP
from kafka import codec as kafka_codec
from kafka import errors as kafka_errors
from kafka.structs import OffsetAndMetadata

from monitor.bus.base import Message, TopicPartition
from monitor.config import KafkaBusConfig
from monitor.errors import BusError, BusUnavailable, ConfigError
from monitor.logs import get_logger

log = get_logger("bus.kafka")

_CODEC_PACKAGES = {
    "gzip": (kafka_codec.has_gzip, "(built in)"),
    "snappy": (kafka_codec.has_snappy, "python-snappy"),
    "lz4": (kafka_codec.has_lz4, "lz4"),
    "zstd": (kafka_codec.has_zstd, "zstandard"),
}


def _client_options(config: KafkaBusConfig) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in config.bootstrap.split(",") if s.strip()],
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
        "request_timeout_ms": config.request_timeout_ms,
    }
    if config.sasl_mechanism is not None:
        opts["sasl_mechanism"] = config.sasl_mechanism
        opts["sasl_plain_username"] = config.sasl_username
        if config.sasl_password is not None:
            opts["sasl_plain_password"] = config.sasl_password.get_secret_value()
    return opts


def check_compression(config: KafkaBusConfig) -> str | None:
    """The kafka-python ``compression_type`` for the config; ConfigError if its codec is missing."""
    if config.compression == "none":
        return None
    available, package = _CODEC_PACKAGES[config.compression]
    if not available():
        raise ConfigError(
            [
                f"bus.kafka.compression: {config.compression!r} needs the Python package "
                f"{package!r}, which is not installed (pip install {package}, or choose another "
                "codec: none, gzip)"
            ]
        )
    return config.compression


class KafkaProducerAdapter:
    """An idempotent, batching producer. ``produce`` queues; ``flush`` is the durability point.

    Delivery is tracked per record *batch*, not per record: kafka-python completes one
    produce future per batch (its third value is a per-record error function when the batch
    failed), so holding those instead of 100k record futures keeps the garbage collector's work
    (measured: twice the GC time with record futures) off the hot path. Use one producer per
    thread, as the stages do.
    """

    def __init__(self, bus: KafkaBus, producer: KafkaProducer) -> None:
        self._bus = bus
        self._producer = producer
        self._batches: dict[Any, None] = {}  # produce futures of batches not yet checked
        self._failed = 0
        self._first_error: BaseException | None = None
        self._closed = False

    def produce(
        self, topic: str, key: bytes | str | None, value: bytes, timestamp_ms: int | None = None
    ) -> None:
        if topic not in self._bus._known_topics:
            self._bus.ensure_topics([topic])
        if isinstance(key, str):
            key = key.encode("utf-8")
        try:
            future = self._producer.send(topic, value=value, key=key, timestamp_ms=timestamp_ms)
        except (kafka_errors.KafkaError, TypeError, ValueError) as exc:
            # TypeError: a value or key that is not bytes; ValueError: a bad topic name.
            raise BusError(f"kafka: cannot queue a record for topic {topic!r}: {exc}") from exc
        if future.exception is not None:  # failed before it reached a batch (e.g. metadata)
            self._record_failure(future.exception)
            return
        self._batches[future._produce_future] = None

    def _record_failure(self, exc: BaseException) -> None:
        self._failed += 1
        if self._first_error is None:
            self._first_error = exc

    def _check_batches(self) -> int:
        """Record the failures among completed batches; return how many are still pending."""
        pending: dict[Any, None] = {}
        for batch in self._batches:
            if not batch.is_done:
                pending[batch] = None
                continue
            record_errors = batch.value[2] if batch.exception is None else None
            if batch.exception is not None:
                self._record_failure(batch.exception)
            elif record_errors is not None:
                self._record_failure(record_errors(0))
        self._batches = pending
        return len(pending)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is acknowledged (acks=all); BusError if any failed."""
        try:
            self._producer.flush(timeout=timeout)
        except kafka_errors.KafkaTimeoutError as exc:
            waiting = self._check_batches()
            raise BusError(
                f"kafka: flush timed out after {timeout}s with {waiting} record batch(es) not "
                f"yet acknowledged by {self._bus.bootstrap}"
            ) from exc
        if self._check_batches():  # flush returned, so none can be left: never call them sent
            self._record_failure(BusError("record batch still pending after flush"))
            self._batches = {}
        if self._failed:
            failed, first = self._failed, self._first_error
            self._failed, self._first_error = 0, None
            raise BusError(
                f"kafka: {failed} record batch(es) were not acknowledged by "
                f"{self._bus.bootstrap}; first error: {first}"
            ) from first

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._producer.close(timeout=self._bus.config.request_timeout_ms / 1000)


class KafkaConsumerAdapter:
    """A consumer-group member. Commits only when asked (auto-commit is off)."""

    def __init__(self, bus: KafkaBus, consumer: KafkaConsumer, group: str) -> None:
        self._bus = bus
        self._consumer = consumer
        self._group = group
        self._paused = False
        # Records fetched while waiting for an assignment (seek/lag need one): handed out first.
        self._buffer: list[Message] = []
        self._timeout_ms = bus.config.request_timeout_ms
        # Offset after the last record kafka-python gave us (handed out or buffered), per
        # (topic, partition): beside its position in diagnostics(), it tells records never fetched
        # from records fetched and lost. Keyed by tuple so the poll path formats no strings.
        self._delivered: dict[tuple[str, int], int] = {}

    # --- reading ------------------------------------------------------------------------------

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Message]:
        if self._paused:
            # Keep the membership alive (heartbeats, rebalances) without handing out records.
            # Only a partition assigned during this very poll can yield any: keep them.
            self._pause_assigned()
            self._buffer.extend(self._convert(self._raw_poll(timeout, max_records)))
            return []
        if self._buffer:
            out, self._buffer = self._buffer[:max_records], self._buffer[max_records:]
            return out
        return self._convert(self._raw_poll(timeout, max_records))

    def _raw_poll(self, timeout: float, max_records: int) -> dict[Any, list[Any]]:
        try:
            batch: dict[Any, list[Any]] = self._consumer.poll(
                timeout_ms=int(timeout * 1000), max_records=max_records
            )
        except kafka_errors.KafkaError as exc:
            raise BusError(f"kafka: poll failed for group {self._group!r}: {exc}") from exc
        self._recover_stranded_join()
        return batch

    def diagnostics(self) -> dict[str, Any]:
        """The group membership as kafka-python sees it, for error messages and debugging."""
        coordinator = self._consumer._coordinator
        task = getattr(coordinator, "_join_task", None)
        generation = getattr(coordinator, "_generation", None)
        return {
            "group": self._group,
            "state": str(getattr(coordinator, "state", "?")),
            "coordinator_id": getattr(coordinator, "coordinator_id", None),
            "generation": getattr(generation, "generation_id", None),
            "rejoin_needed": getattr(coordinator, "rejoin_needed", None),
            "join_task": None if task is None else ("done" if task.is_done else "running"),
            "assignment": sorted(f"{tp.topic}[{tp.partition}]" for tp in self.assignment()),
            "paused": self._paused,
            "buffered": len(self._buffer),
            "partitions": self._partition_states(),
        }

    def _partition_states(self) -> dict[str, dict[str, Any]]:
        """Why each owned partition is (not) being fetched: position, reset and validation flags."""
        out: dict[str, dict[str, Any]] = {}
        assignment = getattr(self._consumer._subscription, "assignment", {})
        now = time.monotonic()
        for tp, state in list(assignment.items()):
            retry = getattr(state, "next_allowed_retry_time", None)
            position = getattr(state, "position", None)
            out[f"{tp.topic}[{tp.partition}]"] = {
                "position": None if position is None else position.offset,
                "delivered_up_to": self._delivered.get((tp.topic, tp.partition)),
                "awaiting_reset": getattr(state, "awaiting_reset", None),
                "awaiting_validation": getattr(state, "awaiting_validation", None),
                "paused": getattr(state, "paused", None),
                "retry_in_s": None if retry is None else round(retry - now, 2),
                "leader": self._consumer._client.cluster.leader_for_partition(tp),
            }
        return out

    def _recover_stranded_join(self) -> None:
        """Work around a kafka-python 3.0.12 race that leaves a member without its assignment.

        When poll()'s timeout expires during a rejoin triggered by a metadata change, the
        JoinGroup/SyncGroup task finishes in the background, and as the leader it has already
        updated the snapshot that ``need_rejoin()`` compares: no later poll looks at the
        finished task, so its assignment is never applied. Seen as a member that stays stable
        with no partitions until the next rebalance. Asking for a rejoin recovers it.
        """
        coordinator = self._consumer._coordinator
        task = getattr(coordinator, "_join_task", None)
        if task is not None and task.is_done and not coordinator.need_rejoin():
            log.warning(
                "kafka-python dropped a finished group join; rejoining",
                extra={"group": self._group},
            )
            coordinator._join_task = None
            coordinator.request_rejoin()

    def _convert(self, batch: dict[Any, list[Any]]) -> list[Message]:
        out: list[Message] = []
        extend = out.extend
        for (topic, partition), records in batch.items():
            extend(
                [Message(topic, partition, r.offset, r.key, r.value, r.timestamp) for r in records]
            )
            if records:
                self._delivered[(topic, partition)] = records[-1].offset + 1
        return out

    def _ensure_assignment(self) -> set[KafkaTP]:
        """Join the group now if not yet a member (poll until assigned), keeping what it fetches."""
        assigned: set[KafkaTP] = self._consumer.assignment()
        deadline = time.monotonic() + max(30.0, self._timeout_ms / 1000)
        while not assigned:
            if time.monotonic() > deadline:
                raise BusError(
                    f"kafka: group {self._group!r} assigned no partitions to this member "
                    f"within {max(30.0, self._timeout_ms / 1000):.0f}s"
                )
            self._buffer.extend(self._convert(self._raw_poll(0.2, 500)))
            assigned = self._consumer.assignment()
        return assigned

    # --- offsets ------------------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit offsets of partitions this member owns; others are ignored and logged.

        The broker checks only the member's generation, not who owns a partition, so without
        this filter a member could overwrite the progress of a partition's current owner.
        """
        try:
            if offsets is None:
                self._consumer.commit(timeout_ms=self._timeout_ms)
                return
            owned = self._consumer.assignment()
            wanted: dict[KafkaTP, OffsetAndMetadata] = {}
            for tp, off in offsets.items():
                ktp = KafkaTP(tp.topic, tp.partition)
                if ktp in owned:
                    wanted[ktp] = OffsetAndMetadata(off, "", -1)
                else:
                    log.warning(
                        "commit ignored for a partition this member does not own",
                        extra={
                            "group": self._group,
                            "topic": tp.topic,
                            "partition": tp.partition,
                            "offset": off,
                        },
                    )
            if wanted:
                self._consumer.commit(wanted, timeout_ms=self._timeout_ms)
        except (
            kafka_errors.CommitFailedError,
            kafka_errors.RebalanceInProgressError,
            kafka_errors.IllegalGenerationError,
            kafka_errors.UnknownMemberIdError,
        ) as exc:
            # kafka-python has already reset the generation / requested a rejoin: the next
            # poll() rejoins, and the batch is redelivered to whoever owns the partitions now.
            raise BusError(
                f"kafka: commit for group {self._group!r} rejected because the group rebalanced "
                f"(this member's generation is no longer current); the uncommitted records will "
                f"be redelivered to their new owner and the next poll() rejoins the group: {exc}"
            ) from exc
        except kafka_errors.KafkaError as exc:
            raise BusError(f"kafka: commit for group {self._group!r} failed: {exc}") from exc

    def committed(self, tp: TopicPartition) -> int | None:
        try:
            value = self._consumer.committed(
                KafkaTP(tp.topic, tp.partition), timeout_ms=self._timeout_ms
            )
        except kafka_errors.KafkaError as exc:
            raise BusError(f"kafka: cannot read the committed offset of {tp}: {exc}") from exc
        return None if value is None else int(value)

    def seek_to_timestamp(self, timestamp_ms: int) -> None:
        assigned = self._ensure_assignment()
        try:
            found = self._consumer.offsets_for_times(
                {tp: max(0, timestamp_ms) for tp in assigned}, timeout_ms=self._timeout_ms
            )
        except kafka_errors.KafkaError as exc:
            raise BusError(f"kafka: offsets_for_times({timestamp_ms}) failed: {exc}") from exc
        to_end = []
        for tp in assigned:
            hit = found.get(tp)
            if hit is None:  # no record at or after the timestamp: nothing to replay here
                to_end.append(tp)
            else:
                self._consumer.seek(tp, hit.offset)
        if to_end:
            self._consumer.seek_to_end(*to_end)
        self._buffer.clear()

    def seek_to_beginning(self) -> None:
        self._ensure_assignment()
        self._consumer.seek_to_beginning()
        self._buffer.clear()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def lag(self) -> dict[TopicPartition, int]:
        assigned = list(self._consumer.assignment())
        if not assigned:
            return {}
        try:
            ends = self._consumer.end_offsets(assigned, timeout_ms=self._timeout_ms)
            out: dict[TopicPartition, int] = {}
            for tp in assigned:
                base = self._consumer.committed(tp, timeout_ms=self._timeout_ms)
                if base is None:
                    base = self._consumer.position(tp, timeout_ms=self._timeout_ms)
                out[TopicPartition(tp.topic, tp.partition)] = max(0, ends[tp] - (base or 0))
        except kafka_errors.KafkaError as exc:
            raise BusError(f"kafka: cannot compute lag for group {self._group!r}: {exc}") from exc
        return out

    # --- flow control -------------------------------------------------------------------------

    def _pause_assigned(self) -> None:
        # Newly assigned partitions (after a rebalance) start unpaused in kafka-python.
        fresh = self._consumer.assignment() - self._consumer.paused()
        if fresh:
            self._consumer.pause(*fresh)

    def pause(self) -> None:
        self._paused = True
        self._pause_assigned()

    def resume(self) -> None:
        self._paused = False
        paused = self._consumer.paused()
        if paused:
            self._consumer.resume(*paused)

    def close(self) -> None:
        # Leaves the group (fast rebalance for the others); never commits on its own.
        self._consumer.close(autocommit=False, timeout_ms=self._timeout_ms)


class KafkaBus:
    """The bus over one Kafka cluster."""

    kind = "kafka"

    def __init__(self, config: KafkaBusConfig, *, partitions: int = 3) -> None:
        self.config = config
        self.partitions_default = partitions
        self.bootstrap = config.bootstrap
        self._compression = check_compression(config)
        self._options = _client_options(config)
        self._admin_client: KafkaAdminClient | None = None
        self._meta_consumer: KafkaConsumer | None = None
        self._known_topics: set[str] = set()

    # --- clients ------------------------------------------------------------------------------

    def _admin(self) -> KafkaAdminClient:
        if self._admin_client is None:
            try:
                self._admin_client = KafkaAdminClient(
                    **self._options, bootstrap_timeout_ms=self.config.request_timeout_ms
                )
            except kafka_errors.KafkaError as exc:
                raise BusUnavailable(f"kafka: cannot reach {self.bootstrap}: {exc}") from exc
        return self._admin_client

    def _meta(self, bootstrap_timeout_ms: int | None = None) -> KafkaConsumer:
        if self._meta_consumer is None:
            try:
                self._meta_consumer = KafkaConsumer(
                    **self._options,
                    group_id=None,
                    enable_auto_commit=False,
                    allow_auto_create_topics=False,
                    bootstrap_timeout_ms=bootstrap_timeout_ms or self.config.request_timeout_ms,
                )
            except kafka_errors.KafkaError as exc:
                raise BusUnavailable(f"kafka: cannot reach {self.bootstrap}: {exc}") from exc
        return self._meta_consumer

    def producer(self) -> KafkaProducerAdapter:
        linger = self.config.linger_ms
        try:
            producer = KafkaProducer(
                **self._options,
                enable_idempotence=True,
                acks="all",
                compression_type=self._compression,
                linger_ms=linger,
                batch_size=self.config.batch_size,
                # A dead broker surfaces at flush() within one request timeout, not 2 minutes.
                delivery_timeout_ms=self.config.request_timeout_ms + linger,
                max_block_ms=self.config.request_timeout_ms,
                bootstrap_timeout_ms=self.config.request_timeout_ms,
            )
        except kafka_errors.KafkaError as exc:
            raise BusUnavailable(f"kafka: cannot reach {self.bootstrap}: {exc}") from exc
        return KafkaProducerAdapter(self, producer)

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        from_beginning: bool = True,
        max_poll_interval_s: float = 300.0,
    ) -> KafkaConsumerAdapter:
        self.ensure_topics(topics)
        session_ms = self.config.session_timeout_ms
        try:
            consumer = KafkaConsumer(
                **self._options,
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest" if from_beginning else "latest",
                allow_auto_create_topics=False,
                session_timeout_ms=session_ms,
                heartbeat_interval_ms=max(100, session_ms // 3),
                max_poll_interval_ms=int(max_poll_interval_s * 1000),
                bootstrap_timeout_ms=self.config.request_timeout_ms,
            )
            consumer.subscribe(list(topics))
            # Load the topics' metadata before the first JoinGroup. Otherwise the leader can
            # assign nothing, rejoin when the metadata arrives, and kafka-python 3.0.12 drops the
            # result of that rejoin if the caller's poll timeout expires meanwhile: the member
            # then stays "stable" with no partitions. _recover_stranded_join is the safety net.
            for topic in topics:
                consumer.partitions_for_topic(topic)
        except kafka_errors.KafkaError as exc:
            raise BusUnavailable(f"kafka: cannot reach {self.bootstrap}: {exc}") from exc
        return KafkaConsumerAdapter(self, consumer, group)

    # --- topics -------------------------------------------------------------------------------

    def ensure_topics(self, topics: Iterable[str], partitions: int | None = None) -> None:
        wanted = [t for t in dict.fromkeys(topics) if t not in self._known_topics]
        if not wanted:
            return
        count = partitions or self.partitions_default
        try:
            result = self._admin().create_topics(
                {t: {"num_partitions": count, "replication_factor": -1} for t in wanted},
                timeout_ms=self.config.request_timeout_ms,
                raise_errors=False,
            )
        except kafka_errors.KafkaError as exc:
            raise BusError(f"kafka: cannot create topics {wanted}: {exc}") from exc
        created = []
        for entry in result.get("topics", []):
            error = kafka_errors.for_code(entry.get("error_code", 0))
            if error is kafka_errors.NoError:
                created.append(entry["name"])
            elif error is not kafka_errors.TopicAlreadyExistsError:
                raise BusError(
                    f"kafka: cannot create topic {entry.get('name')!r} with {count} partitions: "
                    f"{error.__name__}: {entry.get('error_message') or ''}"
                )
        if created:
            try:
                # CreateTopics returns before every partition has a leader (KRaft propagates
                # asynchronously); producing or subscribing before that fails or stalls.
                self._admin().wait_for_topics(created, timeout_ms=self.config.request_timeout_ms)
            except kafka_errors.KafkaError as exc:
                raise BusError(f"kafka: topics {created} did not become ready: {exc}") from exc
            log.info("created topics", extra={"topics": created, "partitions": count})
        self._known_topics.update(wanted)

    def partitions(self, topic: str) -> list[int]:
        try:
            described = self._admin().describe_topics([topic])
        except kafka_errors.KafkaError as exc:
            raise BusError(f"kafka: cannot describe topic {topic!r}: {exc}") from exc
        for entry in described:
            if entry.get("name") == topic and entry.get("error_code", 0) == 0:
                return sorted(p["partition_index"] for p in entry.get("partitions", []))
        return []

    def end_offsets(self, topic: str) -> dict[int, int]:
        parts = self.partitions(topic)
        if not parts:
            return {}
        try:
            ends = self._meta().end_offsets(
                [KafkaTP(topic, p) for p in parts], timeout_ms=self.config.request_timeout_ms
            )
        except kafka_errors.KafkaError as exc:
            raise BusError(f"kafka: cannot read end offsets of {topic!r}: {exc}") from exc
        return {tp.partition: int(off) for tp, off in ends.items()}

    # --- health -------------------------------------------------------------------------------

    def ping(self, timeout: float = 2.0) -> bool:
        """True when a broker answers a metadata request within ``timeout`` seconds."""
        timeout_ms = max(1, int(timeout * 1000))
        try:
            self._meta(bootstrap_timeout_ms=timeout_ms).bootstrap(
                timeout_ms=timeout_ms, refresh=True
            )
        except (kafka_errors.KafkaError, BusUnavailable):
            return False
        return True

    def close(self) -> None:
        if self._meta_consumer is not None:
            self._meta_consumer.close(autocommit=False, timeout_ms=1000)
            self._meta_consumer = None
        if self._admin_client is not None:
            self._admin_client.close()
            self._admin_client = None
