"""The three records that travel between stages (see DESIGN.md), as immutable typed classes.

Each record carries a ``schema`` field such as ``riskwire.news/1``. Decoding checks the schema
name and major version first, then the fields, and raises :class:`RecordError` naming what was
wrong. Unknown extra fields are ignored so that additive changes within a major version do not
break older consumers.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitor.errors import RecordError

NEWS_SCHEMA = "riskwire.news/1"
SCORED_SCHEMA = "riskwire.scored/1"
ALERT_SCHEMA = "riskwire.alert/1"


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(ts: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix and millisecond precision."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def item_id_for(url_or_guid: str) -> str:
    """Stable item id: sha256 of the canonical URL or GUID, 24 hex characters."""
    return hashlib.sha256(url_or_guid.encode("utf-8")).hexdigest()[:24]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    SCHEMA: ClassVar[str]

    def to_json(self) -> bytes:
        doc = self.model_dump(mode="json")
        doc["schema"] = self.SCHEMA
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordError(f"{cls.__name__}: not JSON: {exc}") from exc
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> Self:
        if not isinstance(doc, dict):
            raise RecordError(f"{cls.__name__}: expected a JSON object, got {type(doc).__name__}")
        schema = doc.get("schema")
        want_name, want_major = cls.SCHEMA.split("/")
        if not isinstance(schema, str) or "/" not in schema:
            raise RecordError(f"{cls.__name__}: missing or malformed 'schema' field: {schema!r}")
        name, major = schema.split("/", 1)
        if name != want_name or major.split(".")[0] != want_major:
            raise RecordError(
                f"{cls.__name__}: schema {schema!r} is not {cls.SCHEMA!r} (wrong record type or "
                "an incompatible major version)"
            )
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                for e in exc.errors()
            )
            raise RecordError(f"{cls.__name__}: {problems}") from exc


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (RFC 3339)")
    return value.astimezone(UTC)


class EntityMatch(BaseModel):
    """An entity found in a news item: ``matched`` is the text that matched."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    id: str
    name: str
    matched: str
    relevance: float = Field(default=1.0, ge=0.0, le=1.0)
    novelty: float | None = Field(default=None, ge=0.0, le=1.0)


class NewsItem(_Record):
    """``riskwire.news/1`` on riskwire.news.raw, keyed by item id."""

    SCHEMA: ClassVar[str] = NEWS_SCHEMA
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    url: str
    title: str
    summary: str = ""
    published_at: datetime
    fetched_at: datetime
    lang: str = "en"
    entities: tuple[EntityMatch, ...] = ()
    tags: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    novelty: float | None = Field(default=None, ge=0.0, le=1.0)

    _utc_published = field_validator("published_at", "fetched_at")(_utc)

    @property
    def key(self) -> str:
        return self.id

    @property
    def primary_entity(self) -> str | None:
        if not self.entities:
            return None
        return max(self.entities, key=lambda e: e.relevance).id


class Sentiment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    label: Literal["negative", "neutral", "positive"]
    probs: dict[str, float]
    polarity: float = Field(ge=-1.0, le=1.0)

    @field_validator("probs")
    @classmethod
    def _three_classes(cls, probs: dict[str, float]) -> dict[str, float]:
        missing = {"negative", "neutral", "positive"} - set(probs)
        if missing:
            raise ValueError(f"probs lacks {sorted(missing)}")
        return probs


class RiskTag(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    tag: str
    p: float = Field(ge=0.0, le=1.0)


class ModelInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    name: str
    version: str
    sha256: str


class Timings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    fetched_to_scored_ms: float
    inference_ms: float


class ScoredItem(NewsItem):
    """``riskwire.scored/1`` on riskwire.news.scored, keyed by primary entity, else item id."""

    SCHEMA: ClassVar[str] = SCORED_SCHEMA
    sentiment: Sentiment
    risk: tuple[RiskTag, ...] = ()
    model: ModelInfo
    timings: Timings

    @property
    def key(self) -> str:
        return self.primary_entity or self.id

    @classmethod
    def from_news(
        cls,
        news: NewsItem,
        *,
        sentiment: Sentiment,
        risk: tuple[RiskTag, ...],
        model: ModelInfo,
        timings: Timings,
    ) -> ScoredItem:
        fields = news.model_dump()
        return cls(**fields, sentiment=sentiment, risk=risk, model=model, timings=timings)


class AlertItem(BaseModel):
    """An item behind an alert, with what the desk needs to judge it without a lookup."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    id: str
    url: str
    title: str
    source: str | None = None
    sentiment: str | None = None
    polarity: float | None = None
    tags: tuple[str, ...] = ()
    novelty: float | None = None
    published_at: datetime | None = None


class Alert(_Record):
    """``riskwire.alert/1`` on riskwire.alerts, keyed by fingerprint."""

    SCHEMA: ClassVar[str] = ALERT_SCHEMA
    id: str = Field(min_length=1)
    fingerprint: str = Field(min_length=1)
    rule: str
    severity: str
    status: Literal["firing", "resolved"]
    entity: str | None = None
    title: str
    summary: str = ""
    items: tuple[AlertItem, ...] = ()
    starts_at: datetime
    ends_at: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    explain: dict[str, Any] = Field(default_factory=dict)

    _utc_starts = field_validator("starts_at")(_utc)

    @property
    def key(self) -> str:
        return self.fingerprint


def decode_any(data: bytes) -> NewsItem | ScoredItem | Alert:
    """Decode whichever record type ``data`` declares in its ``schema`` field."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"not JSON: {exc}") from exc
    schema = doc.get("schema") if isinstance(doc, dict) else None
    kinds: dict[str, type[NewsItem] | type[ScoredItem] | type[Alert]] = {
        "riskwire.news": NewsItem,
        "riskwire.scored": ScoredItem,
        "riskwire.alert": Alert,
    }
    name = schema.split("/")[0] if isinstance(schema, str) else None
    if name not in kinds:
        raise RecordError(f"unknown record schema {schema!r}")
    return kinds[name].from_dict(doc)
