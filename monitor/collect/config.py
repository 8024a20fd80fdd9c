"""Config section `collect:` of the daemon's YAML file: the feed registry and how to poll it.

Feeds are listed inline (``collect.feeds``) and/or in a YAML file that ``collect.feeds_file``
names (a list of feeds, or a mapping with a ``feeds:`` list). On SIGHUP the collector re-reads
the config file it was started with (and ``feeds_file``), and adds, changes or removes jobs.

Example::

    collect:
      watchlist: monitor/demo/watchlist.yaml
      feeds:
        - id: wire-markets
          url: https://example.com/markets.rss
          interval_s: 300
          tags: [wire]
          headers: {Authorization: "Bearer ${WIRE_TOKEN}"}
        - id: demo
          kind: directory
          path: monitor/demo/feeds
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from monitor.errors import ConfigError

FeedKind = Literal["rss", "atom", "jsonfeed", "json", "file", "directory"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JsonMapping(_Strict):
    """Where a generic JSON API keeps its items and their fields (dotted paths)."""

    items: str = Field(default="items", description="dotted path to the list of items ('' = root)")
    id: str | None = Field(default="id", description="field with a stable id (else the URL)")
    title: str = Field(default="title", description="field with the headline")
    url: str = Field(default="url", description="field with the article URL")
    summary: str | None = Field(default="summary", description="field with the summary")
    published: str | None = Field(default="published_at", description="field with the date")


class FeedConfig(_Strict):
    """One feed of the registry."""

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: FeedKind = Field(
        default="rss",
        description="rss/atom (feedparser), jsonfeed (JSON Feed 1.1), json (API with `mapping`), "
        "file (one saved feed) or directory (every saved feed in it)",
    )
    url: str | None = Field(default=None, description="http(s) URL (rss, atom, jsonfeed, json)")
    path: Path | None = Field(default=None, description="local file or directory (file/directory)")
    interval_s: float | None = Field(
        default=None, ge=1, le=86_400, description="poll interval; default collect.interval_s"
    )
    tags: tuple[str, ...] = Field(default=(), description="copied onto every item of this feed")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra request headers; use ${ENV} for secrets"
    )
    entity_hints: tuple[str, ...] = Field(
        default=(), description="watchlist ids every item of this feed is about (e.g. an IR feed)"
    )
    mapping: JsonMapping | None = Field(default=None, description="fields of a kind: json feed")
    lang: str | None = Field(default=None, description="language when the feed does not say")
    enabled: bool = Field(default=True, description="false: keep the entry, do not poll it")

    @model_validator(mode="after")
    def _source_matches_kind(self) -> FeedConfig:
        if self.kind in ("file", "directory"):
            if self.path is None:
                raise ValueError(f"kind {self.kind} needs a `path`")
        elif self.url is None:
            raise ValueError(f"kind {self.kind} needs a `url`")
        elif not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must be http:// or https://, got {self.url!r}")
        if self.kind == "json" and self.mapping is None:
            object.__setattr__(self, "mapping", JsonMapping())
        return self

    @property
    def location(self) -> str:
        return self.url if self.url is not None else str(self.path)


class HttpFetchConfig(_Strict):
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120, description="TCP/TLS connect")
    read_timeout_s: float = Field(
        default=15.0, gt=0, le=300, description="longest silence while waiting for bytes"
    )
    total_timeout_s: float = Field(default=30.0, gt=0, le=600, description="whole fetch deadline")
    max_redirects: int = Field(default=5, ge=0, le=20, description="a loop is an error at once")
    verify_tls: bool = Field(default=True, description="check server certificates")


class BackoffConfig(_Strict):
    base_s: float = Field(default=60.0, gt=0, description="delay after the first failure")
    ceiling_s: float = Field(default=3600.0, gt=0, description="longest delay; retried forever")
    jitter: float = Field(default=0.5, ge=0, le=1, description="fraction of the delay randomised")


class DedupConfig(_Strict):
    window_hours: float = Field(
        default=48.0, gt=0, le=24 * 30, description="near-duplicate titles are compared this long"
    )
    near_dup_jaccard: float = Field(
        default=0.6, gt=0, le=1, description="headline word-set similarity that is the same story"
    )
    seen_retention_days: float = Field(
        default=30.0, gt=0, description="ids and URLs are remembered this long"
    )
    novelty_window_hours: float = Field(
        default=24.0, gt=0, description="a related story's weight on novelty decays to 0 over this"
    )


class CollectConfig(_Strict):
    """The feed registry and how to poll it."""

    feeds: tuple[FeedConfig, ...] = Field(default=(), description="the feed registry (inline)")
    feeds_file: Path | None = Field(
        default=None, description="YAML file with more feeds; re-read on SIGHUP"
    )
    watchlist: Path | None = Field(default=None, description="entities to tag (YAML)")
    interval_s: float = Field(default=300.0, ge=1, le=86_400, description="default poll interval")
    interval_jitter: float = Field(
        default=0.1, ge=0, le=0.5, description="fraction of the interval randomised per run"
    )
    max_interval_s: float = Field(
        default=6 * 3600.0, ge=1, description="cap on a longer interval a feed asks for (TTL...)"
    )
    user_agent: str = Field(
        default="Riskwire/0.1 (+https://github.com/riskwire/riskwire; feed monitor)",
        min_length=1,
        description="sent with every request: say who you are and how to reach you",
    )
    max_body_mb: float = Field(default=10.0, gt=0, le=512, description="abort bodies beyond this")
    concurrency: int = Field(default=16, ge=1, le=512, description="fetches in flight overall")
    per_host_concurrency: int = Field(default=2, ge=1, le=64, description="fetches per host")
    max_entries_per_feed: int = Field(
        default=500, ge=1, le=100_000, description="entries read per poll (the newest)"
    )
    title_max_chars: int = Field(default=300, ge=20, description="longer titles are cut")
    summary_max_chars: int = Field(default=2000, ge=0, description="longer summaries are cut")
    future_tolerance_s: float = Field(
        default=600.0, ge=0, description="a date further ahead than this is replaced and flagged"
    )
    http: HttpFetchConfig = HttpFetchConfig()
    backoff: BackoffConfig = BackoffConfig()
    dedup: DedupConfig = DedupConfig()
    state_file: Path = Field(
        default=Path("collector.sqlite"), description="seen-set and feed state, under data_dir"
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> CollectConfig:
        seen: set[str] = set()
        for feed in self.feeds:
            if feed.id in seen:
                raise ValueError(f"feed id {feed.id!r} is listed twice")
            seen.add(feed.id)
        return self

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


def load_feeds_file(path: Path) -> tuple[FeedConfig, ...]:
    """Read a feeds file; errors name the file and the key path (``feeds.3.url``)."""
    try:
        doc: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"], str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"], str(path)) from exc
    if isinstance(doc, dict):
        doc = doc.get("feeds", [])
    if doc is None:
        doc = []
    if not isinstance(doc, list):
        raise ConfigError([f"{path}: expected a list of feeds"], str(path))
    problems: list[str] = []
    feeds: list[FeedConfig] = []
    for i, raw in enumerate(doc):
        try:
            feeds.append(FeedConfig.model_validate(raw))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in ("feeds", i, *err["loc"]))
                problems.append(f"{path}: {loc}: {err['msg']}")
    if problems:
        raise ConfigError(problems, str(path))
    return tuple(feeds)


def resolve_feeds(config: CollectConfig, base_dir: Path | None = None) -> tuple[FeedConfig, ...]:
    """Inline feeds plus those of ``feeds_file``; an id in both is an error."""
    feeds = list(config.feeds)
    if config.feeds_file is not None:
        path = config.feeds_file
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        ids = {f.id for f in feeds}
        for feed in load_feeds_file(path):
            if feed.id in ids:
                raise ConfigError([f"{path}: feed id {feed.id!r} is also listed inline"], str(path))
            ids.add(feed.id)
            feeds.append(feed)
    return tuple(f for f in feeds if f.enabled)
