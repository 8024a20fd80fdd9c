"""Replay from a real Kafka topic by time range: group-less, nothing committed, nothing produced."""

from __future__ import annotations

import json
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.bus.kafka import KafkaBus
from monitor.cli import main
from monitor.collect.publish import Publisher
from monitor.config import KafkaBusConfig

from .kit import RULES_YAML, T0, Headlines, archive_items, fetched_late, shifted, write_config

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _groups(bootstrap: str) -> set[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        return {
            str(g.get("group_id", g) if isinstance(g, dict) else g[0]) for g in admin.list_groups()
        }
    finally:
        admin.close()


def test_kafka_time_range_replay_reads_exactly_the_range_without_a_group(
    kafka_bootstrap: str,
    tmp_path: Path,
    replay_model: Path,
    headlines: Headlines,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = f"replay.raw.{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(KafkaBusConfig(bootstrap=kafka_bootstrap), partitions=3)
    # Recent times: Kafka deletes records stamped older than its retention (7 days here).
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    base = now - timedelta(days=2)
    items = shifted(archive_items(headlines, n_noise=90)[0], base - T0)
    items.sort(key=lambda i: i.fetched_at)
    start, end = base + timedelta(hours=3), base + timedelta(hours=12)
    # A feed read late: fetched now, published inside the range (twice) and a month ago.
    items += fetched_late(
        headlines,
        [start + timedelta(minutes=5), end - timedelta(minutes=5), now - timedelta(days=30)],
        now,
    )
    producer = bus.producer()
    Publisher(producer, raw).publish(items)
    producer.close()
    want = {i.id for i in items if start <= i.published_at < end}
    assert 0 < len(want) < len(items)
    assert {"item-90000", "item-90001"} <= want and "item-90002" not in want
    groups_before = _groups(kafka_bootstrap)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_YAML)
    cfg = write_config(
        tmp_path / "riskwire.yaml",
        tmp_path / "data",
        replay_model,
        bus={
            "kind": "kafka",
            "partitions": 3,
            "kafka": {"bootstrap": kafka_bootstrap},
            "topics": {"raw": raw, "scored": f"{raw}.scored", "alerts": f"{raw}.alerts"},
        },
    )
    out = tmp_path / "out"
    code = main(
        [
            "replay",
            "--quiet",
            "--json",
            "--config",
            str(cfg),
            "--rules",
            str(rules),
            "--from",
            start.isoformat(),
            "--to",
            end.isoformat(),
            "--out",
            str(out),
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0, "\n".join(lines)
    rep = json.loads(lines[-1])
    got = [json.loads(x)["id"] for x in (out / "items.jsonl").read_text().splitlines()]
    assert len(got) == len(set(got)) and set(got) == want
    assert rep["read"] == len(want)
    # No consumer group was joined (so none committed), and nothing was produced anywhere.
    assert _groups(kafka_bootstrap) == groups_before
    assert bus.partitions(f"{raw}.scored") == [] and bus.partitions(f"{raw}.alerts") == []
    # ...and the check above would have seen one: a group that joins and commits shows up.
    probe_group = f"replay-probe-{uuid.uuid4().hex[:8]}"
    probe = bus.consumer(probe_group, [raw])
    probe.seek_to_beginning()
    probe.poll(max_records=1, timeout=1.0)
    probe.commit()
    probe.close()
    assert probe_group in _groups(kafka_bootstrap) - groups_before
    bus.close()
