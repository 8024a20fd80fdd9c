"""Replay output: one flat row per scored item and per alert, as JSONL, CSV or Parquet.

Files in ``--out DIR``: ``items.<ext>`` and ``alerts.<ext>`` (flat rows for pandas / DuckDB),
plus ``alerts.records.jsonl`` with each alert's full ``riskwire.alert/1`` record (items and
explanation as the desk would have received them). Rows are flushed every ``flush_every`` rows
and on close, so an interrupted replay leaves readable files with what it had done.

Risk columns: ``risk_<tag>`` holds every tag's probability (the replay decodes with thresholds
at 0, see monitor.replay.driver.every_tag); ``risk_tags`` lists the tags at or above the model's
calibrated thresholds, which is what the worker emits and what the rules see.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from monitor.records import Alert, ScoredItem, rfc3339
from monitor.replay.errors import ReplayError
from monitor.score.manifest import RISK_TAGS
from monitor.score.text import UNSCORED_PREFIX

Format = Literal["jsonl", "csv", "parquet"]
FORMATS: tuple[Format, ...] = ("jsonl", "csv", "parquet")

ITEM_COLUMNS: tuple[str, ...] = (
    "id",
    "source",
    "published_at",
    "fetched_at",
    "title",
    "url",
    "entity",
    "entities",
    "sentiment_label",
    "p_negative",
    "p_neutral",
    "p_positive",
    "polarity",
    *(f"risk_{t}" for t in RISK_TAGS),
    "risk_tags",
    "flags",
    "unscored",
    "model_name",
    "model_version",
)
ALERT_COLUMNS: tuple[str, ...] = (
    "id",
    "rule",
    "severity",
    "status",
    "entity",
    "starts_at",
    "ends_at",
    "n_items",
    "item_ids",
    "fingerprint",
    "title",
    "summary",
    "explain",
)
_TIME_COLUMNS = {"published_at", "fetched_at", "starts_at", "ends_at"}
_FLOAT_COLUMNS = {"p_negative", "p_neutral", "p_positive", "polarity"} | {
    f"risk_{t}" for t in RISK_TAGS
}


def item_row(rec: ScoredItem, live: ScoredItem | None = None) -> dict[str, Any]:
    """``rec`` with every tag's probability; ``live`` (default ``rec``) with the tags at or
    above threshold, as the worker emits them (``risk_tags``)."""
    live = live or rec
    probs = rec.sentiment.probs
    risk = {r.tag: r.p for r in rec.risk}
    unscored = next(
        (f[len(UNSCORED_PREFIX) :] for f in rec.flags if f.startswith(UNSCORED_PREFIX)), None
    )
    row: dict[str, Any] = {
        "id": rec.id,
        "source": rec.source,
        "published_at": rec.published_at,
        "fetched_at": rec.fetched_at,
        "title": rec.title,
        "url": rec.url,
        "entity": rec.primary_entity,
        "entities": ",".join(e.id for e in rec.entities),
        "sentiment_label": None if unscored else rec.sentiment.label,
        "p_negative": probs.get("negative"),
        "p_neutral": probs.get("neutral"),
        "p_positive": probs.get("positive"),
        "polarity": rec.sentiment.polarity,
    }
    for tag in RISK_TAGS:
        row[f"risk_{tag}"] = risk.get(tag)
    row["risk_tags"] = ",".join(r.tag for r in live.risk)
    row["flags"] = ",".join(rec.flags)
    row["unscored"] = unscored
    row["model_name"] = rec.model.name
    row["model_version"] = rec.model.version
    return row


def alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "rule": alert.rule,
        "severity": alert.severity,
        "status": alert.status,
        "entity": alert.entity,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        # Items in the window (the alert itself carries at most max_items of them).
        "n_items": int(alert.explain.get("values", {}).get("count", len(alert.items))),
        "item_ids": json.dumps([i.id for i in alert.items]),
        "fingerprint": alert.fingerprint,
        "title": alert.title,
        "summary": alert.summary,
        "explain": json.dumps(alert.explain, default=str, separators=(",", ":")),
    }


def _text_value(v: Any) -> Any:
    if hasattr(v, "astimezone"):
        return rfc3339(v)
    return v


class RowSink(Protocol):
    path: Path

    def write(self, row: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = tuple(columns)
        self._fh: IO[str] = path.open("w", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        doc = {c: _text_value(row.get(c)) for c in self.columns}
        self._fh.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class CsvSink:
    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = tuple(columns)
        self._fh: IO[str] = path.open("w", encoding="utf-8", newline="")
        self._csv = csv.DictWriter(self._fh, fieldnames=self.columns, extrasaction="ignore")
        self._csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self._csv.writerow({c: _text_value(row.get(c)) for c in self.columns})

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise ReplayError(
            "--format parquet needs pyarrow, which is not installed: "
            "pip install 'riskwire[replay]' (or choose --format jsonl or csv)"
        ) from exc
    return pyarrow


class ParquetSink:
    """Row groups of ``flush_every`` rows; the file is valid (footer written) after close."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        pa = _pyarrow()
        self._pa = pa
        self.path = path
        self.columns = tuple(columns)
        fields = []
        for c in self.columns:
            if c in _TIME_COLUMNS:
                kind = pa.timestamp("ms", tz="UTC")
            elif c in _FLOAT_COLUMNS:
                kind = pa.float64()
            elif c == "n_items":
                kind = pa.int64()
            else:
                kind = pa.string()
            fields.append(pa.field(c, kind))
        self.schema = pa.schema(fields)
        self._rows: list[dict[str, Any]] = []
        self._writer = pa.parquet.ParquetWriter(str(path), self.schema)

    def write(self, row: dict[str, Any]) -> None:
        self._rows.append(row)

    def flush(self) -> None:
        if not self._rows:
            return
        cols = {c: [r.get(c) for r in self._rows] for c in self.columns}
        self._writer.write_table(self._pa.Table.from_pydict(cols, schema=self.schema))
        self._rows = []

    def close(self) -> None:
        self.flush()
        self._writer.close()


