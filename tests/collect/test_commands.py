"""`riskwire feeds check` and `riskwire feeds list`, and the demo set that `make run` uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.collect.config import resolve_feeds
from monitor.collect.state import FeedState, StateStore
from monitor.config import load_config

from . import feeds
from .server import FeedServer, static

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "monitor" / "demo"


def test_feeds_check_prints_what_would_be_published_and_dropped(
    server: FeedServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    body = feeds.rss(
        [
            (
                "1",
                "Bluefin Payments discloses data breach affecting 2 million customers",
                "https://c.example/1",
            ),
            (
                "2",
                "UPDATE 1-Bluefin Payments discloses data breach affecting 2 million customers",
                "https://c.example/2",
            ),
            ("3", "", "https://c.example/3"),
        ]
    )
    url = server.route("/check", static(body))
    code = main(["feeds", "check", url, "--watchlist", str(DEMO / "watchlist.yaml")])
    out = capsys.readouterr().out
    assert code == 0
    assert "outcome: 200" in out and "would publish 1:" in out and "would drop 2:" in out
    assert "near_duplicate of" in out and "no_title" in out
    assert "BLFN 'Bluefin Payments'" in out
    code = main(["feeds", "check", url, "--json"])
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["outcome"] == "200" and len(doc["publish"]) == 1
    assert sorted(d["reason"] for d in doc["drop"]) == ["near_duplicate", "no_title"]


def test_feeds_check_of_a_failing_feed_says_why_and_exits_1(
    server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["feeds", "check", server.url("/nothing-here")])
    assert code == 1
    assert "outcome: http_4xx - HTTP 404" in capsys.readouterr().out


def test_feeds_list_shows_state_from_the_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path}\ncollect:\n  feeds:\n"
        "    - {id: good, url: 'https://a.example/rss'}\n"
        "    - {id: bad, url: 'https://b.example/rss'}\n"
    )
    store = StateStore(tmp_path / "collector.sqlite")
    store.save_feed(FeedState("good", status="ok", last_success=1_700_000_000.0))
    store.save_feed(
        FeedState("bad", status="backing-off", failures=4, last_error="timeout: ReadTimeout")
    )
    store.close()
    assert main(["feeds", "list", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "backing-off" in out and "timeout: ReadTimeout" in out and "good" in out
    assert main(["feeds", "list", "-c", str(cfg), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["id"]: r["failures"] for r in rows} == {"good": 0, "bad": 4}
    assert rows[0]["last_success"] == "2023-11-14T22:13:20Z"


def test_demo_config_and_feeds(capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(DEMO / "riskwire.yaml")
    demo_feeds = resolve_feeds(config.collect)
    assert len(demo_feeds) >= 4 and all(f.kind == "file" for f in demo_feeds)
    for f in demo_feeds:
        assert f.path is not None and (REPO / f.path).exists()
    code = main(
        [
            "feeds",
            "check",
            str(DEMO / "feeds"),
            "--watchlist",
            str(DEMO / "watchlist.yaml"),
            "--json",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    published = doc["publish"]
    assert len(published) >= 200
    days = {p["published_at"][:10] for p in published}
    assert len(days) >= 5
    entities = {e["id"] for p in published for e in p["entities"]}
    assert len(entities) >= 8
    bluefin = [p for p in published if any(e["id"] == "BLFN" for e in p["entities"])]
    assert sum("breach" in p["title"] for p in bluefin) >= 4
    assert any(d["reason"] == "near_duplicate" and "Bluefin" in d["title"] for d in doc["drop"])


def test_demo_generator_is_deterministic_and_committed(tmp_path: Path) -> None:
    import random

    from monitor.demo import generate

    a = generate.build(random.Random(20261123))
    b = generate.build(random.Random(20261123))
    assert [s.title for s in a["markets-wire"]] == [s.title for s in b["markets-wire"]]
    text = generate.rss("markets-wire", "Demo Markets Wire", a["markets-wire"])
    assert (DEMO / "feeds" / "markets-wire.rss").read_text(encoding="utf-8") == text
