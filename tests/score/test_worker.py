"""The worker role on the real embedded bus: flow, DLQ, backpressure, hot reload, no torch."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from monitor.bus.base import TopicPartition
from monitor.bus.embedded import EmbeddedBus
from monitor.score.model import LoadedModel, load_model

from .kit import (
    config_for,
    copy_model,
    news,
    produce_news,
    read_scored,
    start_worker,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]


def _bus(tmp_path: Path) -> EmbeddedBus:
    bus = EmbeddedBus(tmp_path / "bus.sqlite", partitions=3, poll_interval_ms=5)
    bus.ensure_topics(["riskwire.news.raw", "riskwire.news.scored", "riskwire.news.raw.dlq"])
    return bus


def test_scores_every_item_keyed_by_entity_and_commits(tmp_path: Path, tiny_model: Path) -> None:
    bus = _bus(tmp_path)
    config = config_for(tmp_path, tiny_model)
    items = [news(i) for i in range(300)] + [news(300, title="")]
    produce_news(bus, "riskwire.news.raw", items)
    w = start_worker(config, bus)
    try:
        scored = read_scored(bus, "riskwire.news.scored", len(items))
    finally:
        w.close()
    assert _committed(bus, "riskwire-worker") == len(items)
    by_id = {s.id: s for s in scored}
    assert set(by_id) == {i.id for i in items}
    assert by_id["item-000001"].key == "ent-1" and by_id["item-000002"].key == "item-000002"
    assert "unscored:empty_text" in by_id["item-000300"].flags
    assert {s.model.version for s in scored} == {"1.0.0"}
    assert w.metric("riskwire_score_skipped_total", reason="empty_text") == 1
    assert w.metric("riskwire_inference_batch_size_count") > 0
    assert w.metric("riskwire_items_total", stage="score") == len(items)
    bus.close()


def _committed(bus: EmbeddedBus, group: str) -> int:
    """Sum of the group's committed offsets (call once its members have left)."""
    probe = bus.consumer(group, ["riskwire.news.raw"])
    try:
        return sum(
            probe.committed(TopicPartition("riskwire.news.raw", p)) or 0
            for p in bus.partitions("riskwire.news.raw")
        )
    finally:
        probe.close()


def test_undecodable_raw_goes_to_dlq_and_worker_goes_on(tmp_path: Path, tiny_model: Path) -> None:
    bus = _bus(tmp_path)
    producer = bus.producer()
    producer.produce("riskwire.news.raw", b"k", b"\xff\xfe not json")
    producer.produce("riskwire.news.raw", b"k", b'{"schema": "riskwire.news/1", "id": 3}')
    producer.flush()
    produce_news(bus, "riskwire.news.raw", [news(1)])
    w = start_worker(config_for(tmp_path, tiny_model), bus)
    try:
        assert [s.id for s in read_scored(bus, "riskwire.news.scored", 1)] == ["item-000001"]
        dlq = bus.consumer("t.dlq", ["riskwire.news.raw.dlq"])
        got: list[bytes] = []

        def both_in() -> bool:
            got.extend(m.value for m in dlq.poll(10, 0.1))
            return len(got) == 2

        wait_for(both_in)
        dlq.close()
    finally:
        w.close()
    assert w.metric("riskwire_dead_letters_total", topic="riskwire.news.raw", stage="score") == 2
    bus.close()


class GatedModel(LoadedModel):
    """A real model whose inference waits for a gate: scoring falls behind on demand."""

    gate: threading.Event

    def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[object, object]:
        assert self.gate.wait(60)
        return super().infer(input_ids, attention_mask)


def test_backpressure_pauses_then_resumes_without_loss(tmp_path: Path, tiny_model: Path) -> None:
    bus = _bus(tmp_path)
    config = config_for(tmp_path, tiny_model, queue_size=16, max_batch=4, max_wait_ms=1)
    gate = threading.Event()
    gate.set()  # the load-time probe runs ungated

    def loader(path: Path) -> LoadedModel:
        base = load_model(path, config.score)
        model = GatedModel(**{k: getattr(base, k) for k in base.__dataclass_fields__})
        model.gate = gate
        return model

    items = [news(i) for i in range(200)]
    w = start_worker(config, bus, loader=loader)
    gate.clear()
    try:
        produce_news(bus, "riskwire.news.raw", items)
        wait_for(lambda: w.metric("riskwire_score_consumer_paused") == 1, 30, "pause")
        assert w.metric("riskwire_score_queue_depth") <= 16
        assert w.metric("riskwire_score_backpressure_pauses_total") >= 1
        gate.set()
        scored = read_scored(bus, "riskwire.news.scored", len(items))
    finally:
        gate.set()
        w.close()
    assert {s.id for s in scored} == {i.id for i in items}
    assert w.metric("riskwire_score_consumer_paused") == 0
    bus.close()


