"""Dead-letter handling: an undecodable message goes to ``<topic>.dlq`` and the consumer goes on."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import Counter

from monitor.bus.base import Message, Producer, dlq_topic
from monitor.errors import RecordError
from monitor.logs import get_logger

T = TypeVar("T")
log = get_logger("bus.dlq")


def dead_letter(producer: Producer, msg: Message, error: str, stage: str) -> None:
    """Produce ``msg`` to its topic's DLQ, wrapped with the error and where it came from."""
    try:
        original: object = msg.value.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        original = base64.b64encode(msg.value).decode("ascii")
        encoding = "base64"
    envelope = {
        "schema": "riskwire.dead_letter/1",
        "error": error,
        "stage": stage,
        "topic": msg.topic,
        "partition": msg.partition,
        "offset": msg.offset,
        "timestamp_ms": msg.timestamp_ms,
        "key": msg.key.decode("utf-8", "replace") if msg.key is not None else None,
        "value": original,
        "value_encoding": encoding,
    }
    producer.produce(
        dlq_topic(msg.topic), msg.key, json.dumps(envelope).encode("utf-8"), msg.timestamp_ms
    )


def decode_or_dead_letter(
    msg: Message,
    decode: Callable[[bytes], T],
    producer: Producer,
    stage: str,
    counter: Counter | None = None,
) -> T | None:
    """Decode ``msg`` or send it to the DLQ (logged with topic/partition/offset, counted)."""
    try:
        return decode(msg.value)
    except RecordError as exc:
        log.warning(
            "poison message sent to dead-letter topic",
            extra={
                "topic": msg.topic,
                "partition": msg.partition,
                "offset": msg.offset,
                "error": str(exc),
                "stage": stage,
            },
        )
        dead_letter(producer, msg, str(exc), stage)
        if counter is not None:
            counter.labels(topic=msg.topic, stage=stage).inc()
        return None
