"""Config section `alerts:` of the daemon's YAML file: rules, receivers, the routing tree, delivery.

Rules can be written inline (``alerts.rules``) or in a separate file (``alerts.rules_file``), which
may also hold ``watchlists``, ``receivers``, ``route`` and ``inhibit_rules``. A rules file is
validated on its own, and its problems are reported as ``rules.yaml:LINE: key.path: reason``.
Durations are numbers of seconds or strings such as ``500ms``, ``30s``, ``5m``, ``2h``, ``7d``.
Secrets (webhook signing keys, Slack/Teams URLs) are ``SecretStr``: write them as ``${ENV}``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from monitor.score.manifest import RISK_TAGS

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*")
_NAME = r"^[A-Za-z0-9_.:-]+$"


def parse_duration(value: Any) -> float:
    """``30`` / ``"30s"`` / ``"5m"`` / ``"2h"`` / ``"7d"`` / ``"500ms"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.fullmatch(value)
        if m is None:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 2h, 7d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"not a duration: {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _opt_duration(value: Any) -> float | None:
    return None if value is None else parse_duration(value)


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc
    return pattern


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# --- rules -----------------------------------------------------------------------------------


class Bound(Strict):
    """A range: ``{min: X}``, ``{max: Y}`` or both (inclusive)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def within(self, lo: float, hi: float, what: str) -> None:
        for name, v in (("min", self.min), ("max", self.max)):
            if v is not None and not lo <= v <= hi:
                raise ValueError(f"{what} {name} {v} is impossible: it must lie in [{lo}, {hi}]")

    def holds(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class RiskMatch(Strict):
    tag: str = Field(description="a risk tag, e.g. fraud_misconduct")
    min_p: float = Field(default=0.5, description="minimum probability of the tag, in [0, 1]")

    @field_validator("tag")
    @classmethod
    def _known(cls, tag: str) -> str:
        if tag not in RISK_TAGS:
            raise ValueError(f"unknown risk tag {tag!r}; tags: {', '.join(RISK_TAGS)}")
        return tag

    @field_validator("min_p")
    @classmethod
    def _prob(cls, p: float) -> float:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability {p} is impossible: it must lie in [0, 1]")
        return p


class MatchConfig(Strict):
    """Which scored items a rule looks at. Every given filter must hold (AND); lists are ORs."""

    sentiment: Annotated[
        list[Literal["negative", "neutral", "positive"]] | None, BeforeValidator(_as_list)
    ] = Field(default=None, description="sentiment label(s) the item must have")
    min_probability: float | None = Field(
        default=None, description="minimum probability of the item's sentiment label, in [0, 1]"
    )
    polarity: Bound | None = Field(default=None, description="polarity range within [-1, 1]")
    risk: list[RiskMatch] = Field(
        default_factory=list, description="any of these risk tags at their minimum probability"
    )
    entities: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        default_factory=list, description="entity ids (any of)"
    )
    watchlists: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        default_factory=list, description="names of watchlists (alerts.watchlists); any entity in"
    )
    sources: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        default_factory=list, description="feed ids (any of)"
    )
    keywords: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        default_factory=list, description="case-insensitive words or phrases in the title (any of)"
    )
    title_regex: str | None = Field(default=None, description="Python regex searched in the title")
    min_novelty: float | None = Field(default=None, description="minimum novelty, in [0, 1]")

    _re = field_validator("title_regex")(lambda v: v if v is None else _check_regex(v))

    @model_validator(mode="after")
    def _ranges(self) -> MatchConfig:
        for name in ("min_probability", "min_novelty"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} {v} is impossible: it must lie in [0, 1]")
        if self.polarity is not None:
            self.polarity.within(-1.0, 1.0, "polarity")
        return self


class CountBound(Bound):
    @model_validator(mode="after")
    def _count(self) -> CountBound:
        for v in (self.min, self.max):
            if v is not None and v < 0:
                raise ValueError(f"count {v} is impossible: counts are >= 0")
        return self


class ZScoreConfig(Strict):
    """z = (mean polarity in the window - baseline mean) / (baseline std / sqrt(n in window))."""

    min: float | None = None
    max: float | None = None
    baseline: Duration = Field(default=7 * 86400.0, description="trailing baseline length")
    min_samples: int = Field(default=20, ge=2, description="items the baseline needs first")
    min_std: float = Field(default=0.05, gt=0, description="floor of the baseline std")

    @model_validator(mode="after")
    def _ordered(self) -> ZScoreConfig:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def holds(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class WindowConfig(Strict):
    size: Duration = Field(description="sliding event-time window, e.g. 1h")
    allowed_lateness: Duration = Field(
        default=300.0, description="how late (behind the newest event) an item may arrive"
    )

    @field_validator("size")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("window size must be > 0")
        return v


class ConditionConfig(Strict):
    """Aggregates over the window; every given one must hold."""

    count: CountBound | None = Field(default=None, description="items in the window")
    mean_polarity: Bound | None = Field(default=None, description="mean polarity, in [-1, 1]")
    share_negative: Bound | None = Field(default=None, description="share labelled negative")
    zscore: ZScoreConfig | None = Field(
        default=None, description="window mean against the group's trailing baseline"
    )

    @model_validator(mode="after")
    def _ranges(self) -> ConditionConfig:
        if self.mean_polarity is not None:
            self.mean_polarity.within(-1.0, 1.0, "mean_polarity")
        if self.share_negative is not None:
            self.share_negative.within(0.0, 1.0, "share_negative")
        if (
            self.count is None
            and self.mean_polarity is None
            and self.share_negative is None
            and self.zscore is None
        ):
            raise ValueError("a condition needs count, mean_polarity, share_negative or zscore")
        return self


class RuleConfig(Strict):
    name: str = Field(pattern=_NAME, description="unique rule name")
    description: str = Field(default="", description="shown in the alert's explanation")
    match: MatchConfig = Field(default_factory=MatchConfig, description="which items count")
    group_by: Literal["entity", "source", "rule"] = Field(
        default="entity", description="what one alert is about: entity (default), source, or rule"
    )
    window: WindowConfig | None = Field(
        default=None, description="aggregate over a sliding window; without it every item alerts"
    )
    condition: ConditionConfig | None = Field(
        default=None, description="aggregates over the window that must all hold"
    )
    severity: Literal["info", "warning", "critical"] = Field(
        default="warning", description="info, warning or critical"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="extra labels for routing")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="title/summary/...; {entity}, {count}, ... are filled"
    )
    send_resolved: bool = Field(default=False, description="notify when a window condition clears")
    max_items: int = Field(default=10, ge=1, le=100, description="items carried by one alert")

    @model_validator(mode="after")
    def _window_needs_condition(self) -> RuleConfig:
        if self.window is not None and self.condition is None:
            raise ValueError("a rule with a window needs a condition")
        if self.condition is not None and self.window is None:
            raise ValueError("a condition needs a window")
        if self.send_resolved and self.window is None:
            raise ValueError("send_resolved needs a window (only windowed conditions clear)")
        z = self.condition.zscore if self.condition else None
        if z is not None and self.window is not None and z.baseline <= self.window.size:
            raise ValueError("zscore.baseline must be longer than the window")
        return self


class InhibitRule(Strict):
    """While a ``source`` alert fires, ``target`` alerts with the same ``equal`` fields wait."""

    source: dict[str, str] = Field(description="labels of the muting alert")
    target: dict[str, str] = Field(description="labels of the muted alerts")
    equal: list[str] = Field(
        default_factory=lambda: ["entity"], description="labels both must share"
    )


# --- receivers and routing -------------------------------------------------------------------


class _Receiver(Strict):
    name: str = Field(pattern=_NAME)
    timeout_s: float | None = Field(default=None, gt=0, le=300, description="default: delivery")
    concurrency: int | None = Field(default=None, ge=1, le=64, description="default: delivery")
    max_age: float | None = Field(default=None, description="default: delivery.max_age")

    _durations = field_validator("max_age", mode="before")(_opt_duration)


def _http_url(url: str) -> str:
    if not re.match(r"^https?://[^\s/]+", url):
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url


class WebhookReceiver(_Receiver):
    type: Literal["webhook"]
    url: str
    secret: SecretStr | None = Field(default=None, description="HMAC key: write ${ENV}")
    headers: dict[str, str] = Field(default_factory=dict)
    template: str | None = Field(default=None, description="Jinja2 body template (sandboxed)")
    content_type: str = "application/json"

    _url = field_validator("url")(lambda v: _http_url(v))

    @field_validator("template")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            from jinja2 import TemplateSyntaxError
            from jinja2.sandbox import SandboxedEnvironment

            try:
                SandboxedEnvironment().from_string(v)
            except TemplateSyntaxError as exc:
                raise ValueError(f"template does not compile: {exc}") from exc
        return v


class SlackReceiver(_Receiver):
    type: Literal["slack"]
    url: SecretStr = Field(description="incoming-webhook URL: write ${ENV}")
    channel: str | None = None
    username: str = "riskwire"

    @field_validator("url")
    @classmethod
    def _u(cls, v: SecretStr) -> SecretStr:
        _http_url(v.get_secret_value())
        return v


class TeamsReceiver(_Receiver):
    type: Literal["teams"]
    url: SecretStr = Field(description="workflow / incoming-webhook URL: write ${ENV}")

    @field_validator("url")
    @classmethod
    def _u(cls, v: SecretStr) -> SecretStr:
        _http_url(v.get_secret_value())
        return v


class AlertmanagerReceiver(_Receiver):
    type: Literal["alertmanager"]
    url: str = Field(description="e.g. http://alertmanager:9093/api/v2/alerts")
    headers: dict[str, str] = Field(default_factory=dict)
    generator_url: str = ""

    _url = field_validator("url")(lambda v: _http_url(v))


class FileReceiver(_Receiver):
    type: Literal["file"]
    path: str = Field(description="JSON lines file (relative to data_dir), or - for stdout")


ReceiverConfig = Annotated[
    WebhookReceiver | SlackReceiver | TeamsReceiver | AlertmanagerReceiver | FileReceiver,
    Field(discriminator="type"),
]


class RouteConfig(Strict):
    """A node of the routing tree. Children inherit what they do not set."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    receiver: str | None = Field(default=None, description="receiver name (required at the root)")
    match: dict[str, str] = Field(
        default_factory=dict, description="equality on rule/severity/entity/status/labels"
    )
    match_re: dict[str, str] = Field(default_factory=dict, description="full-match regexes")
    continue_: bool = Field(default=False, alias="continue", description="try later siblings too")
    group_by: list[str] | None = Field(
        default=None, description="alert fields/labels that make a group (default alerts.group_by)"
    )
    group_wait: float | None = Field(default=None, description="default alerts.group_wait")
    group_interval: float | None = Field(default=None, description="default alerts.group_interval")
    repeat_interval: float | None = Field(
        default=None, description="default alerts.repeat_interval"
    )
    fallback: str | None = Field(
        default=None, description="receiver that also gets an alert this one keeps failing"
    )
    fallback_after: float | None = Field(
        default=None, description="hand to the fallback after failing this long (default 5m)"
    )

    _durations = field_validator(
        "group_wait", "group_interval", "repeat_interval", "fallback_after", mode="before"
    )(_opt_duration)
    # A Sequence, not a list: the README's config reference expands list items, and this
    # model contains itself.
    routes: Sequence[RouteConfig] = Field(default_factory=list, description="child routes")

    @field_validator("match_re")
    @classmethod
    def _regexes(cls, v: dict[str, str]) -> dict[str, str]:
        for pattern in v.values():
            _check_regex(pattern)
        return v

    def receivers(self) -> set[str]:
        out = {r for r in (self.receiver, self.fallback) if r}
        for child in self.routes:
            out |= child.receivers()
        return out


