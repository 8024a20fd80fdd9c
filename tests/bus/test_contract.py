"""The bus contract, run unchanged against every backend (see conftest.bus_factory)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from monitor.bus.base import Message, TopicPartition, checkpoint, next_offsets
from monitor.bus.embedded import partition_for_key
from monitor.errors import BusError

from .conftest import BusFactory, consume_until, partitions_of, wait_assigned

# Two days back on a whole hour: far from the produce time, so timestamps are checked as given,
# and well inside Kafka's default 7-day retention (the test broker deletes older records within a
# second: deploy/kafka/server.properties).
T0 = (int(time.time()) // 3600 - 48) * 3_600_000


def _count(n: int):  # type: ignore[no-untyped-def]
    return lambda got: len(got) >= n


def test_round_trip_keys_values_timestamps(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    topic = bus_factory.name("rt")
    bus.ensure_topics([topic])
    assert bus.partitions(topic) == [0, 1, 2]
    prod = bus_factory.track(bus.producer())
    sent = [(f"key-{i % 7}", f"value-{i}".encode(), T0 + i) for i in range(60)]
    for key, value, ts in sent:
        prod.produce(topic, key, value, ts)
    prod.produce(topic, b"raw-bytes-key", b"\x00\xffbinary", T0 + 1000)
    prod.flush()
    assert sum(bus.end_offsets(topic).values()) == 61

    cons = bus_factory.track(bus.consumer(bus_factory.name("g"), [topic]))
    got = consume_until(cons, _count(61))
    assert len(got) == 61
    by_value = {m.value: m for m in got}
    for key, value, ts in sent:
        m = by_value[value]
        assert m.key == key.encode()
        assert m.timestamp_ms == ts
        assert m.topic == topic
    assert by_value[b"\x00\xffbinary"].key == b"raw-bytes-key"
    # Offsets grow by one per partition, and one key's records keep their order.
    per_part: dict[int, list[Message]] = defaultdict(list)
    for m in got:
        per_part[m.partition].append(m)
    for msgs in per_part.values():
        offsets = [m.offset for m in msgs]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    per_key: dict[bytes | None, list[int]] = defaultdict(list)
    for m in got:
        per_key[m.key].append(int(m.value.split(b"-")[-1]) if m.key != b"raw-bytes-key" else 0)
    for k, seq in per_key.items():
        assert seq == sorted(seq), f"order of key {k!r} broken: {seq}"


def test_key_to_partition_is_stable_and_kafka_compatible(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    topic = bus_factory.name("keys")
    bus.ensure_topics([topic], partitions=5)
    prod = bus_factory.track(bus.producer())
    keys = [f"item-{i}" for i in range(40)]
    for _ in range(3):
        for k in keys:
            prod.produce(topic, k, k.encode())
    prod.flush()
    cons = bus_factory.track(bus.consumer(bus_factory.name("g"), [topic]))
    got = consume_until(cons, _count(120))
    placed: dict[bytes, set[int]] = defaultdict(set)
    for m in got:
        assert m.key is not None
        placed[m.key].add(m.partition)
    for k in keys:
        assert placed[k.encode()] == {partition_for_key(k.encode(), 5)}, k
    assert len({p for ps in placed.values() for p in ps}) > 1


def test_commit_then_a_new_consumer_resumes_from_the_commit(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    topic, group = bus_factory.name("commit"), bus_factory.name("g")
    bus.ensure_topics([topic], partitions=1)
    prod = bus_factory.track(bus.producer())
    for i in range(20):
        prod.produce(topic, None, f"{i}".encode())
    prod.flush()
    tp = TopicPartition(topic, 0)

    first = bus.consumer(group, [topic])
    got = consume_until(first, _count(1))
    upto = got[: min(8, len(got))]
    checkpoint(prod, first, next_offsets(upto))
    assert first.committed(tp) == upto[-1].offset + 1
    first.close()

    second = bus_factory.track(bus.consumer(group, [topic]))
    rest = consume_until(second, _count(20 - len(upto)))
    assert rest[0].offset == upto[-1].offset + 1
    assert [int(m.value) for m in upto + rest] == list(range(20))
    assert second.committed(tp) == upto[-1].offset + 1


def test_two_members_split_partitions_and_see_everything_once(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    topic, group = bus_factory.name("split"), bus_factory.name("g")
    bus.ensure_topics([topic], partitions=4)
    every = partitions_of(bus, topic)
    stop = threading.Event()
    seen: dict[str, list[Message]] = {"a": [], "b": []}
    owned: dict[str, set[TopicPartition]] = {"a": set(), "b": set()}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def member(name: str) -> None:
        try:
            cons = bus.consumer(group, [topic])
            try:
                while not stop.is_set():
                    batch = cons.poll(200, 0.2)
                    if batch:
                        cons.commit(next_offsets(batch))
                    with lock:
                        seen[name].extend(batch)
                        owned[name] = cons.assignment()
            finally:
                cons.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=member, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            with lock:
                a, b = owned["a"], owned["b"]
            if a and b and not (a & b) and a | b == every:
                break
            assert time.monotonic() < deadline, f"no split assignment: a={a} b={b}"
            assert not errors, errors
            stop.wait(0.05)
        prod = bus_factory.track(bus.producer())
        for i in range(200):
            prod.produce(topic, f"k{i}", f"{i}".encode())
        prod.flush()
        while True:
            with lock:
                total = len(seen["a"]) + len(seen["b"])
            if total >= 200:
                break
            assert time.monotonic() < deadline + 60, f"only {total} of 200 consumed"
            assert not errors, errors
            stop.wait(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    values = sorted(int(m.value) for m in seen["a"] + seen["b"])
    assert values == list(range(200)), "every record exactly once"
    assert seen["a"] and seen["b"], "both members took part"
    assert {m.partition for m in seen["a"]}.isdisjoint({m.partition for m in seen["b"]})


def test_seek_to_timestamp(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    topic = bus_factory.name("seek")
    bus.ensure_topics([topic])
    prod = bus_factory.track(bus.producer())
    for i in range(30):
        prod.produce(topic, f"k{i}", f"{i}".encode(), T0 + i * 1000)
    prod.flush()
    cons = bus_factory.track(bus.consumer(bus_factory.name("g"), [topic]))
    early = wait_assigned(cons, partitions_of(bus, topic))
    consume_until(cons, _count(30), initial=early)
    cons.seek_to_timestamp(T0 + 20_000)
    again = consume_until(cons, _count(10))
    assert sorted(int(m.value) for m in again) == list(range(20, 30))
    assert all(m.timestamp_ms >= T0 + 20_000 for m in again)
    # A time past every record moves to the end: nothing more to read.
    cons.seek_to_timestamp(T0 + 10_000_000)
    assert cons.poll(100, 0.5) == []
    cons.seek_to_beginning()
    assert len(consume_until(cons, _count(30))) == 30


def test_lag_follows_commits_and_new_records(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    topic = bus_factory.name("lag")
    bus.ensure_topics([topic], partitions=1)
    tp = TopicPartition(topic, 0)
    prod = bus_factory.track(bus.producer())
    for i in range(10):
        prod.produce(topic, None, f"{i}".encode())
    prod.flush()
    cons = bus_factory.track(bus.consumer(bus_factory.name("g"), [topic]))
    consume_until(cons, _count(10))
    cons.commit({tp: 4})
    assert cons.lag() == {tp: 6}
    cons.commit()
    assert cons.lag() == {tp: 0}
    for i in range(5):
        prod.produce(topic, None, f"more-{i}".encode())
    prod.flush()
    assert cons.lag() == {tp: 5}
    assert bus.end_offsets(topic) == {0: 15}


def test_pause_stops_fetching_and_resume_restarts(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    topic = bus_factory.name("pause")
    bus.ensure_topics([topic])
    cons = bus_factory.track(bus.consumer(bus_factory.name("g"), [topic]))
    assert wait_assigned(cons, partitions_of(bus, topic)) == []
    cons.pause()
    prod = bus_factory.track(bus.producer())
    for i in range(12):
        prod.produce(topic, f"k{i}", f"{i}".encode())
    prod.flush()
    assert cons.poll(100, 1.0) == []
    assert cons.assignment() == partitions_of(bus, topic), "still a member while paused"
    cons.resume()
    got = consume_until(cons, _count(12))
    assert sorted(int(m.value) for m in got) == list(range(12))


def test_bus_answers_ping(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    assert bus.ping()
    assert bus.partitions(bus_factory.name("missing")) == []


def test_a_commit_for_a_partition_owned_by_another_member_does_not_move_it(
    bus_factory: BusFactory,
) -> None:
    bus = bus_factory()
    topic, group = bus_factory.name("owner"), bus_factory.name("g")
    bus.ensure_topics([topic], partitions=2)
    stop = threading.Event()
    other_owned: list[set[TopicPartition]] = [set()]

    def other_member() -> None:
        cons = bus.consumer(group, [topic])
        try:
            while not stop.is_set():
                cons.poll(10, 0.1)
                other_owned[0] = cons.assignment()
        finally:
            cons.close()

    thread = threading.Thread(target=other_member)
    thread.start()
    try:
        me = bus_factory.track(bus.consumer(group, [topic]))
        deadline = time.monotonic() + 60
        while not (len(me.assignment()) == 1 and len(other_owned[0]) == 1):
            assert time.monotonic() < deadline, "the two members never split the partitions"
            me.poll(10, 0.1)
        (theirs,) = other_owned[0]
        me.commit({theirs: 5})
        assert me.committed(theirs) is None
    finally:
        stop.set()
        thread.join(timeout=60)


def test_a_value_that_is_not_bytes_is_a_bus_error(
    bus_factory: BusFactory,
) -> None:
    bus = bus_factory()
    prod = bus_factory.track(bus.producer())
    with pytest.raises(BusError):
        prod.produce(bus_factory.name("types"), None, "text")  # type: ignore[arg-type]
        prod.flush()
