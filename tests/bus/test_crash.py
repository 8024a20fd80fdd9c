"""Crash tests on both buses: SIGKILL a producer mid-stream and a consumer mid-batch."""

from __future__ import annotations

import json

from monitor.bus.base import TopicPartition

from .conftest import BusFactory, Proc, consume_until


def _read_until(proc: Proc, marker: str, count: int = 1, timeout: float = 90.0) -> list[str]:
    """Lines up to and including the ``count``-th line starting with ``marker``."""
    lines: list[str] = []
    seen = 0
    while seen < count:
        line = proc.next_line(timeout)
        assert line is not None, f"subprocess ended early; stderr:\n{''.join(proc.stderr)}"
        lines.append(line)
        if line.startswith(marker):
            seen += 1
    return lines


def _drain(proc: Proc) -> list[str]:
    """Every line still buffered from a dead subprocess."""
    lines: list[str] = []
    while (line := proc.next_line(30)) is not None:
        lines.append(line)
    return lines


def _acked(lines: list[str]) -> set[str]:
    return {rid for ln in lines if ln.startswith("ACK ") for rid in ln[4:].split(",")}


def test_producer_killed_mid_stream_loses_nothing_acknowledged(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    topic = bus_factory.name("crashp")
    bus.ensure_topics([topic])
    first = Proc("crash_producer.py", bus_factory.kind, bus_factory.address, topic)
    try:
        lines = _read_until(first, "ACK ", count=5)
    finally:
        first.kill()
    lines += _drain(first)
    assert first.popen.returncode == -9
    acked = _acked(lines)
    assert len(acked) >= 100

    # The log takes writes again after the crash: a new producer run completes normally.
    second = Proc(
        "crash_producer.py",
        bus_factory.kind,
        bus_factory.address,
        topic,
        "--batches",
        "3",
        "--prefix",
        "after",
    )
    lines2 = _drain(second)
    second.popen.wait(timeout=60)
    assert second.popen.returncode == 0, "".join(second.stderr)
    acked |= _acked(lines2)

    cons = bus_factory.track(bus.consumer(bus_factory.name("g"), [topic]))
    got = consume_until(cons, lambda msgs: acked <= {m.value.decode() for m in msgs}, timeout=90)
    assert acked <= {m.value.decode() for m in got}
    for m in got:
        assert m.key == m.value, "a record torn by the crash"


def test_consumer_killed_mid_batch_resumes_from_last_commit(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    topic, group = bus_factory.name("crashc"), bus_factory.name("g")
    bus.ensure_topics([topic])
    prod = bus_factory.track(bus.producer())
    everything = {f"r{i}" for i in range(120)}
    for rid in sorted(everything):
        prod.produce(topic, rid, rid.encode())
    prod.flush()

    victim = Proc("crash_consumer.py", bus_factory.kind, bus_factory.address, topic, group)
    try:
        lines = _read_until(victim, "MIDBATCH")
    finally:
        victim.kill()
    committed: dict[int, int] = {}
    processed: dict[str, tuple[int, int]] = {}
    for ln in lines:
        if ln.startswith("COMMITTED "):
            committed.update({int(p): o for p, o in json.loads(ln[10:]).items()})
        elif ln.startswith("GOT "):
            _, part_s, off_s, value = ln.split(" ")
            processed[value] = (int(part_s), int(off_s))
    assert committed, "the victim committed at least one batch before dying"
    in_flight = {v for v, (p, o) in processed.items() if o >= committed.get(p, 0)}
    assert in_flight, "the victim died with processed but uncommitted records"

    heir = bus_factory.track(bus.consumer(group, [topic]))
    for part, off in committed.items():
        assert heir.committed(TopicPartition(topic, part)) == off
    done_before = {v for v, (p, o) in processed.items() if o < committed.get(p, 0)}
    got = consume_until(
        heir, lambda msgs: done_before | {m.value.decode() for m in msgs} >= everything, timeout=90
    )
    first_offset: dict[int, int] = {}
    for m in got:
        first_offset.setdefault(m.partition, m.offset)
    for p in bus.partitions(topic):
        if p in first_offset:
            assert first_offset[p] == committed.get(p, 0), "resumes exactly at the last commit"
    redelivered = {m.value.decode() for m in got}
    assert in_flight <= redelivered, "uncommitted work is delivered again"
    assert not (done_before & redelivered), "committed work is not delivered again"