def _versions_by_id(scored: list) -> dict[str, set[str]]:  # type: ignore[type-arg]
    out: dict[str, set[str]] = defaultdict(set)
    for s in scored:
        out[s.id].add(f"{s.model.version}:{s.model.sha256[:8]}")
    return out


@pytest.mark.parametrize("how", ["sighup", "symlink"])
def test_hot_reload_under_load_no_loss_no_double_scoring(
    tmp_path: Path, tiny_model: Path, tiny_model_v2: Path, how: str
) -> None:
    bus = _bus(tmp_path)
    link = tmp_path / "current"
    link.symlink_to(tiny_model)
    config = config_for(tmp_path, link, watch_interval_s=0.05, max_batch=8)
    w = start_worker(config, bus)
    n = 3000
    stop = threading.Event()

    def feed() -> None:
        producer = bus.producer()
        for i in range(n):
            item = news(i)
            producer.produce("riskwire.news.raw", item.key, item.to_json())
            if i % 50 == 49:
                producer.flush()
        producer.flush()
        producer.close()
        stop.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        wait_for(
            lambda: (
                w.metric("riskwire_score_items_total", label="neutral")
                + w.metric("riskwire_score_items_total", label="positive")
                + w.metric("riskwire_score_items_total", label="negative")
                > 300
            ),
            60,
            "load",
        )
        tmp = tmp_path / "next"
        tmp.symlink_to(tiny_model_v2)
        tmp.replace(link)  # atomic retarget, as `ln -sfn` does
        if how == "sighup":
            w.ctx.reload.set()
        wait_for(
            lambda: w.metric("riskwire_score_model_reloads_total", outcome="swapped") == 1,
            60,
            "swap",
        )
        feeder.join(120)
        scored = read_scored(bus, "riskwire.news.scored", n, timeout=120)
    finally:
        feeder.join(120)
        w.close()
    versions = _versions_by_id(scored)
    assert len(versions) == n, f"missing {n - len(versions)} items"
    both = [i for i, v in versions.items() if len(v) > 1]
    assert both == [], f"{len(both)} items scored by both models"
    used = {v for vs in versions.values() for v in vs}
    assert len(used) == 2 and any(v.startswith("2.0.0") for v in used)
    assert len(scored) == n  # no redelivery expected in a clean run
    bus.close()


def test_broken_new_model_is_refused_and_old_keeps_serving(
    tmp_path: Path, tiny_model: Path
) -> None:
    bus = _bus(tmp_path)
    live = copy_model(tiny_model, tmp_path / "live")
    w = start_worker(config_for(tmp_path, live), bus)
    try:
        (live / "model.int8.onnx").write_bytes(b"corrupt")
        w.ctx.reload.set()
        wait_for(
            lambda: w.metric("riskwire_score_model_reloads_total", outcome="refused") == 1,
            30,
            "refusal",
        )
        produce_news(bus, "riskwire.news.raw", [news(i) for i in range(20)])
        scored = read_scored(bus, "riskwire.news.scored", 20)
    finally:
        w.close()
    assert len({s.id for s in scored}) == 20
    assert {s.model.version for s in scored} == {"1.0.0"}
    bus.close()


def test_daemon_path_never_imports_torch(tmp_path: Path, tiny_model: Path) -> None:
    script = f"""
import sys, threading
from pathlib import Path
from prometheus_client import CollectorRegistry
import monitor.score.batcher, monitor.score.config, monitor.score.manifest, monitor.score.metrics
import monitor.score.model, monitor.score.offsets, monitor.score.pipeline, monitor.score.reload
import monitor.score.role, monitor.score.runtime, monitor.score.text, monitor.score.worker
from monitor.bus.base import TopicPartition
from monitor.bus.embedded import EmbeddedBus
from monitor.config import Config
from monitor.roles import RoleContext
from monitor.records import NewsItem
from datetime import UTC, datetime
cfg = Config.model_validate({{"data_dir": {str(tmp_path)!r},
    "score": {{"model_dir": {str(tiny_model)!r}, "intra_op_threads": 1}}}})
bus = EmbeddedBus(Path({str(tmp_path)!r}) / "b.sqlite", partitions=1)
bus.ensure_topics(["riskwire.news.raw", "riskwire.news.scored"])
now = datetime.now(UTC)
p = bus.producer()
p.produce("riskwire.news.raw", "k", NewsItem(id="1", source="s", url="u", title="Shares rise",
          published_at=now, fetched_at=now).to_json()); p.flush()
ctx = RoleContext(config=cfg, bus=bus, registry=CollectorRegistry())
runner = monitor.score.role.build(ctx)
stop = threading.Event()
t = threading.Thread(target=runner.run, args=(stop,)); t.start()
c = bus.consumer("probe", ["riskwire.news.scored"])
got = []
while not got:
    got = c.poll(10, 1.0)
stop.set(); t.join(30)
print("torch" in sys.modules, "transformers" in sys.modules, len(got))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "1"]
