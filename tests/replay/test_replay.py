"""`riskwire replay` end to end: archives, saved feeds and the embedded bus through the tiny model.

The tiny model is untrained, so the "negative cluster" is built from the headline it labels
negative with the widest margin (kit.pick_headlines), and the noise from headlines it does not.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts.config import load_rules_file
from monitor.bus.embedded import EmbeddedBus
from monitor.cli import main
from monitor.collect.publish import Publisher
from monitor.config import load_config
from monitor.replay.driver import Replay
from monitor.replay.readers import Read, read_jsonl
from monitor.replay.report import progress_line
from monitor.replay.writers import ITEM_COLUMNS, ReplayWriter
from monitor.score.manifest import RISK_TAGS
from monitor.score.model import load_model

from .kit import (
    CLUSTER_ENTITY,
    CLUSTER_SIZE,
    RULE_COUNT,
    RULES_YAML,
    T0,
    Headlines,
    archive_items,
    fetched_late,
    write_config,
    write_jsonl,
)

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
HAS_PANDAS = importlib.util.find_spec("pandas") is not None
HAS_DUCKDB = importlib.util.find_spec("duckdb") is not None
LIVE_TOPICS = ("riskwire.news.raw", "riskwire.news.scored", "riskwire.alerts")


def _replay(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main(["replay", "--quiet", "--json", *argv])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]), "\n".join(out[:-1])


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line]
    if path.suffix == ".csv":
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def _when(value: Any) -> datetime:
    """A timestamp column as a datetime, whichever format wrote it."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


@pytest.fixture
def setup(tmp_path: Path, replay_model: Path) -> dict[str, Path]:
    data = tmp_path / "data"
    data.mkdir()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_YAML)
    cfg = write_config(tmp_path / "riskwire.yaml", data, replay_model)
    return {"data": data, "rules": rules, "config": cfg, "tmp": tmp_path}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_archive_replay_fires_cluster_alert_in_event_time(
    fmt: str, setup: dict[str, Path], headlines: Headlines, capsys: pytest.CaptureFixture[str]
) -> None:
    if fmt == "parquet" and not HAS_PYARROW:
        pytest.skip("pyarrow not installed (the replay extra)")
    items, cluster = archive_items(headlines)
    archive = write_jsonl(setup["tmp"] / "archive.jsonl", items)
    # A live bus with its topics, as a running daemon would leave it: replay must not touch it.
    live = EmbeddedBus(setup["data"] / "bus.sqlite")
    live.ensure_topics(LIVE_TOPICS)
    before = {t: live.end_offsets(t) for t in LIVE_TOPICS}
    out = setup["tmp"] / f"out-{fmt}"

    code, rep, text = _replay(
        capsys,
        "--config",
        str(setup["config"]),
        "--archive",
        str(archive),
        "--rules",
        str(setup["rules"]),
        "--out",
        str(out),
        "--format",
        fmt,
    )

    assert code == 0, text
    assert rep["read"] == len(items) and rep["bad"] == 0 and rep["processed"] == len(items)
    assert rep["out_of_order"] == 0  # files are fully sorted by default
    model = rep["models"][0]
    assert model["alerts_by_rule"]["acme_negative_burst"]["firing"] == 1
    assert model["alerts_by_severity"] == {"critical": 1}

    rows = _rows(out / f"items.{fmt}")
    assert [r["id"] for r in rows] == [i.id for i in sorted(items, key=lambda i: i.published_at)], (
        "items are written in event-time order"
    )
    assert set(ITEM_COLUMNS) <= set(rows[0])
    neg = [r for r in rows if r["id"] in {c.id for c in cluster}]
    assert {r["sentiment_label"] for r in neg} == {"negative"}
    assert {r["entity"] for r in neg} == {CLUSTER_ENTITY}

    alerts = _rows(out / f"alerts.{fmt}")
    assert len(alerts) == 1
    a = alerts[0]
    assert a["rule"] == "acme_negative_burst" and a["entity"] == CLUSTER_ENTITY
    assert a["severity"] == "critical" and a["status"] == "firing"
    # Fires on the item that brings the window to RULE_COUNT: event time, not wall time.
    assert _when(a["starts_at"]) == cluster[RULE_COUNT - 1].published_at
    assert int(a["n_items"]) == RULE_COUNT
    explain = json.loads(a["explain"])
    assert explain["values"]["count"] == RULE_COUNT
    full = [json.loads(x) for x in (out / "alerts.records.jsonl").read_text().splitlines()]
    assert full[0]["schema"] == "riskwire.alert/1" and full[0]["id"] == a["id"]

    # Nothing reached the live bus, no outbox was created, no topic was added.
    assert {t: live.end_offsets(t) for t in LIVE_TOPICS} == before
    assert not (setup["data"] / "alerts.sqlite").exists()
    assert not live.partitions("riskwire.news.raw.dlq")
    live.close()

    if HAS_PANDAS:
        import pandas as pd

        reader = {
            "jsonl": lambda p: pd.read_json(p, lines=True),
            "csv": pd.read_csv,
            "parquet": pd.read_parquet,
        }[fmt]
        assert len(reader(out / f"items.{fmt}")) == len(items)
    if HAS_DUCKDB:
        import duckdb

        fn = {"jsonl": "read_json_auto", "csv": "read_csv_auto", "parquet": "read_parquet"}[fmt]
        n = duckdb.sql(f"SELECT count(*) FROM {fn}('{out / f'alerts.{fmt}'}')").fetchone()
        assert n is not None and n[0] == 1
    assert "acme_negative_burst" in text and "critical" in text


