"""Open a bus from (kind, address): shared by the test fixtures and the crash-test subprocesses.

``address`` is the SQLite file for the embedded bus and ``host:port`` for Kafka. Both sides of a
crash test must build the bus with the same settings, so they live here once.
"""

from __future__ import annotations

from pathlib import Path

from monitor.bus.base import Bus

# Short timeouts keep the failure tests fast: a killed member is expired after this long.
SESSION_TIMEOUT_S = 2.0
KAFKA_SESSION_TIMEOUT_MS = 3000
PARTITIONS = 3


def make_bus(kind: str, address: str, partitions: int = PARTITIONS) -> Bus:
    if kind == "embedded":
        from monitor.bus.embedded import EmbeddedBus

        return EmbeddedBus(
            Path(address),
            partitions=partitions,
            poll_interval_ms=10,
            session_timeout_s=SESSION_TIMEOUT_S,
        )
    if kind == "kafka":
        from monitor.bus.kafka import KafkaBus
        from monitor.config import KafkaBusConfig

        cfg = KafkaBusConfig(bootstrap=address, session_timeout_ms=KAFKA_SESSION_TIMEOUT_MS)
        return KafkaBus(cfg, partitions=partitions)
    raise ValueError(f"unknown bus kind {kind!r}")
