"""`riskwire bench bus`: records through each bus backend, beside plain kafka-python.

One run of one backend: a consumer (a group member, in its own thread) joins a fresh topic, then
the main thread produces ``--records`` records of ``--size`` bytes and flushes once. Each value
starts with its send time, so the consumer side gives produce-to-consume latency. Per run:

* produce rec/s     records / (time from the first send until flush returned)
* consume rec/s     records / (time from the first until the last record received)
* end-to-end rec/s  records / (time from the first send until the last record received)
* p50 / p99 ms      per-record latency from send to the poll() that returned it

The plain kafka-python baseline runs the same loop on the same broker with the same producer
settings as KafkaBus (idempotent, acks=all, the same linger and batch size) and the same consumer
settings (group member, no auto-commit). Backends are interleaved run by run, in an order that
rotates each round, so a busy machine slows them alike; the table shows medians over
``--repeat`` runs. ``kafka_vs_plain`` is Riskwire's Kafka end-to-end throughput over the plain
baseline's.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from monitor.bus.base import Bus
from monitor.config import DEFAULT_KAFKA_BOOTSTRAP, EmbeddedBusConfig, KafkaBusConfig

TARGET = 0.8
EMBEDDED, KAFKA, PLAIN = "embedded", "kafka", "plain"
LABELS = {
    EMBEDDED: "embedded (SQLite log)",
    KAFKA: "kafka (Riskwire KafkaBus)",
    PLAIN: "kafka-python (plain)",
}
_STAMP = 8  # bytes of send time (perf_counter_ns, big endian) at the head of each value


@dataclass(frozen=True)
class RunResult:
    produce_rps: float
    consume_rps: float
    e2e_rps: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Workload:
    records: int
    size: int
    partitions: int
    keys: int
    timeout_s: float

    def payloads(self) -> tuple[list[bytes], bytes]:
        keys = [f"key-{i}".encode() for i in range(self.keys)]
        return keys, b"x" * max(0, self.size - _STAMP)


# --- the two clients under test, behind one tiny interface ---------------------------------------


class _Side:
    """What one run needs from a backend: produce+flush, and a consumer polled in a thread."""

    def produce(self, key: bytes, value: bytes) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def open_consumer(self) -> None:
        raise NotImplementedError

    def assigned(self) -> bool:
        raise NotImplementedError

    def poll(self) -> list[bytes]:
        """Values of the next batch (empty when none arrived in the poll timeout)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _BusSide(_Side):
    """Riskwire's Bus contract (embedded or Kafka), exactly as the daemon's stages use it."""

    def __init__(self, bus: Bus, topic: str, partitions: int) -> None:
        self.bus, self.topic = bus, topic
        bus.ensure_topics([topic], partitions=partitions)
        self.producer = bus.producer()
        self.consumer: Any = None

    def produce(self, key: bytes, value: bytes) -> None:
        self.producer.produce(self.topic, key, value)

    def flush(self) -> None:
        self.producer.flush()

    def open_consumer(self) -> None:
        self.consumer = self.bus.consumer(f"bench-{uuid.uuid4().hex[:8]}", [self.topic])

    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def poll(self) -> list[bytes]:
        return [m.value for m in self.consumer.poll(500, 0.2)]

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        self.producer.close()
        self.bus.close()


