"""Parsing: every fixture kind, hostile XML, wrong encodings, HTML in titles."""

from __future__ import annotations

from pathlib import Path

from monitor.collect.normalize import plain_text
from monitor.collect.parse import guard_xml, parse_body, parse_json, parse_xml

from . import feeds


def test_rss2_entries_dates_ttl_and_language() -> None:
    parsed = parse_xml(feeds.RSS2)
    assert [e.guid for e in parsed.entries] == ["wire-1", "wire-2"]
    assert parsed.entries[0].published is not None
    assert parsed.entries[0].published.isoformat() == "2026-11-23T14:05:00+00:00"
    assert parsed.ttl_s == 1800.0
    assert parsed.lang == "en-us"
    assert not parsed.problems


def test_rss1_rdf() -> None:
    parsed = parse_xml(feeds.RSS1)
    assert len(parsed.entries) == 1
    e = parsed.entries[0]
    assert e.title.startswith("Northwind Bancorp raises")
    assert e.link == "https://rdf.example/n/10"
    assert e.published is not None and e.published.isoformat() == "2026-11-24T09:30:00+00:00"


def test_atom() -> None:
    parsed = parse_xml(feeds.ATOM)
    (e,) = parsed.entries
    assert e.guid == "urn:atom-wire:7"
    assert e.link == "https://atom.example/p/7#comments"
    assert plain_text(e.title, 300) == "Pinecrest Pharma shares slump as FDA rejects lead drug"


def test_json_feed() -> None:
    parsed = parse_body(feeds.JSONFEED, kind="jsonfeed", content_type="application/feed+json")
    assert [e.guid for e in parsed.entries] == ["j-1", "j-2"]
    assert parsed.entries[0].published is not None
    assert parsed.entries[1].title == ""  # judged (dropped) later, not here


def test_generic_json_api_with_mapping() -> None:
    from monitor.collect.config import JsonMapping

    body = b'{"data": {"stories": [{"key": "s9", "headline": "Quarry Mining halts output",'
    body += b' "link": "https://api.example/s9", "ts": "2026-11-24T08:00:00+00:00"}]}}'
    mapping = JsonMapping(
        items="data.stories", id="key", title="headline", url="link", summary=None, published="ts"
    )
    parsed = parse_json(body, mapping)
    (e,) = parsed.entries
    assert (e.guid, e.title, e.link) == (
        "s9",
        "Quarry Mining halts output",
        "https://api.example/s9",
    )
    assert e.published is not None and e.published.hour == 8


def test_invalid_xml_still_yields_good_entries_and_reports_the_problem() -> None:
    parsed = parse_xml(feeds.INVALID_XML)
    titles = [e.title for e in parsed.entries]
    assert "Corvid Logistics wins $2 billion defence contract" in titles
    assert any("malformed" in p for p in parsed.problems)
    assert not parsed.failed


def test_garbage_is_a_failed_parse() -> None:
    parsed = parse_xml(feeds.NOT_A_FEED)
    assert parsed.failed and not parsed.entries
    assert parse_json(b"{not json").failed


def test_billion_laughs_does_not_expand() -> None:
    cleaned, problems = guard_xml(feeds.BILLION_LAUGHS)
    assert b"<!ENTITY" not in cleaned and b"<!DOCTYPE" not in cleaned
    assert any("EntitiesForbidden" in p for p in problems)
    parsed = parse_xml(feeds.BILLION_LAUGHS)
    for e in parsed.entries:
        assert "lollol" not in e.title
        assert len(e.title) < 100


def test_xxe_file_reference_does_not_leak(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT-42")
    parsed = parse_xml(feeds.xxe(str(secret)))
    text = " ".join(e.title + " " + e.summary for e in parsed.entries)
    assert "TOP-SECRET" not in text
    assert any("DOCTYPE removed" in p for p in parsed.problems)


def test_windows_1252_declared_as_utf8_is_decoded_right() -> None:
    parsed = parse_xml(feeds.WIN1252_AS_UTF8)
    (e,) = parsed.entries
    assert e.title == (
        "Atlas Retail\u2019s CEO quits \u2014 \u201cpersonal reasons\u201d, "
        "caf\u00e9 chain sale off"
    )
    assert any("windows-1252" in p for p in parsed.problems)


def test_mixed_utf8_and_cp1252_bytes_keep_the_real_utf8() -> None:
    body = (
        (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
            "<item><title>Z\u00fcrich "
        ).encode()
        + "\u2013 Gen\u00e8ve".encode("cp1252")
        + b"</title></item></channel></rss>"
    )
    (e,) = parse_xml(body).entries
    assert e.title == "Z\u00fcrich \u2013 Gen\u00e8ve"


def test_script_and_html_in_titles_are_stripped() -> None:
    (e,) = parse_xml(feeds.HTML_TITLES).entries
    assert plain_text(e.title, 300) == "Meridian Energy & partners sign LNG deal"
    assert plain_text(e.summary, 300) == "Deal worth $4bn"


def test_random_and_truncated_inputs_never_raise() -> None:
    import random

    rng = random.Random(5)
    samples = [feeds.RSS2, feeds.ATOM, feeds.RSS1, feeds.BILLION_LAUGHS, feeds.JSONFEED]
    for n in range(300):
        base = samples[n % len(samples)]
        cut = base[: rng.randrange(len(base))]
        noisy = bytearray(cut)
        for _ in range(rng.randrange(5)):
            if noisy:
                noisy[rng.randrange(len(noisy))] = rng.randrange(256)
        for kind in ("rss", "jsonfeed", "file"):
            parse_body(bytes(noisy), kind=kind, content_type=None)