def test_poison_lines_and_duplicates_are_skipped_and_counted(
    setup: dict[str, Path], headlines: Headlines, capsys: pytest.CaptureFixture[str]
) -> None:
    items, _ = archive_items(headlines, n_noise=60)
    poison = (
        "{not json",
        '{"schema": "riskwire.news/1", "id": "x"}',
        '{"schema": "riskwire.alert/9", "id": "y"}',
        "\x00\x01\x02 binary junk",
        '["a", "list"]',
        '{"schema": "riskwire.news/1", "id": "z", "source": "s", "url": "u", "title": "t", '
        '"published_at": "2026-11-01T00:00:00", "fetched_at": "2026-11-01T00:00:00Z"}',
    )
    plain = write_jsonl(setup["tmp"] / "a.jsonl", items[:40], poison)
    packed = setup["tmp"] / "b.jsonl.gz"
    packed.write_bytes(
        gzip.compress(
            # items[:3] again: an overlapping archive; each item is replayed once.
            ("\n".join(i.to_json().decode() for i in items[40:] + items[:3]) + "\n{broken").encode()
        )
    )
    code, rep, text = _replay(
        capsys,
        "--config",
        str(setup["config"]),
        "--archive",
        str(plain),
        str(packed),
        "--rules",
        str(setup["rules"]),
        "--out",
        str(setup["tmp"] / "out"),
    )
    assert code == 0, text
    assert rep["read"] == len(items) + 3 and rep["duplicates"] == 3
    assert rep["processed"] == len(items)
    assert rep["bad"] == len(poison) + 1
    assert len(rep["errors"]) == 5 and rep["errors"][0].startswith(f"{plain}:")
    assert "bad records skipped" in text and "not JSON" in text
    assert len(_rows(setup["tmp"] / "out" / "items.jsonl")) == len(items)


def _bus_items(headlines: Headlines) -> list[Any]:
    items, _ = archive_items(headlines, n_noise=120)
    # As collectors publish: in fetch order, the last poll backfilling a feed read late (two
    # items published inside the range, one before it, all fetched two days after the range).
    late = fetched_late(
        headlines,
        [T0 + timedelta(hours=7), T0 + timedelta(hours=30), T0 - timedelta(days=20)],
        T0 + timedelta(days=3),
    )
    return sorted(items, key=lambda i: i.fetched_at) + late


