"""Receivers. A notifier sends a group's alerts and returns ``(retry, error)``, as Alertmanager's.

``(False, None)`` sent; ``(True, err)`` failed but may succeed later (timeouts, connection
errors, 408, 429 — with ``err.retry_after`` from ``Retry-After`` — and 5xx); ``(False, err)``
failed for good (any other 4xx, a template that does not render): retrying would not help.

The generic webhook POSTs each alert's JSON (or a rendered Jinja2 template) on its own, in order,
so ``Idempotency-Key`` is always one alert id. Slack, Teams and Alertmanager receivers get one
message per group listing its alerts.
"""

from __future__ import annotations

import email.utils
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from monitor.alerts.config import (
    AlertmanagerReceiver,
    FileReceiver,
    SlackReceiver,
    TeamsReceiver,
    WebhookReceiver,
)
from monitor.alerts.signature import DELIVERY_HEADER, HEADER, IDEMPOTENCY_HEADER, sign
from monitor.records import Alert, rfc3339

USER_AGENT = "riskwire-alerter/1"


class NotifyError(Exception):
    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


Result = tuple[bool, NotifyError | None]


class Notifier(Protocol):
    name: str

    def notify(self, alerts: Sequence[Alert], on_sent: Callable[[Alert], None]) -> Result:
        """Send ``alerts`` in order; call ``on_sent`` for each once it is accepted."""


def parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def classify(resp: httpx.Response, now: float) -> Result:
    code = resp.status_code
    if 200 <= code < 300:
        return False, None
    text = resp.text[:200].strip()
    err = NotifyError(
        f"HTTP {code}{': ' + text if text else ''}",
        status=code,
        retry_after=parse_retry_after(resp.headers.get("Retry-After"), now)
        if code in (429, 503)
        else None,
    )
    return (code in (408, 429) or code >= 500), err


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> Result:
    try:
        resp = client.post(url, content=body, headers=headers)
    except httpx.TimeoutException as exc:
        return True, NotifyError(f"timeout: {type(exc).__name__}")
    except httpx.TransportError as exc:
        return True, NotifyError(f"connection error: {type(exc).__name__}: {exc}")
    return classify(resp, time.time())


