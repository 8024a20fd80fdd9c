"""Alerts test kit: scored-item factory, an injected clock, and real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.records import EntityMatch, ModelInfo, RiskTag, ScoredItem, Sentiment, Timings

T0 = 1_780_000_000.0  # a fixed event-time origin


def scored(
    item_id: str,
    ts: float,
    *,
    entity: str | None = "ACME",
    label: str = "negative",
    polarity: float | None = None,
    p: float = 0.9,
    risk: tuple[tuple[str, float], ...] = (),
    source: str = "wire",
    title: str | None = None,
    novelty: float | None = None,
) -> ScoredItem:
    if polarity is None:
        polarity = {"negative": -0.8, "neutral": 0.0, "positive": 0.8}[label]
    rest = (1.0 - p) / 2
    probs = {k: (p if k == label else rest) for k in ("negative", "neutral", "positive")}
    when = datetime.fromtimestamp(ts, UTC)
    return ScoredItem(
        id=item_id,
        source=source,
        url=f"https://news.example/{item_id}",
        title=title or f"{entity or 'Market'} headline {item_id}",
        published_at=when,
        fetched_at=when,
        entities=(EntityMatch(id=entity, name=entity, matched=entity),) if entity else (),
        novelty=novelty,
        sentiment=Sentiment(label=label, probs=probs, polarity=polarity),  # type: ignore[arg-type]
        risk=tuple(RiskTag(tag=t, p=q) for t, q in risk),
        model=ModelInfo(name="test", version="1", sha256="0" * 64),
        timings=Timings(fetched_to_scored_ms=1.0, inference_ms=1.0),
    )


@dataclass
class FakeClock:
    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


Responder = Callable[[Hit, int], tuple[int, dict[str, str], bytes] | None]


@dataclass
class Receiver:
    """A threaded HTTP server we control; restartable on the same port.

    ``respond(hit, n)`` decides each answer (n counts requests, from 0): return (status,
    headers, body), or None to stall until the client gives up.
    """

    respond: Responder = lambda hit, n: (200, {}, b"ok")
    hits: list[Hit] = field(default_factory=list)  # answered 2xx
    requests: list[Hit] = field(default_factory=list)  # every request, answered or not
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _n: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                hit = Hit(self.path, {k: v for k, v in self.headers.items()}, body, time.time())
                with owner._lock:
                    n = owner._n
                    owner._n += 1
                    owner.requests.append(hit)
                answer = owner.respond(hit, n)
                if answer is None:
                    owner._release.wait(10)
                    return
                status, headers, text = answer
                if 200 <= status < 300:
                    with owner._lock:
                        owner.hits.append(hit)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
        self._release = threading.Event()

    def accepted(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def all_requests(self) -> list[Hit]:
        with self._lock:
            return list(self.requests)
