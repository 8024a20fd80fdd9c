"""Kafka-only behaviour of KafkaBus against a real broker (the shared contract: test_contract)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from kafka import codec as kafka_codec

from monitor.bus.base import Message, TopicPartition, next_offsets
from monitor.bus.kafka import KafkaBus
from monitor.config import KafkaBusConfig
from monitor.errors import BusError, ConfigError

pytestmark = pytest.mark.kafka


def _name(prefix: str) -> str:
    return f"t.{prefix}.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_bus(kafka_bootstrap: str) -> Iterator[Any]:
    made: list[KafkaBus] = []

    def make(partitions: int = 3, **options: Any) -> KafkaBus:
        bus = KafkaBus(KafkaBusConfig(bootstrap=kafka_bootstrap, **options), partitions=partitions)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.close()


def _consume(consumer: Any, n: int, timeout: float = 60.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)} of {n} records within {timeout}s"
        got.extend(consumer.poll(500, 0.2))
    return got


def test_topics_get_the_configured_partition_count(make_bus: Any) -> None:
    bus = make_bus(partitions=4)
    explicit, implicit, custom = _name("parts"), _name("parts"), _name("parts")
    bus.ensure_topics([explicit])
    assert bus.partitions(explicit) == [0, 1, 2, 3]
    # Producing to a topic nobody created yet creates it with the configured count too, not
    # with the broker's num.partitions=1.
    prod = bus.producer()
    try:
        prod.produce(implicit, "k", b"v")
        prod.flush()
    finally:
        prod.close()
    assert bus.partitions(implicit) == [0, 1, 2, 3]
    bus.ensure_topics([custom], partitions=2)
    assert bus.partitions(custom) == [0, 1]
    # Existing topics are left alone (TopicAlreadyExists is not an error).
    make_bus(partitions=6).ensure_topics([explicit])
    assert bus.partitions(explicit) == [0, 1, 2, 3]


def test_gzip_round_trip(make_bus: Any) -> None:
    bus = make_bus(compression="gzip")
    topic = _name("gzip")
    prod = bus.producer()
    assert prod._producer.config["compression_type"] == "gzip"
    values = [(f"record {i} " * 50).encode() for i in range(300)]
    try:
        for i, v in enumerate(values):
            prod.produce(topic, f"k{i}", v)
        prod.flush()
    finally:
        prod.close()
    cons = bus.consumer(_name("g"), [topic])
    try:
        got = _consume(cons, len(values))
    finally:
        cons.close()
    assert sorted(m.value for m in got) == sorted(values)
    assert {m.key for m in got} == {f"k{i}".encode() for i in range(300)}


def test_a_codec_without_its_library_is_a_config_error(kafka_bootstrap: str) -> None:
    missing = [
        name
        for name, present in (
            ("snappy", kafka_codec.has_snappy),
            ("lz4", kafka_codec.has_lz4),
            ("zstd", kafka_codec.has_zstd),
        )
        if not present()
    ]
    if not missing:
        pytest.skip("every compression library is installed")
    with pytest.raises(ConfigError, match="bus.kafka.compression") as info:
        KafkaBus(KafkaBusConfig(bootstrap=kafka_bootstrap, compression=missing[0]))  # type: ignore[arg-type]
    assert missing[0] in str(info.value)


def test_producer_is_idempotent_with_acks_all(make_bus: Any) -> None:
    bus = make_bus()
    prod = bus.producer()
    try:
        config = prod._producer.config
        assert config["enable_idempotence"] is True
        assert config["acks"] == -1  # "all"
        prod.produce(_name("idem"), "k", b"v")
        prod.flush()
        # The broker handed this producer an id: idempotent writes are really in use.
        pid = prod._producer._transaction_manager.producer_id_and_epoch
        assert pid.producer_id >= 0
    finally:
        prod.close()


@pytest.mark.slow
def test_flush_raises_when_the_broker_is_gone(tmp_path: Path, local_kafka: ModuleType) -> None:
    broker = local_kafka.start_broker(tmp_path / "private", 0)
    bus = KafkaBus(KafkaBusConfig(bootstrap=broker.bootstrap, request_timeout_ms=2000))
    prod = None
    try:
        topic = _name("gone")
        prod = bus.producer()
        prod.produce(topic, "k", b"before")
        prod.flush()
        assert bus.ping()
        broker.stop()
        assert not bus.ping(timeout=1.0)
        for i in range(10):
            prod.produce(topic, f"k{i}", b"after")
        started = time.monotonic()
        with pytest.raises(BusError, match="not acknowledged"):
            prod.flush()
        assert time.monotonic() - started < 30
        prod.flush()  # the failures were reported once; nothing is left queued
    finally:
        if prod is not None:
            prod.close()
        bus.close()
        broker.stop()


@pytest.mark.slow
def test_commit_after_losing_the_group_is_a_bus_error_and_poll_goes_on(make_bus: Any) -> None:
    bus = make_bus(partitions=1, session_timeout_ms=3000)
    topic, group = _name("gen"), _name("g")
    tp = TopicPartition(topic, 0)
    prod = bus.producer()
    for i in range(20):
        prod.produce(topic, None, f"{i}".encode())
    prod.flush()
    prod.close()
    # A short max.poll.interval: a member that stops polling is dropped from the group.
    first = bus.consumer(group, [topic], max_poll_interval_s=2.0)
    second = bus.consumer(group, [topic], max_poll_interval_s=2.0)
    try:
        got = _consume(first, 20)
        first.commit(next_offsets(got[:5]))
        # The second member takes over once the first is dropped (it does not poll meanwhile).
        deadline = time.monotonic() + 60
        taken: list[Message] = []
        while second.assignment() != {tp}:
            assert time.monotonic() < deadline, "the second member never got the partition"
            taken.extend(second.poll(500, 0.2))
        with pytest.raises(BusError, match="rebalanced"):
            first.commit(next_offsets(got))
        assert first.committed(tp) == 5, "the rejected commit left the committed offset alone"
        # The first member's next polls rejoin and get the uncommitted records again.
        again = _consume(first, 15)
        assert [int(m.value) for m in again[:15]] == list(range(5, 20))
    finally:
        first.close()
        second.close()


def test_diagnostics_show_the_membership_a_stuck_consumer_would_lack(make_bus: Any) -> None:
    bus = make_bus(partitions=2)
    topic, group = _name("diag"), _name("g")
    bus.ensure_topics([topic])
    prod = bus.producer()
    try:
        for i in range(4):
            prod.produce(topic, f"k{i}", b"v")
        prod.flush()
    finally:
        prod.close()
    cons = bus.consumer(group, [topic])
    try:
        before = cons.diagnostics()
        assert before["group"] == group and before["assignment"] == []
        _consume(cons, 4)
        after = cons.diagnostics()
        assert after["assignment"] == [f"{topic}[0]", f"{topic}[1]"]
        assert "STABLE" in after["state"].upper()
        assert after["generation"] is not None and after["generation"] >= 1
        assert after["coordinator_id"] is not None
        # Per partition: fetched up to the end, nothing pending that would stop a fetch.
        ends = bus.end_offsets(topic)
        for p, end in ends.items():
            state = after["partitions"][f"{topic}[{p}]"]
            assert state["position"] == end
            # Everything fetched was handed out (None: the partition held no record).
            assert state["delivered_up_to"] == (end or None)
            assert state["awaiting_reset"] is False and state["awaiting_validation"] is False
            assert state["paused"] is False and state["leader"] is not None
        assert sum(ends.values()) == 4
    finally:
        cons.close()
