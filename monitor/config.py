"""The daemon's configuration: one YAML file, validated at start, with one loader for every command.

Order of precedence (later wins): built-in defaults < the YAML file < ``RISKWIRE_*`` environment
overrides. Inside the YAML, ``${NAME}`` and ``${NAME:-default}`` are replaced from the
environment (use this for secrets: never write them in the file in clear).

Overrides: ``RISKWIRE_<SECTION>__<KEY>=value`` sets ``section.key`` (the value is read as a YAML
scalar), e.g. ``RISKWIRE_BUS__PARTITIONS=6``. Shortcuts: ``RISKWIRE_HTTP_PORT`` (http.port),
``RISKWIRE_BUS`` (bus.kind), ``RISKWIRE_DATA_DIR`` (data_dir), and ``RISKWIRE_KAFKA_BOOTSTRAP``
(bus.kafka.bootstrap when the file names no cluster).

Every problem is reported with the key's path, the line in the file where there is one, the bad
value and the reason; all problems are listed at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from monitor.alerts.config import AlertsConfig
from monitor.collect.config import CollectConfig
from monitor.errors import ConfigError
from monitor.score.config import ScoreConfig

ENV_PREFIX = "RISKWIRE_"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_SHORTCUTS = {
    "RISKWIRE_HTTP_PORT": ("http", "port"),
    "RISKWIRE_BUS": ("bus", "kind"),
    "RISKWIRE_DATA_DIR": ("data_dir",),
}


class Strict(BaseModel):
    """Base of every config section: frozen, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicsConfig(Strict):
    raw: str = Field(default="riskwire.news.raw", description="collected news (riskwire.news/1)")
    scored: str = Field(
        default="riskwire.news.scored", description="scored news (riskwire.scored/1)"
    )
    alerts: str = Field(default="riskwire.alerts", description="alerts (riskwire.alert/1)")


class EmbeddedBusConfig(Strict):
    path: Path | None = Field(
        default=None, description="SQLite file of the log; default <data_dir>/bus.sqlite"
    )
    retention_hours: float = Field(default=168.0, gt=0, description="drop records older than this")
    retention_mb: float = Field(default=2048.0, gt=0, description="keep each topic under this size")
    poll_interval_ms: int = Field(
        default=50, ge=1, le=10_000, description="how often an idle consumer looks for new records"
    )


class KafkaBusConfig(Strict):
    bootstrap: str = Field(
        default=DEFAULT_KAFKA_BOOTSTRAP,
        description="host:port[,host:port]; default $RISKWIRE_KAFKA_BOOTSTRAP or 127.0.0.1:19092",
    )
    client_id: str = Field(default="riskwire", description="client id prefix seen by the brokers")
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="none", description="producer compression (snappy/lz4/zstd need their codec libs)"
    )
    linger_ms: int = Field(default=5, ge=0, le=60_000, description="producer batching delay")
    batch_size: int = Field(default=65536, ge=1024, description="producer batch size in bytes")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how to talk to the brokers"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism when security_protocol is SASL_*"
    )
    sasl_username: str | None = Field(default=None, description="SASL user")
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password: use ${ENV}, never clear text"
    )
    request_timeout_ms: int = Field(default=30_000, ge=1000, description="per request")
    session_timeout_ms: int = Field(
        default=10_000, ge=1000, description="consumer group session timeout"
    )


class BusConfig(Strict):
    kind: Literal["embedded", "kafka"] | None = Field(
        default=None,
        description="embedded (default) or kafka (default when a kafka: section is given)",
    )
    partitions: int = Field(default=3, ge=1, le=1024, description="partitions per topic")
    topics: TopicsConfig = TopicsConfig()
    embedded: EmbeddedBusConfig = EmbeddedBusConfig()
    kafka: KafkaBusConfig = Field(default_factory=KafkaBusConfig)

    @model_validator(mode="before")
    @classmethod
    def _kind_from_sections(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") is None:
            data = {**data, "kind": "kafka" if "kafka" in data else "embedded"}
        return data


class HttpConfig(Strict):
    host: str = Field(default="127.0.0.1", description="bind address of /metrics /healthz /readyz")
    port: int = Field(default=9464, ge=0, le=65535, description="0 picks a free port")


class ShutdownConfig(Strict):
    grace_seconds: float = Field(
        default=10.0, gt=0, le=600, description="how long SIGTERM waits for roles to drain"
    )


class LogConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="JSON log lines on stderr at this level and above"
    )


Role = Literal["collector", "worker", "alerter"]
ALL_ROLES: tuple[Role, ...] = ("collector", "worker", "alerter")


class Config(Strict):
    """The whole configuration. Every section has defaults: an empty file is a valid config."""

    data_dir: Path = Field(default=Path("var"), description="state: embedded log, outbox, seen-set")
    roles: Annotated[list[Role], Field(min_length=1)] = Field(
        default=list(ALL_ROLES), description="roles `riskwire run` starts without --role"
    )
    bus: BusConfig = BusConfig()
    http: HttpConfig = HttpConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    log: LogConfig = LogConfig()
    collect: CollectConfig = CollectConfig()
    score: ScoreConfig = ScoreConfig()
    alerts: AlertsConfig = AlertsConfig()

    @property
    def embedded_path(self) -> Path:
        return self.bus.embedded.path or self.data_dir / "bus.sqlite"