class _PlainSide(_Side):
    """kafka-python used directly, with the settings KafkaBus uses (see monitor.bus.kafka)."""

    def __init__(self, config: KafkaBusConfig, topic: str, partitions: int) -> None:
        from kafka import KafkaAdminClient, KafkaProducer

        self.config, self.topic = config, topic
        common = {"bootstrap_servers": config.bootstrap.split(","), "client_id": "bench-plain"}
        admin = KafkaAdminClient(**common)
        try:
            admin.create_topics(
                {topic: {"num_partitions": partitions, "replication_factor": -1}},
                wait_for_metadata=True,
            )
        finally:
            admin.close()
        self.common = common
        self.producer = KafkaProducer(
            **common,
            enable_idempotence=True,
            acks="all",
            linger_ms=config.linger_ms,
            batch_size=config.batch_size,
            delivery_timeout_ms=config.request_timeout_ms + config.linger_ms,
            request_timeout_ms=config.request_timeout_ms,
        )
        self.consumer: Any = None

    def produce(self, key: bytes, value: bytes) -> None:
        self.producer.send(self.topic, value=value, key=key)

    def flush(self) -> None:
        self.producer.flush()

    def open_consumer(self) -> None:
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            **self.common,
            group_id=f"bench-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.config.session_timeout_ms,
            request_timeout_ms=self.config.request_timeout_ms,
        )
        self.consumer.subscribe([self.topic])
        # As KafkaBus does (see monitor.bus.kafka): with the topic's metadata loaded before the
        # first join, kafka-python 3.0.12 cannot strand the member without partitions.
        self.consumer.partitions_for_topic(self.topic)

    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def poll(self) -> list[bytes]:
        batch = self.consumer.poll(timeout_ms=200, max_records=500)
        return [r.value for records in batch.values() for r in records]

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
        self.producer.close()


# --- one run ----------------------------------------------------------------------------------


def run_once(side: _Side, work: Workload) -> RunResult:
    """Produce ``work.records`` while a consumer thread receives them; measure both ends."""
    n = work.records
    batches: list[tuple[int, list[bytes]]] = []
    joined = threading.Event()
    failure: list[BaseException] = []
    deadline = time.monotonic() + work.timeout_s

    def consume() -> None:
        try:
            side.open_consumer()
            while not side.assigned():
                if time.monotonic() > deadline:
                    raise TimeoutError("the consumer was never assigned a partition")
                if side.poll():
                    raise RuntimeError("a fresh topic returned records")
            joined.set()
            seen = 0
            clock = time.perf_counter_ns
            while seen < n:
                values = side.poll()
                if values:
                    batches.append((clock(), values))
                    seen += len(values)
                elif time.monotonic() > deadline:
                    raise TimeoutError(f"only {seen} of {n} records arrived")
        except BaseException as exc:
            failure.append(exc)
            joined.set()

    thread = threading.Thread(target=consume, name="bench-consumer", daemon=True)
    thread.start()
    joined.wait(work.timeout_s)
    if failure:
        raise RuntimeError(f"consumer failed: {failure[0]}") from failure[0]

    keys, pad = work.payloads()
    nkeys = len(keys)
    clock = time.perf_counter_ns
    produce = side.produce
    start = clock()
    for i in range(n):
        produce(keys[i % nkeys], clock().to_bytes(_STAMP, "big") + pad)
    side.flush()
    flushed = clock()
    thread.join(max(1.0, deadline - time.monotonic()))
    if failure:
        raise RuntimeError(f"consumer failed: {failure[0]}") from failure[0]
    if thread.is_alive():
        raise RuntimeError("the consumer did not finish in time")

    latencies = sorted(
        received - int.from_bytes(v[:_STAMP], "big") for received, values in batches for v in values
    )
    first, last = batches[0][0], batches[-1][0]
    return RunResult(
        produce_rps=n / ((flushed - start) / 1e9),
        consume_rps=n / max((last - first) / 1e9, 1e-9),
        e2e_rps=n / ((last - start) / 1e9),
        p50_ms=_pct(latencies, 0.50) / 1e6,
        p99_ms=_pct(latencies, 0.99) / 1e6,
    )


def _pct(ordered: list[int], q: float) -> float:
    return float(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))])


def median_result(runs: list[RunResult]) -> RunResult:
    return RunResult(
        *(statistics.median(getattr(r, f) for r in runs) for f in RunResult.__dataclass_fields__)
    )


# --- wiring -----------------------------------------------------------------------------------


