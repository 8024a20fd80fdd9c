"""Helpers for the scoring tests: model dirs, news items, a worker running in a thread."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from exporters.tiny import build_tiny_model_dir
from monitor.bus.base import Bus
from monitor.config import Config
from monitor.records import EntityMatch, NewsItem, ScoredItem
from monitor.roles import RoleContext
from monitor.score.manifest import MANIFEST_NAME, write_manifest
from monitor.score.worker import Worker
from polling import wait_for

HEADLINES = [
    "Acme Corp shares plunge after profit warning",
    "Central bank raises rates by 50 basis points",
    "Globex beats earnings estimates, raises guidance",
    "Initech announces share buyback of $2 billion",
    "Regulator opens fraud probe into Umbrella accounting",
    "Oil prices steady as markets await inflation data",
    "Hooli CEO resigns amid board dispute",
    "Ransomware attack halts production at Stark Industries",
]


def make_model(
    out: Path, *, version: str = "0.0.0-tiny", seed: int = 0, max_length: int = 32
) -> Path:
    build_tiny_model_dir(out, seed=seed, max_length=max_length)
    if version != "0.0.0-tiny":
        rewrite_manifest(out, version=version)
    return out


def rewrite_manifest(model_dir: Path, **changes: Any) -> None:
    """Change manifest fields and re-hash the files (a consistent directory)."""
    doc = json.loads((model_dir / MANIFEST_NAME).read_text())
    doc.pop("files")
    doc.update(changes)
    write_manifest(model_dir, doc)


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def news(i: int, title: str | None = None, **extra: Any) -> NewsItem:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "id": f"item-{i:06d}",
        "source": "test",
        "url": f"https://example.com/{i}",
        "title": title if title is not None else f"{HEADLINES[i % len(HEADLINES)]} ({i})",
        "published_at": now,
        "fetched_at": now,
        "entities": (
            [EntityMatch(id=f"ent-{i % 5}", name=f"Ent {i % 5}", matched="x")] if i % 2 else []
        ),
    }
    fields.update(extra)
    return NewsItem(**fields)


def config_for(data_dir: Path, model_dir: Path, **score: Any) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(data_dir),
            "bus": {"partitions": 3},
            "score": {"model_dir": str(model_dir), "intra_op_threads": 1, **score},
        }
    )


@dataclass
class RunningWorker:
    worker: Worker
    ctx: RoleContext
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    error: list[BaseException] = field(default_factory=list)

    def start(self) -> RunningWorker:
        def run() -> None:
            try:
                self.worker.run(self.stop)
            except BaseException as exc:
                self.error.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.worker.ready() or bool(self.error), 30, "worker ready")
        return self

    def close(self, timeout: float = 30.0) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error:
            raise self.error[0]

    def metric(self, name: str, **labels: str) -> float:
        value = self.ctx.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def start_worker(config: Config, bus: Bus, **kwargs: Any) -> RunningWorker:
    ctx = RoleContext(config=config, bus=bus, registry=CollectorRegistry())
    return RunningWorker(Worker(ctx, **kwargs), ctx).start()


def produce_news(bus: Bus, topic: str, items: Iterable[NewsItem]) -> int:
    producer = bus.producer()
    n = 0
    for item in items:
        producer.produce(topic, item.key, item.to_json())
        n += 1
    producer.flush()
    producer.close()
    return n


def read_scored(bus: Bus, topic: str, want: int, timeout: float = 60.0) -> list[ScoredItem]:
    """Read ``topic`` from the beginning until ``want`` records (ids, any order) are seen."""
    import uuid

    consumer = bus.consumer(f"t.reader.{uuid.uuid4().hex[:8]}", [topic])
    out: list[ScoredItem] = []
    deadline = time.monotonic() + timeout
    try:
        while len({r.id for r in out}) < want and time.monotonic() < deadline:
            for msg in consumer.poll(max_records=2000, timeout=0.5):
                out.append(ScoredItem.from_json(msg.value))
    finally:
        consumer.close()
    return out
