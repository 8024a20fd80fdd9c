"""Turning fetched bytes into raw entries: a guard, an encoding fix, then a parser per kind.

1. Guard: a document with a DOCTYPE is checked with defusedxml (no entity expansion, no external
   references); the DOCTYPE is then removed before feedparser sees the bytes, so neither a
   billion-laughs bomb nor an XXE file reference can expand, whatever the parser would do.
2. Encoding: feeds often declare UTF-8 and send windows-1252. Bytes that are not valid in their
   declared encoding are decoded as windows-1252 and re-encoded as the UTF-8 they meant.
3. Parse: feedparser for RSS 0.9x/1.0/2.0 and Atom; our own readers for JSON Feed 1.1 and for a
   generic JSON API with a field mapping. A malformed ("bozo") feed still yields what feedparser
   recovered; the problem is reported in ``ParsedFeed.problems``.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import defusedxml.ElementTree as DefusedET
import feedparser
from defusedxml import DefusedXmlException

from monitor.collect.config import JsonMapping

_DOCTYPE = re.compile(rb"<!DOCTYPE\b(?:[^\[>]*\[.*?\]\s*>|[^>]*>)", re.IGNORECASE | re.DOTALL)
_DOCTYPE_ANY = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ENTITY_DECL = re.compile(rb"<!ENTITY\b[^>]*>", re.IGNORECASE | re.DOTALL)
_XML_DECL = re.compile(rb"^(\s*<\?xml[^>]*?encoding\s*=\s*)([\"'])([A-Za-z0-9._-]+)\2", re.I)


@dataclass(frozen=True)
class RawEntry:
    """One entry as the feed gave it, before normalisation."""

    title: str
    link: str | None
    guid: str | None
    summary: str
    published: datetime | None


@dataclass
class ParsedFeed:
    entries: list[RawEntry] = field(default_factory=list)
    lang: str | None = None
    ttl_s: float | None = None
    title: str | None = None
    # Things that went wrong but did not stop the parse (bozo errors, stripped DTDs...).
    problems: list[str] = field(default_factory=list)
    # True when nothing at all could be read: counted as a parse_error outcome.
    failed: bool = False


class UnsafeXml(Exception):
    pass


def guard_xml(body: bytes) -> tuple[bytes, list[str]]:
    """Remove any DOCTYPE (and stray entity declarations); report what defusedxml objected to."""
    if not _DOCTYPE_ANY.search(body[:65536]) and b"<!ENTITY" not in body.upper():
        return body, []
    problems: list[str] = []
    try:
        DefusedET.fromstring(body, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        problems.append(f"unsafe XML refused ({type(exc).__name__}): DOCTYPE removed")
    except DefusedET.ParseError:
        problems.append("DOCTYPE removed from malformed XML")
    else:
        problems.append("DOCTYPE removed")
    cleaned = _DOCTYPE.sub(b"", body, count=1)
    cleaned = _ENTITY_DECL.sub(b"", cleaned)
    if _DOCTYPE_ANY.search(cleaned):
        # An unterminated DOCTYPE: drop everything from it to the root element's start.
        idx = _DOCTYPE_ANY.search(cleaned)
        assert idx is not None
        rest = cleaned[idx.start() :]
        root = re.search(rb"<(?![!?])", rest[9:])
        cleaned = cleaned[: idx.start()] + (rest[9 + root.start() :] if root else b"")
    return cleaned, problems


def fix_encoding(body: bytes, content_type: str | None) -> tuple[bytes, list[str]]:
    """Return UTF-8 bytes whose XML declaration says UTF-8, and what was repaired."""
    text: str | None
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = body.decode("utf-16")
        except UnicodeDecodeError:
            return body, ["undecodable UTF-16"]
        return _declare_utf8(text.encode("utf-8")), []
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    declared = None
    m = _XML_DECL.match(body)
    if m:
        declared = m.group(3).decode("ascii").lower()
    elif content_type and "charset=" in content_type.lower():
        declared = content_type.lower().split("charset=", 1)[1].split(";")[0].strip().strip('"')
    declared = declared or "utf-8"
    try:
        text = body.decode(declared)
    except LookupError:
        text = None
    except UnicodeDecodeError:
        text = None
        if declared.replace("_", "-") in ("utf-8", "utf8"):
            # The common lie: windows-1252 (or Latin-1) sent as UTF-8. Decode per byte run so
            # that genuine UTF-8 sequences in a mixed document stay right.
            return _declare_utf8(_mixed_to_utf8(body)), [
                "declared utf-8 but is not: decoded as windows-1252"
            ]
    if text is None:
        try:
            text = body.decode("utf-8")
            problem = [f"unknown or wrong encoding {declared!r}: decoded as utf-8"]
        except UnicodeDecodeError:
            text = body.decode("cp1252", errors="replace")
            problem = [f"unknown or wrong encoding {declared!r}: decoded as windows-1252"]
        return _declare_utf8(text.encode("utf-8")), problem
    if declared in ("utf-8", "utf8"):
        return body, []
    return _declare_utf8(text.encode("utf-8")), []


def _mixed_to_utf8(body: bytes) -> bytes:
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        try:
            # Fast path: the longest valid UTF-8 run from i.
            out += body[i:].decode("utf-8").encode("utf-8")
            break
        except UnicodeDecodeError as exc:
            out += body[i : i + exc.start]
            bad = body[i + exc.start : i + exc.start + 1]
            out += bad.decode("cp1252", errors="replace").encode("utf-8")
            i += exc.start + 1
    return bytes(out)


def _declare_utf8(body: bytes) -> bytes:
    m = _XML_DECL.match(body)
    if not m:
        return body
    return body[: m.start(3)] + b"utf-8" + body[m.end(3) :]


def _struct_to_dt(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _iso_to_dt(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed_struct = feedparser._parse_date(value)  # RFC 822 and friends
        return _struct_to_dt(parsed_struct)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_xml(body: bytes, content_type: str | None = None) -> ParsedFeed:
    body, problems = guard_xml(body)
    body, enc_problems = fix_encoding(body, content_type)
    problems += enc_problems
    headers = {"content-type": "application/xml; charset=utf-8"}
    # Our own HTML stripping follows; feedparser's sanitizer and URI resolution are extra cost.
    doc = feedparser.parse(
        body, response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )
    out = ParsedFeed(problems=problems)
    if doc.get("bozo"):
        exc = doc.get("bozo_exception")
        if not isinstance(exc, feedparser.CharacterEncodingOverride):
            out.problems.append(f"malformed feed: {type(exc).__name__}: {exc}")
    feed = doc.get("feed", {})
    out.lang = feed.get("language") or None
    out.title = feed.get("title") or None
    ttl = feed.get("ttl")
    if isinstance(ttl, str) and ttl.strip().isdigit():
        out.ttl_s = float(ttl.strip()) * 60.0
    for e in doc.get("entries", []):
        summary = e.get("summary") or ""
        if not summary and e.get("content"):
            summary = e["content"][0].get("value", "")
        out.entries.append(
            RawEntry(
                title=e.get("title") or "",
                link=e.get("link") or None,
                guid=e.get("id") or None,
                summary=summary,
                # dict.get: feedparser's own .get maps updated_* to published_* with a warning.
                published=_struct_to_dt(
                    dict.get(e, "published_parsed") or dict.get(e, "updated_parsed")
                ),
            )
        )
    if not out.entries and doc.get("bozo") and not feed:
        out.failed = True
    return out


def _dig(doc: Any, path: str | None) -> Any:
    if path is None:
        return None
    if path == "":
        return doc
    node = doc
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def parse_json(body: bytes, mapping: JsonMapping | None = None) -> ParsedFeed:
    """JSON Feed 1.x, or a generic JSON API read through ``mapping``."""
    out = ParsedFeed()
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        out.failed = True
        out.problems.append(f"not JSON: {exc}")
        return out
    is_jsonfeed = isinstance(doc, dict) and "jsonfeed.org" in _text(doc.get("version"))
    if is_jsonfeed and mapping is None:
        out.lang = _text(doc.get("language")) or None
        out.title = _text(doc.get("title")) or None
        items = doc.get("items")
        if not isinstance(items, list):
            out.failed = True
            out.problems.append("JSON Feed without an items list")
            return out
        for it in items:
            if not isinstance(it, dict):
                out.problems.append("JSON Feed item is not an object: skipped")
                continue
            summary = _text(it.get("summary")) or _text(it.get("content_html"))
            summary = summary or _text(it.get("content_text"))
            out.entries.append(
                RawEntry(
                    title=_text(it.get("title")),
                    link=_text(it.get("url")) or _text(it.get("external_url")) or None,
                    guid=_text(it.get("id")) or None,
                    summary=summary,
                    published=_iso_to_dt(it.get("date_published") or it.get("date_modified")),
                )
            )
        return out
    m = mapping or JsonMapping()
    items = _dig(doc, m.items)
    if not isinstance(items, list):
        out.failed = True
        out.problems.append(f"no list of items at {m.items or '<root>'!r}")
        return out
    for it in items:
        out.entries.append(
            RawEntry(
                title=_text(_dig(it, m.title)),
                link=_text(_dig(it, m.url)) or None,
                guid=_text(_dig(it, m.id)) or None,
                summary=_text(_dig(it, m.summary)),
                published=_iso_to_dt(_dig(it, m.published)),
            )
        )
    return out


def looks_like_json(body: bytes, content_type: str | None) -> bool:
    if content_type and "json" in content_type.lower():
        return True
    return body.lstrip()[:1] in (b"{", b"[")


def parse_body(
    body: bytes, *, kind: str, content_type: str | None, mapping: JsonMapping | None = None
) -> ParsedFeed:
    """Parse by the feed's kind; ``file`` and ``directory`` sniff JSON vs XML."""
    if kind == "json":
        return parse_json(body, mapping)
    if kind == "jsonfeed" or (kind in ("file", "directory") and looks_like_json(body, None)):
        return parse_json(body, None)
    return parse_xml(body, content_type)
