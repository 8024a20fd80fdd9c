"""A real threaded HTTP server on 127.0.0.1 serving fixture routes, for the collector tests."""

from __future__ import annotations

import contextlib
import gzip
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Handler = Callable[[BaseHTTPRequestHandler], None]


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        self.release = threading.Event()  # set at teardown: frees stalled handlers
        server = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                server.hits[path] += 1
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                handler = server.routes.get(path)
                if handler is None:
                    send(self, 404, b"not found")
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    handler(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, handler: Handler) -> str:
        self.routes[path] = handler
        return self.url(path)


def send(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if body:
        h.wfile.write(body)


def static(
    body: bytes,
    ctype: str = "application/rss+xml",
    etag: str | None = None,
    last_modified: str | None = None,
    extra: dict[str, str] | None = None,
    compress: bool = False,
) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        if etag and h.headers.get("If-None-Match") == etag:
            send(h, 304, headers={"ETag": etag})
            return
        if last_modified and h.headers.get("If-Modified-Since") == last_modified:
            send(h, 304, headers={"Last-Modified": last_modified})
            return
        headers = {"Content-Type": ctype, **(extra or {})}
        if etag:
            headers["ETag"] = etag
        if last_modified:
            headers["Last-Modified"] = last_modified
        payload = body
        if compress and "gzip" in (h.headers.get("Accept-Encoding") or ""):
            payload = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        send(h, 200, payload, headers)

    return handle


def redirect(to: str, status: int = 302) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        send(h, status, headers={"Location": to})

    return handle


def stall(release: threading.Event) -> Handler:
    """Accept the request, then send nothing until released (the client must time out)."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        release.wait(30)

    return handle


def endless(total_bytes: int, chunk: int = 1 << 16) -> Handler:
    """A huge body, streamed without Content-Length (so only a streaming cap can stop it)."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("Connection", "close")
        h.end_headers()
        block = b"<!-- " + b"x" * (chunk - 9) + b" -->"
        sent = 0
        h.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
        while sent < total_bytes:
            h.wfile.write(block)
            sent += len(block)
        h.close_connection = True

    return handle


class Switch:
    """A route whose behaviour the test flips (healthy <-> failing)."""

    def __init__(self, healthy: Handler, failing: Handler, failing_now: bool = True) -> None:
        self.healthy = healthy
        self.failing = failing
        self.failing_now = failing_now

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        (self.failing if self.failing_now else self.healthy)(h)


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        send(h, code, b"error", headers)

    return handle
