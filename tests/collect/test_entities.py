from __future__ import annotations

from pathlib import Path

import pytest

from monitor.collect.entities import EntityMatcher, WatchEntity, Watchlist, load_watchlist
from monitor.errors import ConfigError

WL = Watchlist(
    entities=(
        WatchEntity(id="ACME", name="Acme Industries", ticker="ACME", aliases=("Acme",)),
        WatchEntity(id="GE2", name="General Widgets", ticker="GW"),
        WatchEntity(id="NWB", name="Northwind Bancorp", ticker="NWB", cashtags=("NWB.L",)),
        WatchEntity(id="NWE", name="Northwind Bancorp Energy", ticker="NWBE"),
    )
)


def test_names_case_insensitive_tickers_case_sensitive_and_word_bounded() -> None:
    m = EntityMatcher(WL)
    assert m.find("ACME INDUSTRIES cuts jobs") == [("ACME", "ACME INDUSTRIES")]
    assert m.find("acme shares") == [("ACME", "acme")]  # alias, folded
    assert m.find("GW falls; gw is a unit") == [("GE2", "GW")]
    assert m.find("Acmes and Acmeville") == []  # word boundary
    assert m.find("buy $NWB now, also $NWB.L") == [("NWB", "$NWB"), ("NWB", "$NWB.L")]


def test_longest_overlapping_match_wins() -> None:
    m = EntityMatcher(WL)
    assert m.find("Northwind Bancorp Energy spins off unit") == [
        ("NWE", "Northwind Bancorp Energy")
    ]


def test_relevance_title_over_summary_over_hint() -> None:
    m = EntityMatcher(WL)
    got = m.match("Acme wins order", "General Widgets and GW lose it", hints=("NWB",))
    rel = {e.id: (e.relevance, e.matched) for e in got}
    assert rel == {
        "ACME": (1.0, "Acme"),
        "GE2": (0.7, "General Widgets"),
        "NWB": (0.5, "(feed hint)"),
    }
    assert got[0].id == "ACME"


def test_watchlist_file_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "w.yaml"
    good.write_text("entities:\n  - {id: X, name: Xylo Corp, ticker: XYL}\n")
    assert load_watchlist(good).entities[0].ticker == "XYL"
    bad = tmp_path / "bad.yaml"
    bad.write_text("entities:\n  - {id: X, nam: typo}\n")
    with pytest.raises(ConfigError) as err:
        load_watchlist(bad)
    assert "entities.0.name" in str(err.value) and "entities.0.nam" in str(err.value)