class DeliveryConfig(Strict):
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="per HTTP attempt")
    max_age: Duration = Field(default=86400.0, gt=0, description="retry until this old, then dead")
    backoff_base: Duration = Field(default=1.0, gt=0, description="first retry delay")
    backoff_max: Duration = Field(default=300.0, gt=0, description="longest retry delay")
    concurrency: int = Field(default=4, ge=1, le=64, description="parallel sends per receiver")
    poll_interval: Duration = Field(default=0.5, gt=0, description="outbox scan when idle")
    lease: float | None = Field(
        default=None, description="claim on a batch being sent; default timeout_s*2+5s"
    )

    _durations = field_validator("lease", mode="before")(_opt_duration)


class _AlertsDoc(Strict):
    """What both the inline section and a rules file may hold."""

    rules: list[RuleConfig] = Field(
        default_factory=list, description="alert rules (grammar: monitor/alerts/README.md)"
    )
    watchlists: dict[str, list[str]] = Field(
        default_factory=dict, description="named groups of entity ids, used by match.watchlists"
    )
    receivers: list[ReceiverConfig] = Field(
        default_factory=list, description="webhook, slack, teams, alertmanager or file receivers"
    )
    route: RouteConfig | None = Field(default=None, description="the routing tree's root")
    inhibit_rules: list[InhibitRule] = Field(
        default_factory=list, description="mute target alerts while a source alert fires"
    )