def test_embedded_bus_time_range_returns_exactly_the_records_in_range(
    setup: dict[str, Path], headlines: Headlines, capsys: pytest.CaptureFixture[str]
) -> None:
    items = _bus_items(headlines)
    bus = EmbeddedBus(setup["data"] / "bus.sqlite", partitions=3)
    bus.ensure_topics(LIVE_TOPICS)
    producer = bus.producer()
    Publisher(producer, "riskwire.news.raw").publish(items)
    producer.close()
    start, end = T0 + timedelta(hours=6), T0 + timedelta(hours=31)
    want = {i.id for i in items if start <= i.published_at < end}
    assert 0 < len(want) < len(items)
    assert {"item-90000", "item-90001"} <= want and "item-90002" not in want
    raw_before = bus.end_offsets("riskwire.news.raw")
    out = setup["tmp"] / "out"

    code, rep, text = _replay(
        capsys,
        "--config",
        str(setup["config"]),
        "--from",
        start.isoformat().replace("+00:00", "Z"),
        "--to",
        end.isoformat().replace("+00:00", "Z"),
        "--rules",
        str(setup["rules"]),
        "--out",
        str(out),
    )

    assert code == 0, text
    got = [r["id"] for r in _rows(out / "items.jsonl")]
    assert len(got) == len(set(got)) and set(got) == want
    assert rep["bad"] == 0 and rep["read"] == len(want)
    published = [r["published_at"] for r in _rows(out / "items.jsonl")]
    assert published == sorted(published)
    # The read left the bus as it was: no records anywhere, no offsets for the live groups.
    assert bus.end_offsets("riskwire.news.raw") == raw_before
    assert bus.end_offsets("riskwire.news.scored") == {0: 0, 1: 0, 2: 0}
    assert bus.end_offsets("riskwire.alerts") == {0: 0, 1: 0, 2: 0}
    probe = bus.consumer("riskwire-worker", ["riskwire.news.raw"])
    assert all(probe.committed(tp) is None for tp in probe.assignment())
    probe.close()
    bus.close()


