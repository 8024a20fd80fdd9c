"""Where replayed news comes from: JSONL archives, saved feed files, or a bus topic by time range.

Every reader yields :class:`NewsItem` records or :class:`Skipped` markers (a poison line, an
unparsable feed, a record of the wrong type): a bad record is never raised, it is handed to the
driver, which counts it and shows the first few.

Bus reader and consumer groups
    Replay must leave the live bus exactly as it found it: no records produced, no offsets
    committed, no rebalance of the live groups. On Kafka we read without joining any group
    (kafka-python's ``group_id=None`` with ``assign()``): nothing is committed because there is
    nothing to commit to, and the live worker/alerter groups never see us. The bus contract
    (monitor/bus/base.py) has no group-less reader, so on the embedded log we join a fresh group
    ``riskwire-replay-<uuid>`` that never commits; joining writes only that group's membership
    rows (not records, not other groups' offsets), and closing leaves it.

    A range ``[from, to)`` is a range of event time (``published_at``), as for the archives. A
    record's bus timestamp is when the collector fetched the item (see monitor/collect/publish.py:
    Kafka deletes records by their timestamp, so stamping the event time would let the broker
    drop an old article minutes after it arrived). An item is clamped to its fetch time when its
    date lies more than ``future_tolerance_s`` ahead, so an item published at or after ``from``
    was fetched at or after ``from - future_tolerance_s``: each partition is time-seeked there
    and read up to the end offset captured when the replay starts (records appended later are
    not part of the replay). Records outside the range are filtered out by their event time and
    counted. There is no early stop: an item published inside the range can have been fetched
    at any later time (a feed read late, a first poll that backfills a month), so only the
    captured end bounds the read.
"""

from __future__ import annotations

import gzip
import io
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from monitor.bus.base import Bus, Message
from monitor.errors import BusError, RecordError
from monitor.logs import get_logger
from monitor.records import NewsItem, ScoredItem, decode_any

log = get_logger("replay.readers")

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
FEED_SUFFIXES = (".xml", ".rss", ".atom", ".feed", ".json", ".xml.gz", ".rss.gz", ".atom.gz")


@dataclass(frozen=True)
class Skipped:
    """A record that could not be replayed: where it was and why."""

    where: str
    reason: str


Read = NewsItem | Skipped