def _cross_check(doc: _AlertsDoc) -> None:
    names = [r.name for r in doc.rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate rule names: {', '.join(dupes)}")
    for rule in doc.rules:
        missing = [w for w in rule.match.watchlists if w not in doc.watchlists]
        if missing:
            raise ValueError(f"rule {rule.name!r} names unknown watchlists {missing}")
    rnames = [r.name for r in doc.receivers]
    dupes = sorted({n for n in rnames if rnames.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate receiver names: {', '.join(dupes)}")
    if doc.route is not None:
        if doc.route.receiver is None:
            raise ValueError("route.receiver is required at the root of the routing tree")
        unknown = sorted(doc.route.receivers() - set(rnames))
        if unknown:
            raise ValueError(f"route names unknown receivers {unknown}; defined: {rnames}")


class RulesFile(_AlertsDoc):
    @model_validator(mode="after")
    def _check(self) -> RulesFile:
        _cross_check(self)
        return self


def load_rules_file(path: str | Path) -> RulesFile:
    """Read and validate a rules file; :class:`ConfigError` lists ``file:line: key: reason``."""
    from monitor import config as core

    document = core.read_yaml_document(path)
    doc, problems = core.interpolate_env(document, os.environ)
    return core.validate_document(RulesFile, doc, document, problems=problems)


class AlertsConfig(_AlertsDoc):
    """The alerter. Give ``rules`` inline or a ``rules_file`` (or both: they are merged)."""

    enabled: bool = Field(default=True, description="run rules when the alerter role runs")
    rules_file: Path | None = Field(
        default=None, description="YAML file with rules (and optionally watchlists, receivers...)"
    )
    outbox_path: Path | None = Field(
        default=None, description="SQLite outbox and alert state; default <data_dir>/alerts.sqlite"
    )
    group_by: list[str] = Field(
        default_factory=lambda: ["rule", "entity"], description="default route grouping"
    )
    group_wait: Duration = Field(default=5.0, description="wait before a new group's first send")
    group_interval: Duration = Field(default=60.0, description="wait between sends of a group")
    repeat_interval: Duration = Field(
        default=4 * 3600.0, description="a fingerprint is not notified again before this"
    )
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    producer_topic: bool = Field(default=True, description="produce every alert to topics.alerts")
    checkpoint_interval: Duration = Field(
        default=5.0, description="commit consumer offsets at most this often (replay is safe)"
    )
    retention: Duration = Field(
        default=14 * 86400.0,
        description="forget delivered alerts after this (keep it above the bus retention)",
    )

    _file: RulesFile | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _merge(self) -> AlertsConfig:
        if self.rules_file is not None:
            # A ConfigError (not a ValueError) passes through pydantic untouched, so the rules
            # file's own file:line problems reach the user as they are.
            self._file = load_rules_file(self.rules_file)
        _cross_check(self.effective)
        return self

    @property
    def effective(self) -> _AlertsDoc:
        """Inline section and rules file merged (inline route wins)."""
        f = self._file
        if f is None:
            return _AlertsDoc(
                rules=self.rules,
                watchlists=self.watchlists,
                receivers=self.receivers,
                route=self.route,
                inhibit_rules=self.inhibit_rules,
            )
        return _AlertsDoc(
            rules=[*self.rules, *f.rules],
            watchlists={**f.watchlists, **self.watchlists},
            receivers=[*self.receivers, *f.receivers],
            route=self.route or f.route,
            inhibit_rules=[*self.inhibit_rules, *f.inhibit_rules],
        )

    def outbox(self, data_dir: Path) -> Path:
        return self.outbox_path or data_dir / "alerts.sqlite"
