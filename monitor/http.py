"""The one HTTP port of a Riskwire process: /metrics, /healthz, /readyz.

/healthz answers 200 while the process serves at all (liveness). /readyz answers 200 only when
the bus answers and every running role says it is ready; otherwise 503 with the reasons, so a
load balancer or Kubernetes holds traffic and an operator sees why.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from monitor.logs import get_logger

log = get_logger("http")


@dataclass(frozen=True)
class Probe:
    """What the status endpoints report. ``readiness`` returns (ready, details)."""

    liveness: Callable[[], dict[str, Any]]
    readiness: Callable[[], tuple[bool, dict[str, Any]]]


class StatusServer:
    """A threaded HTTP server on ``host:port`` (port 0 picks a free one; see ``.port``)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, probe: Probe) -> None:
        handler = _make_handler(registry, probe)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="http",
            kwargs={"poll_interval": 0.2},
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    def start(self) -> None:
        self._thread.start()
        log.info("http listening", extra={"host": self.host, "port": self.port})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _make_handler(registry: CollectorRegistry, probe: Probe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "riskwire"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            try:
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._json(200, {"status": "ok", **probe.liveness()})
                elif path == "/readyz":
                    ready, details = probe.readiness()
                    self._json(200 if ready else 503, {"ready": ready, **details})
                else:
                    self._json(
                        404,
                        {
                            "error": f"no such endpoint {path!r}",
                            "endpoints": ["/metrics", "/healthz", "/readyz"],
                        },
                    )
            except Exception as exc:  # a probe failing must not kill the server thread
                log.exception("status endpoint failed", extra={"path": path})
                self._json(500, {"error": str(exc)})

        def _json(self, code: int, doc: dict[str, Any]) -> None:
            self._send(code, json.dumps(doc).encode("utf-8"), "application/json")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            # Scrapes every few seconds would drown the event log.
            return

    return Handler