def _files(paths: Iterable[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Files named directly, plus files under directories whose names end in ``suffixes``."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(
                f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(suffixes)
            )
        else:
            out.append(p)
    return out


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


def decode_news(data: bytes | str) -> NewsItem:
    """A raw record, or a scored one stripped back to its news (re-scoring a scored archive)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    record = decode_any(raw)
    if isinstance(record, ScoredItem):
        return NewsItem.model_validate(
            record.model_dump(exclude={"sentiment", "risk", "model", "timings"})
        )
    if isinstance(record, NewsItem):
        return record
    raise RecordError(f"a {type(record).__name__} record, not news")


def read_jsonl(paths: Iterable[Path]) -> Iterator[Read]:
    """``riskwire.news/1`` records, one per line, from files or folders (``.gz`` too)."""
    for path in _files(paths, JSONL_SUFFIXES):
        try:
            fh = _open_text(path)
        except OSError as exc:
            yield Skipped(str(path), f"cannot open: {exc.strerror or exc}")
            continue
        with fh:
            lineno = 0
            try:
                for lineno, line in enumerate(fh, 1):  # noqa: B007 - used after the loop
                    if not line.strip():
                        continue
                    try:
                        yield decode_news(line)
                    except RecordError as exc:
                        yield Skipped(f"{path}:{lineno}", str(exc))
            except (OSError, EOFError) as exc:  # a truncated .gz: keep what was read
                yield Skipped(f"{path}:{lineno + 1}", f"file ends early: {exc}")


def read_feeds(
    paths: Iterable[Path],
    *,
    watchlist: Path | None = None,
    source: str | None = None,
    title_max_chars: int = 300,
    summary_max_chars: int = 2000,
    future_tolerance_s: float = 900.0,
) -> Iterator[Read]:
    """Saved RSS/Atom/JSON Feed files, parsed and normalised by the collector's own functions.

    Each file is one feed whose id is ``source`` or the file's stem; its fetch time is the file's
    modification time (what the collector would have stamped when it saved it). No dedup across
    files beyond the item id, which the driver's caller may apply.
    """
    try:
        from monitor.collect.entities import EntityMatcher, Watchlist, load_watchlist
        from monitor.collect.normalize import canonical_url, event_time, plain_text, stable_id
        from monitor.collect.parse import parse_body
    except ImportError as exc:  # pragma: no cover - the collector ships with the package
        yield Skipped("feeds", f"the collector's parsers are not importable: {exc}")
        return
    matcher = EntityMatcher(load_watchlist(watchlist) if watchlist else Watchlist())
    for path in _files(paths, FEED_SUFFIXES):
        feed_id = source or path.name.split(".")[0] or "file"
        try:
            body = path.read_bytes()
            if path.name.lower().endswith(".gz"):
                body = gzip.decompress(body)
            fetched_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except (OSError, EOFError) as exc:
            yield Skipped(str(path), f"cannot read: {exc}")
            continue
        try:
            parsed = parse_body(body, kind="file", content_type=None)
        except Exception as exc:  # a parser bug on one hostile file must not end the replay
            yield Skipped(str(path), f"parse failed: {type(exc).__name__}: {exc}")
            continue
        if parsed.failed:
            yield Skipped(str(path), "not a feed: " + "; ".join(parsed.problems[:3]))
            continue
        for n, entry in enumerate(reversed(parsed.entries), 1):
            try:
                title = plain_text(entry.title, title_max_chars)
                if not title:
                    yield Skipped(f"{path}#{n}", "entry has no title")
                    continue
                link = entry.link.strip() if entry.link else None
                url = canonical_url(link) if link else None
                summary = plain_text(entry.summary, summary_max_chars)
                published, flags = event_time(entry.published, fetched_at, future_tolerance_s)
                yield NewsItem(
                    id=stable_id(url, entry.guid, feed_id, title),
                    source=feed_id,
                    url=url or link or "",
                    title=title,
                    summary=summary,
                    published_at=published,
                    fetched_at=fetched_at,
                    lang=(parsed.lang or "en").split("-")[0].lower()[:8] or "en",
                    entities=matcher.match(title, summary),
                    flags=flags,
                )
            except (ValueError, RecordError) as exc:
                yield Skipped(f"{path}#{n}", f"entry cannot be normalised: {exc}")


# --- bus -------------------------------------------------------------------------------------


@dataclass
class RangeStats:
    """What the bus reader saw besides the records it yielded."""

    partitions: int = 0
    before_range: int = 0
    after_range: int = 0
    end_offsets: dict[int, int] | None = None


class _Partitions:
    """Per partition: the end captured at start, and whether it is finished."""

    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = ends
        self.done = {p for p, end in ends.items() if end <= 0}

    def finished(self) -> bool:
        return len(self.done) >= len(self.ends)

    def see(self, msg: Message) -> bool:
        """Record ``msg``; False when it lies beyond what this replay reads."""
        p = msg.partition
        if p in self.done or p not in self.ends or msg.offset >= self.ends[p]:
            self.done.add(p)
            return False
        if msg.offset + 1 >= self.ends[p]:
            self.done.add(p)
        return True

    def at(self, partition: int, position: int | None) -> None:
        if position is not None and position >= self.ends.get(partition, 0):
            self.done.add(partition)


def read_bus(
    bus: Bus,
    topic: str,
    *,
    from_ms: int | None,
    to_ms: int | None,
    stats: RangeStats | None = None,
    future_tolerance_s: float = 600.0,
    idle_timeout_s: float = 5.0,
    poll_records: int = 1000,
) -> Iterator[Read]:
    """Items of ``topic`` published in ``[from_ms, to_ms)`` (see the module docstring).

    ``future_tolerance_s``: the collectors' ``collect.future_tolerance_s``, how far an item's
    date may lie ahead of its fetch time; the seek starts that much before ``from_ms``.
    """
    stats = stats if stats is not None else RangeStats()
    if not bus.partitions(topic):
        raise BusError(f"{bus.kind} bus: topic {topic!r} does not exist; nothing to replay")
    ends = bus.end_offsets(topic)
    stats.end_offsets = dict(ends)
    stats.partitions = len(ends)
    parts = _Partitions(ends)
    if parts.finished():
        return
    seek_ms = None if from_ms is None else max(0, from_ms - int(future_tolerance_s * 1000))
    if bus.kind == "kafka":
        messages = _kafka_messages(bus, topic, seek_ms, parts, poll_records, idle_timeout_s)
    else:
        messages = _group_messages(bus, topic, seek_ms, parts, poll_records, idle_timeout_s)
    for msg in messages:
        try:
            news = decode_news(msg.value)
        except RecordError as exc:
            yield Skipped(f"{msg.topic}:{msg.partition}@{msg.offset}", str(exc))
            continue
        published_ms = int(news.published_at.timestamp() * 1000)
        if from_ms is not None and published_ms < from_ms:
            stats.before_range += 1
        elif to_ms is not None and published_ms >= to_ms:
            stats.after_range += 1
        else:
            yield news


def _group_messages(
    bus: Bus,
    topic: str,
    seek_ms: int | None,
    parts: _Partitions,
    poll_records: int,
    idle_timeout_s: float,
) -> Iterator[Message]:
    import time

    consumer = bus.consumer(f"riskwire-replay-{uuid.uuid4().hex}", [topic], from_beginning=True)
    position = getattr(consumer, "position", None)  # the embedded consumer exposes it
    try:
        if seek_ms is not None:
            consumer.seek_to_timestamp(seek_ms)
        else:
            consumer.seek_to_beginning()
        idle_since = time.monotonic()
        while not parts.finished():
            msgs = consumer.poll(max_records=poll_records, timeout=0.2)
            if msgs:
                idle_since = time.monotonic()
            for msg in msgs:
                if parts.see(msg):
                    yield msg
            if callable(position):
                for tp in consumer.assignment():
                    parts.at(tp.partition, position(tp))
            if not msgs and time.monotonic() - idle_since > idle_timeout_s:
                # Everything up to the captured ends already exists: a long silence means the
                # rest was removed by retention (or the seek passed it).
                log.warning("bus reader idle; ending the range early", extra={"topic": topic})
                return
    finally:
        consumer.close()  # leaves the throw-away group; it never committed anything


def _kafka_messages(
    bus: Bus,
    topic: str,
    seek_ms: int | None,
    parts: _Partitions,
    poll_records: int,
    idle_timeout_s: float,
) -> Iterator[Message]:
    """Group-less: ``assign()`` every partition; nothing joins a group, nothing can commit."""
    import time

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaConsumer
        from kafka import TopicPartition as KafkaTP
        from kafka import errors as kafka_errors

    from monitor.bus.kafka import KafkaBus, _client_options

    assert isinstance(bus, KafkaBus)
    options: dict[str, Any] = _client_options(bus.config)
    options["client_id"] = f"{bus.config.client_id}-replay"
    try:
        consumer = KafkaConsumer(
            **options,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            allow_auto_create_topics=False,
            bootstrap_timeout_ms=bus.config.request_timeout_ms,
        )
    except kafka_errors.KafkaError as exc:
        raise BusError(f"kafka: cannot reach {bus.bootstrap}: {exc}") from exc
    timeout_ms = bus.config.request_timeout_ms
    try:
        tps = [KafkaTP(topic, p) for p in sorted(parts.ends) if p not in parts.done]
        consumer.assign(tps)
        if seek_ms is None:
            consumer.seek_to_beginning(*tps)
        else:
            found = consumer.offsets_for_times({tp: seek_ms for tp in tps}, timeout_ms=timeout_ms)
            for tp in tps:
                hit = found.get(tp)
                if hit is None:  # nothing at or after `from` in this partition
                    parts.done.add(tp.partition)
                else:
                    consumer.seek(tp, hit.offset)
        idle_since = time.monotonic()
        while not parts.finished():
            batch = consumer.poll(timeout_ms=200, max_records=poll_records)
            if batch:
                idle_since = time.monotonic()
            for (t, p), records in batch.items():
                for r in records:
                    msg = Message(t, p, r.offset, r.key, r.value, r.timestamp)
                    if parts.see(msg):
                        yield msg
            for tp in consumer.assignment():
                if tp.partition not in parts.done:
                    parts.at(tp.partition, consumer.position(tp, timeout_ms=timeout_ms))
            finished = [tp for tp in consumer.assignment() if tp.partition in parts.done]
            if finished:
                consumer.pause(*finished)
            if not batch and time.monotonic() - idle_since > idle_timeout_s:
                log.warning("bus reader idle; ending the range early", extra={"topic": topic})
                return
    except kafka_errors.KafkaError as exc:
        raise BusError(f"kafka: replay read of {topic!r} failed: {exc}") from exc
    finally:
        consumer.close(autocommit=False, timeout_ms=1000)
