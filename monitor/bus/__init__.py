"""The bus: one contract (base.py), two backends (embedded.py, kafka.py)."""

from __future__ import annotations

from monitor.bus.base import (
    Bus,
    Consumer,
    Message,
    Producer,
    TopicPartition,
    checkpoint,
    dlq_topic,
    next_offsets,
)

__all__ = [
    "Bus",
    "Consumer",
    "Message",
    "Producer",
    "TopicPartition",
    "checkpoint",
    "dlq_topic",
    "next_offsets",
    "open_bus",
]


def open_bus(config: object) -> Bus:
    """Open the bus the config names (``monitor.config.Config``)."""
    from monitor.config import Config

    assert isinstance(config, Config)
    if config.bus.kind == "kafka":
        from monitor.bus.kafka import KafkaBus

        return KafkaBus(config.bus.kafka, partitions=config.bus.partitions)
    from monitor.bus.embedded import EmbeddedBus

    return EmbeddedBus(
        config.embedded_path,
        partitions=config.bus.partitions,
        retention_hours=config.bus.embedded.retention_hours,
        retention_mb=config.bus.embedded.retention_mb,
        poll_interval_ms=config.bus.embedded.poll_interval_ms,
    )
