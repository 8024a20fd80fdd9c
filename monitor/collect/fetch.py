"""Fetching a feed's bytes: HTTP with conditional GET, or a local file.

HTTP fetches stream the body and abort once it exceeds the cap (counted after decompression, so
a gzip bomb is stopped too), follow redirects by hand up to a limit (a loop is reported as one),
and enforce connect, read and total timeouts. Nothing here parses: a 304 costs no parse.

Every fetch returns a :class:`FetchResult` whose ``outcome`` is one of :data:`OUTCOMES`; no
exception escapes for anything the network or the server can do.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin

import httpcore
import httpx

OUTCOMES = (
    "200",
    "304",
    "timeout",
    "connect_error",
    "http_4xx",
    "http_5xx",
    "redirect_error",
    "too_large",
    "parse_error",
    "io_error",
)
_REDIRECTS = {301, 302, 303, 307, 308}


@dataclass(frozen=True)
class FetchResult:
    outcome: str
    url: str
    status: int | None = None
    body: bytes | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    # A delay the server asked for (Cache-Control max-age, Expires, Retry-After), in seconds.
    hint_s: float | None = None
    redirects: tuple[str, ...] = ()
    elapsed_s: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome in ("200", "304")


class _TooLarge(Exception):
    pass


def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def interval_hint(headers: Mapping[str, str], now: datetime) -> float | None:
    """The longest wait the response asks for, in seconds, or None.

    Retry-After (seconds or an HTTP date), Cache-Control max-age / s-maxage, Expires. The caller
    only ever uses it to lengthen its interval, never to poll more often.
    """
    hints: list[float] = []
    retry_after = headers.get("retry-after")
    if retry_after:
        value = retry_after.strip()
        if value.isdigit():
            hints.append(float(value))
        else:
            when = _parse_http_date(value)
            if when is not None:
                hints.append((when - now).total_seconds())
    cache = headers.get("cache-control")
    if cache:
        for part in cache.split(","):
            name, _, arg = part.strip().partition("=")
            if name.lower() in ("max-age", "s-maxage") and arg.strip().strip('"').isdigit():
                hints.append(float(arg.strip().strip('"')))
    expires = headers.get("expires")
    if expires and not cache:
        when = _parse_http_date(expires)
        if when is not None:
            hints.append((when - now).total_seconds())
    positive = [h for h in hints if h > 0]
    return max(positive) if positive else None


class _AbortableBackend(httpcore.SyncBackend):
    """httpcore's socket backend, remembering its sockets so :meth:`abort` can wake threads
    blocked in ``recv`` (closing the client does not: a stalled feed would hold shutdown for its
    whole read timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.aborted = False

    def connect_tcp(self, *args: object, **kwargs: object) -> httpcore.NetworkStream:
        if self.aborted:
            raise httpcore.ConnectError("the collector is shutting down")
        stream = super().connect_tcp(*args, **kwargs)  # type: ignore[arg-type]
        sock = stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.add(sock)
        return stream

    def abort(self) -> None:
        self.aborted = True
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            # Already closed by its own thread: nothing left to wake.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class HttpFetcher:
    """Fetches URLs over one shared ``httpx.Client`` (injected, so tests can pass a transport)."""

    def __init__(
        self,
        *,
        user_agent: str,
        max_body_bytes: int,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 15.0,
        total_timeout_s: float = 30.0,
        max_redirects: int = 5,
        verify_tls: bool = True,
        max_connections: int = 64,
        client: httpx.Client | None = None,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        self.user_agent = user_agent
        self.max_body_bytes = max_body_bytes
        self.total_timeout_s = total_timeout_s
        self.max_redirects = max_redirects
        self._wall = wall or (lambda: datetime.now(UTC))
        self._own_client = client is None
        self._backend = _AbortableBackend()
        if client is None:
            transport = httpx.HTTPTransport(
                verify=verify_tls,
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
            )
            # httpx has no public hook for httpcore's network backend; without ours, abort()
            # could not interrupt a stalled read. Checked by tests/collect/test_role.py.
            pool = getattr(transport, "_pool", None)
            if pool is not None and hasattr(pool, "_network_backend"):
                pool._network_backend = self._backend
            client = httpx.Client(
                transport=transport,
                timeout=httpx.Timeout(
                    connect=connect_timeout_s,
                    read=read_timeout_s,
                    write=read_timeout_s,
                    pool=total_timeout_s,
                ),
                follow_redirects=False,
            )
        self._client = client

    def abort(self) -> None:
        """Make fetches in flight fail now and refuse new ones (shutdown)."""
        self._backend.abort()

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FetchResult:
        started = time.monotonic()
        deadline = started + self.total_timeout_s
        req_headers = {
            "User-Agent": self.user_agent,
            "Accept": "application/rss+xml, application/atom+xml, application/feed+json, "
            "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5",
            "Accept-Encoding": "gzip, deflate",
        }
        if etag:
            req_headers["If-None-Match"] = etag
        if last_modified:
            req_headers["If-Modified-Since"] = last_modified
        req_headers.update(headers or {})
        chain: list[str] = []
        current = url

        def done(outcome: str, **kw: object) -> FetchResult:
            return FetchResult(
                outcome=outcome,
                url=current,
                redirects=tuple(chain),
                elapsed_s=time.monotonic() - started,
                **kw,  # type: ignore[arg-type]
            )

        try:
            while True:
                with self._client.stream("GET", current, headers=req_headers) as resp:
                    hdrs = {k.lower(): v for k, v in resp.headers.items()}
                    status = resp.status_code
                    if status in _REDIRECTS and "location" in hdrs:
                        target = urljoin(current, hdrs["location"])
                        chain.append(current)
                        if target in chain or target == current:
                            return done(
                                "redirect_error",
                                status=status,
                                error=f"redirect loop: {' -> '.join([*chain, target])}",
                            )
                        if len(chain) > self.max_redirects:
                            return done(
                                "redirect_error",
                                status=status,
                                error=f"more than {self.max_redirects} redirects",
                            )
                        current = target
                        continue
                    hint = interval_hint(hdrs, self._wall())
                    common: dict[str, object] = {"status": status, "hint_s": hint, "headers": hdrs}
                    if status == 304:
                        return done(
                            "304",
                            etag=hdrs.get("etag", etag),
                            last_modified=hdrs.get("last-modified", last_modified),
                            **common,
                        )
                    if status >= 400:
                        return done(
                            "http_5xx" if status >= 500 else "http_4xx",
                            error=f"HTTP {status} {resp.reason_phrase}".strip(),
                            **common,
                        )
                    if status != 200:
                        return done("http_4xx", error=f"unexpected HTTP {status}", **common)
                    body = self._read_capped(resp, deadline)
                    return done(
                        "200",
                        body=body,
                        content_type=hdrs.get("content-type"),
                        etag=hdrs.get("etag"),
                        last_modified=hdrs.get("last-modified"),
                        **common,
                    )
        except _TooLarge:
            return done("too_large", error=f"body larger than {self.max_body_bytes} bytes")
        except httpx.TimeoutException as exc:
            return done("timeout", error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        except TimeoutError as exc:
            return done("timeout", error=str(exc))
        except httpx.DecodingError as exc:
            return done("parse_error", error=f"bad content encoding: {exc}")
        except (httpx.TransportError, httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return done("connect_error", error=f"{type(exc).__name__}: {exc}".rstrip(": "))

    def _read_capped(self, resp: httpx.Response, deadline: float) -> bytes:
        declared = resp.headers.get("content-length")
        plain = resp.headers.get("content-encoding") is None
        if plain and declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            if time.monotonic() > deadline:
                raise TimeoutError(f"total timeout of {self.total_timeout_s:g}s exceeded")
            chunks.append(chunk)
        return b"".join(chunks)


def fetch_file(path: Path, *, max_body_bytes: int, last_modified: str | None = None) -> FetchResult:
    """Read one saved feed. ``last_modified`` is the file's mtime+size token from the last read:
    an unchanged file is a 304, like an unchanged URL."""
    started = time.monotonic()
    url = path.resolve().as_uri()
    try:
        st = path.stat()
        token = f"{st.st_mtime_ns}:{st.st_size}"
        if last_modified == token:
            return FetchResult("304", url, last_modified=token)
        if st.st_size > max_body_bytes:
            return FetchResult(
                "too_large", url, error=f"{path}: larger than {max_body_bytes} bytes"
            )
        with open(path, "rb") as fh:
            body = fh.read(max_body_bytes + 1)
    except OSError as exc:
        return FetchResult("io_error", url, error=f"{path}: {exc.strerror or exc}")
    if len(body) > max_body_bytes:
        return FetchResult("too_large", url, error=f"{path}: larger than {max_body_bytes} bytes")
    ctype = "application/json" if path.suffix.lower() == ".json" else None
    return FetchResult(
        "200",
        url,
        status=200,
        body=body,
        content_type=ctype,
        last_modified=token,
        elapsed_s=time.monotonic() - started,
    )


def list_directory(path: Path) -> list[Path]:
    """The saved feeds of a directory, in a stable order (hidden files skipped)."""
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return []
    return [
        path / n
        for n in names
        if not n.startswith(".")
        and (path / n).is_file()
        and n.lower().endswith((".xml", ".rss", ".atom", ".rdf", ".json"))
    ]