class WebhookNotifier:
    per_alert = True  # one POST per alert: a failure concerns the first unsent alert only

    def __init__(
        self,
        cfg: WebhookReceiver,
        client: httpx.Client,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.client = client
        self.wall_clock = wall_clock
        self._template = None
        if cfg.template is not None:
            from jinja2.sandbox import SandboxedEnvironment

            self._template = SandboxedEnvironment(autoescape=False).from_string(cfg.template)

    def body(self, alert: Alert) -> bytes:
        if self._template is None:
            return alert.to_json()
        doc = json.loads(alert.to_json())
        return self._template.render(alert=doc, **doc).encode("utf-8")

    def notify(self, alerts: Sequence[Alert], on_sent: Callable[[Alert], None]) -> Result:
        for alert in alerts:
            try:
                body = self.body(alert)
            except Exception as exc:  # a template error is final: a retry renders the same
                return False, NotifyError(f"template failed: {type(exc).__name__}: {exc}")
            headers = {
                **self.cfg.headers,
                "Content-Type": self.cfg.content_type,
                "User-Agent": USER_AGENT,
                DELIVERY_HEADER: uuid.uuid4().hex,
                IDEMPOTENCY_HEADER: alert.id,
            }
            if self.cfg.secret is not None:
                secret = self.cfg.secret.get_secret_value().encode()
                headers[HEADER] = sign(secret, body, int(self.wall_clock()))
            retry, err = _post(self.client, self.cfg.url, body, headers)
            if err is not None:
                return retry, err
            on_sent(alert)
        return False, None


def _line(a: Alert) -> str:
    mark = "RESOLVED" if a.status == "resolved" else a.severity.upper()
    return f"[{mark}] {a.title} — {a.summary}"


def _post_group(
    client: httpx.Client,
    url: str,
    payload: Any,
    alerts: Sequence[Alert],
    on_sent: Callable[[Alert], None],
) -> Result:
    """POST one JSON message for a whole group; every alert of it counts as sent on success."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    result = _post(client, url, body, headers)
    if result[1] is None:
        for a in alerts:
            on_sent(a)
    return result


class SlackNotifier:
    def __init__(self, cfg: SlackReceiver, client: httpx.Client) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.client = client

    def payload(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = []
        for a in alerts:
            text = f"*{_line(a)}*"
            for it in a.items[:3]:
                text += f"\n• <{it.url}|{it.title}> ({it.source}, {it.sentiment})"
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        doc: dict[str, Any] = {
            "text": "\n".join(_line(a) for a in alerts),
            "blocks": blocks,
            "username": self.cfg.username,
        }
        if self.cfg.channel:
            doc["channel"] = self.cfg.channel
        return doc

    def notify(self, alerts: Sequence[Alert], on_sent: Callable[[Alert], None]) -> Result:
        return _post_group(
            self.client, self.cfg.url.get_secret_value(), self.payload(alerts), alerts, on_sent
        )


class TeamsNotifier:
    def __init__(self, cfg: TeamsReceiver, client: httpx.Client) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.client = client

    def payload(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        body: list[dict[str, Any]] = []
        for a in alerts:
            body.append({"type": "TextBlock", "text": _line(a), "weight": "Bolder", "wrap": True})
            for it in a.items[:3]:
                body.append({"type": "TextBlock", "text": f"[{it.title}]({it.url})", "wrap": True})
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": body,
        }
        return {
            "type": "message",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
            ],
        }

    def notify(self, alerts: Sequence[Alert], on_sent: Callable[[Alert], None]) -> Result:
        return _post_group(
            self.client, self.cfg.url.get_secret_value(), self.payload(alerts), alerts, on_sent
        )


class AlertmanagerNotifier:
    """POSTs to Alertmanager's ``/api/v2/alerts`` so existing routing/receivers can take over."""

    def __init__(self, cfg: AlertmanagerReceiver, client: httpx.Client) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.client = client

    def payload(self, alerts: Sequence[Alert]) -> list[dict[str, Any]]:
        out = []
        for a in alerts:
            labels = {
                **a.labels,
                "alertname": a.rule,
                "severity": a.severity,
                "fingerprint": a.fingerprint,
            }
            if a.entity:
                labels["entity"] = a.entity
            doc: dict[str, Any] = {
                "labels": labels,
                "annotations": {
                    **a.annotations,
                    "title": a.title,
                    "summary": a.summary,
                    "alert_id": a.id,
                },
                "startsAt": rfc3339(a.starts_at),
            }
            if a.status == "resolved":
                doc["endsAt"] = rfc3339(a.ends_at or datetime.now(UTC))
            if self.cfg.generator_url:
                doc["generatorURL"] = self.cfg.generator_url
            elif a.items:
                doc["generatorURL"] = a.items[0].url
            out.append(doc)
        return out

    def notify(self, alerts: Sequence[Alert], on_sent: Callable[[Alert], None]) -> Result:
        body = json.dumps(self.payload(alerts)).encode()
        headers = {**self.cfg.headers, "Content-Type": "application/json"}
        result = _post(self.client, self.cfg.url, body, headers)
        if result[1] is None:
            for a in alerts:
                on_sent(a)
        return result


class FileNotifier:
    """Appends each alert as one JSON line (flushed and fsynced) to a file, or writes stdout."""

    def __init__(self, cfg: FileReceiver, data_dir: Path) -> None:
        self.name = cfg.name
        self.path = None if cfg.path == "-" else data_dir / cfg.path
        self._lock = threading.Lock()

    def notify(self, alerts: Sequence[Alert], on_sent: Callable[[Alert], None]) -> Result:
        lines = b"".join(a.to_json() + b"\n" for a in alerts)
        with self._lock:
            try:
                if self.path is None:
                    sys.stdout.buffer.write(lines)
                    sys.stdout.flush()
                else:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    import os

                    with self.path.open("ab") as fh:
                        fh.write(lines)
                        fh.flush()
                        os.fsync(fh.fileno())
            except OSError as exc:
                return True, NotifyError(f"cannot write {self.path or 'stdout'}: {exc.strerror}")
        for a in alerts:
            on_sent(a)
        return False, None


def build_notifier(
    cfg: WebhookReceiver | SlackReceiver | TeamsReceiver | AlertmanagerReceiver | FileReceiver,
    *,
    data_dir: Path,
    timeout_s: float,
    transport: httpx.BaseTransport | None = None,
) -> tuple[Notifier, httpx.Client | None]:
    if isinstance(cfg, FileReceiver):
        return FileNotifier(cfg, data_dir), None
    client = httpx.Client(
        timeout=httpx.Timeout(cfg.timeout_s or timeout_s),
        transport=transport,
        follow_redirects=False,
        trust_env=False,
    )
    notifier: Notifier
    if isinstance(cfg, WebhookReceiver):
        notifier = WebhookNotifier(cfg, client)
    elif isinstance(cfg, SlackReceiver):
        notifier = SlackNotifier(cfg, client)
    elif isinstance(cfg, TeamsReceiver):
        notifier = TeamsNotifier(cfg, client)
    else:
        notifier = AlertmanagerNotifier(cfg, client)
    return notifier, client