def test_saved_feed_files_are_parsed_like_the_collector(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    feeds = setup["tmp"] / "feeds"
    feeds.mkdir()
    entries = "".join(
        f"<item><title>Acme &amp; Co headline {k}</title><link>https://news.example/a/{k}"
        f"?utm_source=x</link><description>&lt;p&gt;Body {k}&lt;/p&gt;</description>"
        f"<pubDate>Sun, 01 Nov 2026 0{k}:00:00 GMT</pubDate></item>"
        for k in range(4)
    )
    (feeds / "wire.xml").write_text(
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>{entries}'
        "</channel></rss>"
    )
    (feeds / "broken.rss").write_text("this is not a feed at all")
    out = setup["tmp"] / "out"
    code, rep, text = _replay(
        capsys,
        "--config",
        str(setup["config"]),
        "--feeds",
        str(feeds),
        "--rules",
        str(setup["rules"]),
        "--out",
        str(out),
        "--format",
        "csv",
    )
    assert code == 0, text
    rows = _rows(out / "items.csv")
    assert [r["title"] for r in rows] == [f"Acme & Co headline {k}" for k in range(4)]
    assert {r["source"] for r in rows} == {"wire"}
    assert rows[0]["url"] == "https://news.example/a/0"  # tracking parameter removed
    assert rows[0]["published_at"] == "2026-11-01T00:00:00.000Z"
    assert rep["bad"] >= 1


def test_stop_finishes_items_in_hand_and_flushes(
    setup: dict[str, Path], headlines: Headlines, replay_model: Path
) -> None:
    items, _ = archive_items(headlines, n_noise=200)
    archive = write_jsonl(setup["tmp"] / "a.jsonl", items)
    cfg = load_config(setup["config"])
    stop = threading.Event()

    def records() -> Iterator[Read]:
        for n, rec in enumerate(read_jsonl([archive])):
            if n == 120:
                stop.set()  # what the Ctrl-C handler does
            yield rec

    writer = ReplayWriter(setup["tmp"] / "out")
    replay = Replay(
        [load_model(replay_model, cfg.score)],
        [writer],
        load_rules_file(setup["rules"]),
        cfg.score,
        reorder_capacity=50,
        source="test",
    )
    rep = replay.run(records(), stop)
    assert rep.interrupted
    assert rep.read == 120
    assert rep.processed + rep.dropped_on_stop == 120 and rep.dropped_on_stop == 50
    assert len(_rows(setup["tmp"] / "out" / "items.jsonl")) == rep.processed


def test_compare_model_reports_agreement_and_one_sided_alerts(
    setup: dict[str, Path],
    headlines: Headlines,
    replay_model_b: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    items, _ = archive_items(headlines, n_noise=100)
    archive = write_jsonl(setup["tmp"] / "a.jsonl", items)
    out = setup["tmp"] / "out"
    code, rep, text = _replay(
        capsys,
        "--config",
        str(setup["config"]),
        "--archive",
        str(archive),
        "--compare-model",
        str(replay_model_b),
        "--rules",
        str(setup["rules"]),
        "--out",
        str(out),
    )
    assert code == 0, text
    c = rep["compare"]
    assert c["items"] == len(items) and 0.0 <= c["label_agreement"] <= 1.0
    first = rep["models"][0]["alerts_by_rule"].get("acme_negative_burst", {}).get("firing", 0)
    second = rep["models"][1]["alerts_by_rule"].get("acme_negative_burst", {}).get("firing", 0)
    assert first == 1
    if second == 0:
        assert [d["key"] for d in c["only_first"]] == [CLUSTER_ENTITY]
    assert len(_rows(out / "compare" / "items.jsonl")) == len(items)
    assert "label agreement" in text


def test_missing_embedded_log_is_a_clear_error(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "replay",
            "--config",
            str(setup["config"]),
            "--from",
            "2026-11-01T00:00Z",
            "--out",
            str(setup["tmp"] / "out"),
        ]
    )
    assert code == 2
    assert "no embedded bus log" in capsys.readouterr().err
    assert not (setup["data"] / "bus.sqlite").exists()


def test_cluster_size_is_larger_than_rule_count() -> None:
    assert CLUSTER_SIZE > RULE_COUNT


def test_stop_while_scoring_a_fully_sorted_archive(
    setup: dict[str, Path], headlines: Headlines, replay_model: Path
) -> None:
    items, _ = archive_items(headlines, n_noise=300)
    cfg = load_config(setup["config"])
    stop = threading.Event()
    lines: list[str] = []

    def progress(rep: Any) -> None:
        lines.append(progress_line(rep))
        if rep.processed >= 40:
            stop.set()  # Ctrl-C after the read, while the sorted records are being scored

    writer = ReplayWriter(setup["tmp"] / "out", "csv")
    replay = Replay(
        [load_model(replay_model, cfg.score)],
        [writer],
        load_rules_file(setup["rules"]),
        cfg.score,
        reorder_capacity=None,
        source="test",
        progress=progress,
        progress_every_items=10,
    )
    rep = replay.run(read_jsonl([write_jsonl(setup["tmp"] / "a.jsonl", items)]), stop)
    assert rep.interrupted and rep.read == len(items)
    assert 40 <= rep.processed < len(items)
    assert rep.processed + rep.dropped_on_stop == len(items)
    assert len(_rows(setup["tmp"] / "out" / "items.csv")) == rep.processed
    assert lines and lines[0].startswith("replay: ")


def test_every_risk_probability_is_written_but_rules_see_only_live_tags(
    setup: dict[str, Path], headlines: Headlines, capsys: pytest.CaptureFixture[str]
) -> None:
    items, _ = archive_items(headlines, n_noise=80)
    archive = write_jsonl(setup["tmp"] / "a.jsonl", items)
    rules = setup["tmp"] / "risk.yaml"
    rules.write_text(
        "rules:\n  - name: any_cyber\n    match: {risk: [{tag: cyber, min_p: 0.0}]}\n"
        "    severity: info\n"
    )
    out = setup["tmp"] / "out"
    code, rep, text = _replay(
        capsys,
        "--config",
        str(setup["config"]),
        "--archive",
        str(archive),
        "--rules",
        str(rules),
        "--out",
        str(out),
    )
    assert code == 0, text
    rows = _rows(out / "items.jsonl")
    for r in rows:
        probs = {t: r[f"risk_{t}"] for t in RISK_TAGS}
        assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in probs.values())
        # The tiny model's thresholds are 0.5: risk_tags is what the worker would emit.
        assert set(filter(None, r["risk_tags"].split(","))) == {
            t for t, p in probs.items() if p >= 0.5
        }
    with_cyber = sum(1 for r in rows if "cyber" in r["risk_tags"].split(","))
    fired = rep["models"][0]["alerts_by_rule"].get("any_cyber", {}).get("firing", 0)
    assert fired == with_cyber < len(rows)


