"""Normalisation: plain text, canonical URLs, UTC timestamps, stable ids.

Everything here is a pure function of its inputs (the fetch time is passed in), so the same
entry always normalises to the same record.
"""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from monitor.records import item_id_for

_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "hsa_", "__hs", "_hs")
_TRACKING_KEYS = {
    "fbclid",
    "gclid",
    "dclid",
    "msclkid",
    "yclid",
    "igshid",
    "ref",
    "ref_src",
    "cmpid",
    "cmp",
    "mkt_tok",
    "ncid",
    "sr_share",
    "spm",
    "guccounter",
    "rss",
    "feed",
    "src",
}
_DROP_CONTENT = {"script", "style", "noscript", "template", "iframe", "object", "svg", "head"}
_BLOCK = {"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_CONTENT:
            self._skip += 1
        elif tag in _BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_CONTENT and self._skip:
            self._skip -= 1
        elif tag in _BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def plain_text(value: str, max_chars: int) -> str:
    """HTML stripped (script/style dropped with their content), entities decoded, whitespace
    collapsed, control characters removed, capped at ``max_chars`` on a word boundary."""
    if not value:
        return ""
    if "<" in value or "&" in value:
        # Feeds double-escape: "&lt;b&gt;" arrives meaning "<b>". Unescape once, then parse.
        text = html.unescape(value) if "&lt;" in value else value
        parser = _TextExtractor()
        parser.feed(text)
        parser.close()
        value = "".join(parser.parts)
        value = html.unescape(value)
    value = _CONTROL.sub("", value)
    value = _WS.sub(" ", value).strip()
    if len(value) > max_chars:
        cut = value[: max_chars - 1]
        space = cut.rfind(" ")
        if space > max_chars // 2:
            cut = cut[:space]
        value = cut.rstrip() + "…"
    return value


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no default port, no fragment, no tracking parameters,
    remaining parameters sorted. Not a URL (or not http) is returned stripped, unchanged."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return url
    host = parts.hostname.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith(_TRACKING_PREFIXES) and k.lower() not in _TRACKING_KEYS
    ]
    query.sort()
    path = parts.path or "/"
    return urlunsplit((scheme, host, path, urlencode(query), ""))


def stable_id(canonical: str | None, guid: str | None, source: str, title: str) -> str:
    """Item id: hash of the canonical URL, else of the GUID (scoped to its feed), else of the
    feed and the title."""
    if canonical:
        return item_id_for(canonical)
    if guid:
        return item_id_for(f"guid:{source}:{guid.strip()}")
    return item_id_for(f"title:{source}:{title}")


def event_time(
    published: datetime | None, fetched_at: datetime, future_tolerance_s: float
) -> tuple[datetime, tuple[str, ...]]:
    """The published time in UTC, or the fetch time with a flag when missing or in the future."""
    if published is None:
        return fetched_at, ("missing_date",)
    if published - fetched_at > timedelta(seconds=future_tolerance_s):
        return fetched_at, ("future_date",)
    return published, ()