# --- loading ---------------------------------------------------------------------------------


def _line_map(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in the YAML document to its 1-based line number."""
    lines: dict[tuple[str, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                sub = (*path, str(key_node.value))
                lines[sub] = key_node.start_mark.line + 1
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = (*path, str(i))
                lines[sub] = item.start_mark.line + 1
                walk(item, sub)

    if root is not None:
        walk(root, ())
    return lines


def _interpolate(
    value: Any, path: tuple[str, ...], env: Mapping[str, str], errors: list[str]
) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, str(k)), env, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, str(i)), env, errors) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        errors.append((".".join(path), f"environment variable ${{{name}}} is not set"))  # type: ignore[arg-type]
        return ""

    return _ENV_REF.sub(sub, value)


def _set_path(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _env_overrides(env: Mapping[str, str]) -> list[tuple[tuple[str, ...], Any, str]]:
    out: list[tuple[tuple[str, ...], Any, str]] = []
    for name, raw in sorted(env.items()):
        if name in _SHORTCUTS:
            path = _SHORTCUTS[name]
        elif name.startswith(ENV_PREFIX) and "__" in name:
            path = tuple(p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p)
        else:
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        out.append((path, value, name))
    return out


def _format_error(
    err: Any,
    lines: Mapping[tuple[str, ...], int],
    source: str,
    env_keys: Mapping[tuple[str, ...], str],
) -> str:
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "<root>"
    where = source
    # Point at the deepest key that exists in the file.
    for n in range(len(loc), 0, -1):
        if loc[:n] in env_keys:
            where = f"environment {env_keys[loc[:n]]}"
            break
        if loc[:n] in lines:
            where = f"{source}:{lines[loc[:n]]}"
            break
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{where}: {key}: {msg}{shown}"


@dataclass(frozen=True)
class YamlDocument:
    """A YAML mapping read from a file, with the line of every key path (for error messages)."""

    source: str
    doc: dict[str, Any]
    lines: Mapping[tuple[str, ...], int]


def read_yaml_document(path: str | Path | None) -> YamlDocument:
    """Read one YAML mapping (``None``: an empty document). Raises :class:`ConfigError`."""
    source = str(path) if path is not None else "<defaults>"
    text = ""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"{source}: cannot read: {exc.strerror}"], source) from exc
    try:
        doc = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError([f"{where}: not valid YAML: {exc}"], source) from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(
            [f"{source}: the top level must be a mapping, got {type(doc).__name__}"], source
        )
    return YamlDocument(source, doc, _line_map(text))


def interpolate_env(
    document: YamlDocument, env: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """Replace ``${NAME}`` / ``${NAME:-default}``; returns the new mapping and the problems."""
    raw_errors: list[Any] = []
    doc = _interpolate(document.doc, (), env, raw_errors)
    problems = [
        f"{document.source}:{document.lines.get(tuple(p.split('.')), '?')}: {p}: {why}"
        for p, why in raw_errors
    ]
    return doc, problems


M = TypeVar("M", bound=BaseModel)


def validate_document(
    model: type[M],
    doc: dict[str, Any],
    document: YamlDocument,
    *,
    problems: Sequence[str] = (),
    env_keys: Mapping[tuple[str, ...], str] | None = None,
) -> M:
    """Validate ``doc`` as ``model``; every problem (and the ``problems`` found before) is
    reported as ``file:line: key.path: reason`` in one :class:`ConfigError`."""
    found = list(problems)
    try:
        parsed = model.model_validate(doc)
    except ValidationError as exc:
        found += [
            _format_error(e, document.lines, document.source, env_keys or {}) for e in exc.errors()
        ]
        raise ConfigError(found, document.source) from exc
    if found:
        raise ConfigError(found, document.source)
    return parsed


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load, interpolate, override and validate. Raises :class:`ConfigError` listing every problem.

    ``overrides`` maps dotted key paths to values (used by CLI flags such as ``--http-port``).
    """
    env = os.environ if env is None else env
    document = read_yaml_document(path)
    doc, problems = interpolate_env(document, env)

    env_keys: dict[tuple[str, ...], str] = {}
    for key_path, value, var in _env_overrides(env):
        _set_path(doc, key_path, value)
        env_keys[key_path] = var
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(doc, tuple(dotted.split(".")), value)

    config = validate_document(Config, doc, document, problems=problems, env_keys=env_keys)
    return _default_cluster(config, env.get("RISKWIRE_KAFKA_BOOTSTRAP"))


def _default_cluster(config: Config, bootstrap: str | None) -> Config:
    """Use $RISKWIRE_KAFKA_BOOTSTRAP when the file names no cluster.

    Applied after validation so that the variable alone never switches the bus to Kafka: it says
    where the cluster is, ``bus.kind`` / ``RISKWIRE_BUS`` say whether to use it.
    """
    kafka = config.bus.kafka
    if not bootstrap or "bootstrap" in kafka.model_fields_set:
        return config
    bus = config.bus.model_copy(update={"kafka": kafka.model_copy(update={"bootstrap": bootstrap})})
    return config.model_copy(update={"bus": bus})


def masked_dump(config: Config) -> dict[str, Any]:
    """The effective config as plain data, with every secret shown as ``**********``."""
    return config.model_dump(mode="json")