def _sink(fmt: Format, path: Path, columns: Sequence[str]) -> RowSink:
    if fmt == "parquet":
        return ParquetSink(path, columns)
    if fmt == "csv":
        return CsvSink(path, columns)
    return JsonlSink(path, columns)


def check_format(fmt: str) -> None:
    """Refuse an unknown format, or Parquet without pyarrow, before any work is done."""
    if fmt not in FORMATS:
        raise ReplayError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        _pyarrow()


class ReplayWriter:
    """Items and alerts of one model into one directory."""

    def __init__(self, out_dir: Path, fmt: Format = "jsonl", *, flush_every: int = 5000) -> None:
        check_format(fmt)  # before any file is created
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        self.format = fmt
        self.flush_every = flush_every
        self.items = _sink(fmt, out_dir / f"items.{fmt}", ITEM_COLUMNS)
        self.alerts = _sink(fmt, out_dir / f"alerts.{fmt}", ALERT_COLUMNS)
        self._records: IO[str] = (out_dir / "alerts.records.jsonl").open("w", encoding="utf-8")
        self._pending = 0
        self.n_items = 0
        self.n_alerts = 0

    @property
    def paths(self) -> list[Path]:
        return [self.items.path, self.alerts.path, self.out_dir / "alerts.records.jsonl"]

    def item(self, rec: ScoredItem, live: ScoredItem | None = None) -> None:
        self.items.write(item_row(rec, live))
        self.n_items += 1
        self._tick()

    def alert(self, alert: Alert) -> None:
        self.alerts.write(alert_row(alert))
        self._records.write(alert.to_json().decode("utf-8") + "\n")
        self.n_alerts += 1
        self._tick()

    def _tick(self) -> None:
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        self.items.flush()
        self.alerts.flush()
        self._records.flush()
        self._pending = 0

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.items.close()
            self.alerts.close()
            self._records.close()