def test_ctrl_c_exits_130_and_leaves_readable_files(
    setup: dict[str, Path], headlines: Headlines
) -> None:
    items, _ = archive_items(headlines, n_noise=30_000)
    archive = write_jsonl(setup["tmp"] / "big.jsonl", items)
    out = setup["tmp"] / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor.cli",
            "replay",
            "--config",
            str(setup["config"]),
            "--archive",
            str(archive),
            "--rules",
            str(setup["rules"]),
            "--out",
            str(out),
            "--order",
            "buffer",
            "--reorder-buffer",
            "100",
            "--progress-every",
            "500",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stderr is not None
        while True:  # wait for the first progress line: it is scoring now
            line = proc.stderr.readline()
            assert line, "replay ended before printing progress"
            if line.startswith("replay: ") and " scored" in line:
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    rep = json.loads(stdout.strip().splitlines()[-1])
    assert rep["interrupted"] and 0 < rep["processed"] < len(items)
    assert "[INTERRUPTED]" in stdout
    assert len(_rows(out / "items.jsonl")) == rep["processed"]


@pytest.mark.parametrize("warmup", [None, "1h"])
def test_warmup_fills_windows_before_from_without_writing_them(
    warmup: str | None,
    setup: dict[str, Path],
    headlines: Headlines,
    capsys: pytest.CaptureFixture[str],
) -> None:
    items, cluster = archive_items(headlines, n_noise=300)
    archive = write_jsonl(setup["tmp"] / "a.jsonl", items)
    start = cluster[2].published_at + timedelta(seconds=1)  # 3 cluster items before, 5 after
    out = setup["tmp"] / "out"
    argv = ["--config", str(setup["config"]), "--archive", str(archive)]
    argv += ["--rules", str(setup["rules"]), "--out", str(out)]
    argv += ["--from", start.isoformat(), *(["--warmup", warmup] if warmup else [])]
    code, rep, text = _replay(capsys, *argv)
    assert code == 0, text
    rows = _rows(out / "items.jsonl")
    assert rows and all(_when(r["published_at"]) >= start for r in rows)
    alerts = _rows(out / "alerts.jsonl")
    assert len(alerts) == 1
    # Without warm-up the window only fills on the 5th cluster item after --from.
    fired_on = cluster[RULE_COUNT - 1] if warmup else cluster[2 + RULE_COUNT]
    assert _when(alerts[0]["starts_at"]) == fired_on.published_at
    if warmup:
        assert rep["models"][0]["warmup_items"] > 0 and "warm-up" in text


def test_parquet_without_pyarrow_names_the_extra(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what an install without the extra sees
    archive = setup["tmp"] / "a.jsonl"
    archive.write_text("")
    code = main(
        [
            "replay",
            "--config",
            str(setup["config"]),
            "--archive",
            str(archive),
            "--out",
            str(setup["tmp"] / "out"),
            "--format",
            "parquet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "pyarrow" in err and "riskwire[replay]" in err
    assert not (setup["tmp"] / "out" / "items.parquet").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "yesterday"], "not a time"),
        (["--from", "2026-11-02", "--to", "2026-11-01"], "must be after --from"),
        (["--warmup", "7d"], "--warmup needs --from"),
        (["--from", "2026-11-02", "--warmup", "soon"], "--warmup"),
    ],
)
def test_bad_ranges_are_refused_with_the_reason(
    argv: list[str], message: str, setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    archive = setup["tmp"] / "a.jsonl"
    archive.write_text("")
    code = main(
        [
            "replay",
            "--config",
            str(setup["config"]),
            "--archive",
            str(archive),
            "--out",
            str(setup["tmp"] / "out"),
            *argv,
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err