def _load_launcher() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "local_kafka.py"
    if not path.is_file():
        raise SystemExit(f"--start-broker needs {path} (a source checkout of Riskwire)")
    spec = importlib.util.spec_from_file_location("riskwire_local_kafka", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def _broker(args: argparse.Namespace) -> Iterator[str]:
    if not args.start_broker:
        yield args.bootstrap
        return
    launcher = _load_launcher()
    with tempfile.TemporaryDirectory(prefix="riskwire-bench-kafka-") as tmp:
        print("starting a private Kafka broker ...", file=sys.stderr, flush=True)
        broker = launcher.start_broker(Path(tmp), 0)
        try:
            yield broker.bootstrap
        finally:
            broker.stop()


def _side_factory(
    backend: str, kafka_config: KafkaBusConfig, work: Workload, data_dir: Path
) -> Callable[[], _Side]:
    def make() -> _Side:
        topic = f"bench.bus.{uuid.uuid4().hex[:8]}"
        if backend == PLAIN:
            return _PlainSide(kafka_config, topic, work.partitions)
        if backend == KAFKA:
            from monitor.bus.kafka import KafkaBus

            return _BusSide(
                KafkaBus(kafka_config, partitions=work.partitions), topic, work.partitions
            )
        from monitor.bus.embedded import EmbeddedBus

        defaults = EmbeddedBusConfig()
        bus = EmbeddedBus(
            data_dir / f"{topic}.sqlite",
            partitions=work.partitions,
            poll_interval_ms=defaults.poll_interval_ms,
        )
        return _BusSide(bus, topic, work.partitions)

    return make


def _embedded_available() -> str | None:
    try:
        import monitor.bus.embedded  # noqa: F401
    except ImportError as exc:
        return f"embedded bus not available in this build ({exc})"
    return None


def _measure(make: Callable[[], _Side], work: Workload) -> RunResult:
    gc.collect()  # start each run without the previous run's garbage
    side = make()
    try:
        return run_once(side, work)
    finally:
        side.close()


def bench(args: argparse.Namespace) -> int:
    if args.size < _STAMP or args.records < 1 or args.repeat < 1:
        print(
            "riskwire bench bus: needs --size >= 8, --records >= 1, --repeat >= 1", file=sys.stderr
        )
        return 2
    work = Workload(
        records=args.records,
        size=args.size,
        partitions=args.partitions,
        keys=args.keys,
        timeout_s=args.timeout,
    )
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(wanted) - set(LABELS)
    if unknown:
        print(f"riskwire bench bus: unknown backend(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    skipped: dict[str, str] = {}
    if EMBEDDED in wanted and (why := _embedded_available()):
        skipped[EMBEDDED] = why
        wanted.remove(EMBEDDED)
        print(f"skipping embedded: {why}", file=sys.stderr)

    with _broker(args) as bootstrap, tempfile.TemporaryDirectory(prefix="riskwire-bench-") as tmp:
        kafka_config = KafkaBusConfig(
            bootstrap=bootstrap, linger_ms=args.linger_ms, batch_size=args.batch_size
        )
        if {KAFKA, PLAIN} & set(wanted):
            from monitor.bus.kafka import KafkaBus

            probe = KafkaBus(kafka_config)
            reachable = probe.ping(timeout=5.0)
            probe.close()
            if not reachable:
                print(
                    f"riskwire bench bus: no Kafka broker answers at {bootstrap}; start one "
                    "(`make kafka-up`) or pass --start-broker",
                    file=sys.stderr,
                )
                return 2
        factories = {b: _side_factory(b, kafka_config, work, Path(tmp)) for b in wanted}
        warm = Workload(min(work.records, 5000), work.size, work.partitions, work.keys, 60.0)
        for make in factories.values():
            _measure(make, warm)  # JIT, broker page cache, group coordinator: not measured
        runs: dict[str, list[RunResult]] = {b: [] for b in wanted}
        order = list(factories)
        for i in range(args.repeat):
            # Rotate the order each round so no backend always runs right after another one.
            for backend in order[i % len(order) :] + order[: i % len(order)]:
                result = _measure(factories[backend], work)
                runs[backend].append(result)
                print(
                    f"run {i + 1}/{args.repeat} {backend}: "
                    f"{result.e2e_rps:,.0f} rec/s end-to-end, p99 {result.p99_ms:.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )

    medians = {b: median_result(r) for b, r in runs.items()}
    report: dict[str, Any] = {
        "bench": "bus",
        "records": work.records,
        "size_bytes": work.size,
        "partitions": work.partitions,
        "repeat": args.repeat,
        "bootstrap": bootstrap if {KAFKA, PLAIN} & set(wanted) else None,
        "linger_ms": args.linger_ms,
        "batch_size": args.batch_size,
        "backends": {b: asdict(m) for b, m in medians.items()},
        "runs": {b: [asdict(r) for r in rs] for b, rs in runs.items()},
        "skipped": skipped,
        "target_kafka_vs_plain": TARGET,
    }
    if KAFKA in medians and PLAIN in medians:
        k, p = medians[KAFKA], medians[PLAIN]
        report["kafka_vs_plain"] = round(k.e2e_rps / p.e2e_rps, 3)
        report["kafka_vs_plain_produce"] = round(k.produce_rps / p.produce_rps, 3)
        report["kafka_vs_plain_consume"] = round(k.consume_rps / p.consume_rps, 3)
    else:
        report["kafka_vs_plain"] = None
    _print_table(report, medians)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return 0


def _print_table(report: dict[str, Any], medians: dict[str, RunResult]) -> None:
    print(
        f"riskwire bench bus: {report['records']:,} records x {report['size_bytes']} B, "
        f"{report['partitions']} partitions, median of {report['repeat']} run(s)"
        + (f", broker {report['bootstrap']}" if report["bootstrap"] else "")
    )
    head = (
        f"{'backend':<27} {'produce rec/s':>14} {'consume rec/s':>14} "
        f"{'end-to-end rec/s':>17} {'p50 ms':>9} {'p99 ms':>9}"
    )
    print(head)
    print("-" * len(head))
    for backend, m in medians.items():
        print(
            f"{LABELS[backend]:<27} {m.produce_rps:>14,.0f} {m.consume_rps:>14,.0f} "
            f"{m.e2e_rps:>17,.0f} {m.p50_ms:>9.1f} {m.p99_ms:>9.1f}"
        )
    for backend, why in report["skipped"].items():
        print(f"{LABELS[backend]:<27} skipped: {why}")
    ratio = report["kafka_vs_plain"]
    if ratio is not None:
        verdict = "meets" if ratio >= TARGET else "MISSES"
        produce, consume = report["kafka_vs_plain_produce"], report["kafka_vs_plain_consume"]
        print(
            f"kafka_vs_plain (end-to-end throughput, Riskwire / plain kafka-python): {ratio:.2f} "
            f"({verdict} the target >= {TARGET:.2f}); produce {produce:.2f}, consume {consume:.2f}"
        )


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "bus",
        help="bus throughput and latency vs plain kafka-python",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--records", type=int, default=100_000, help="records per run")
    p.add_argument("--size", type=int, default=1024, help="bytes per record value (>= 8)")
    p.add_argument("--repeat", type=int, default=3, help="runs per backend (median reported)")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--keys", type=int, default=1000, help="distinct record keys")
    p.add_argument(
        "--backends",
        default=f"{EMBEDDED},{KAFKA},{PLAIN}",
        help="comma-separated: embedded, kafka, plain",
    )
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("RISKWIRE_KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP),
        help="Kafka host:port (default $RISKWIRE_KAFKA_BOOTSTRAP or 127.0.0.1:19092)",
    )
    p.add_argument(
        "--start-broker",
        action="store_true",
        help="start a private broker for the run (deploy/kafka/local_kafka.py)",
    )
    p.add_argument("--linger-ms", type=int, default=KafkaBusConfig().linger_ms)
    p.add_argument("--batch-size", type=int, default=KafkaBusConfig().batch_size)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=bench)
