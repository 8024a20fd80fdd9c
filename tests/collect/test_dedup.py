"""Dedup and novelty, with an injected clock and no I/O."""

from __future__ import annotations

from monitor.collect.dedup import Candidate, Deduper
from monitor.collect.similarity import LshIndex, jaccard, shingles

H = 3600.0


def cand(i: str, title: str, ts: float, entities: tuple[str, ...] = ("X",)) -> Candidate:
    return Candidate(i, f"https://n.example/{i}", "f", title, entities, ts)


def test_shingles_ignore_wire_prefixes_case_possessives_and_source_suffixes() -> None:
    a = shingles("Acme Corp's profit falls")
    b = shingles("UPDATE 2-ACME CORP PROFIT FALLS - Reuters")
    assert a == b
    assert jaccard(a, b) == 1.0


def test_lsh_finds_near_duplicates_and_only_them() -> None:
    idx = LshIndex()
    idx.add("1", shingles("Bluefin Payments discloses data breach affecting 2 million customers"))
    idx.add("2", shingles("Helios Semiconductor names new chief financial officer"))
    near = idx.near(shingles("Bluefin Payments says data breach hit 2 million customers"), 0.6)
    assert [k for k, _ in near] == ["1"]
    idx.remove("1")
    assert idx.near(shingles("Bluefin Payments data breach 2 million customers"), 0.6) == []


def test_same_template_about_different_entities_is_not_a_duplicate() -> None:
    d = Deduper()
    assert d.check(cand("a", "Solano Foods cuts full-year outlook", 0, ("SLNO",)), 0).new
    assert d.check(cand("b", "Atlas Retail cuts full-year outlook", 0, ("ATLR",)), 0).new
    v = d.check(cand("c", "Solano Foods cuts its full-year outlook", 60, ("SLNO",)), 60)
    assert not v.new and v.reason == "near_duplicate" and v.duplicate_of == "a"


def test_novelty_decays_over_24_hours_and_drops_with_repeats() -> None:
    d = Deduper()
    first = d.check(cand("1", "Bluefin data breach hits card customers", 0), 0)
    assert first.novelty == {"X": 1.0}
    d.commit(["1"])
    related = "Bluefin data breach: regulators open probe into card customers loss"
    soon = d.check(cand("2", related, 1 * H), 1 * H)
    d.release(["2"])
    late = d.check(cand("3", related, 23 * H), 23 * H)
    d.release(["3"])
    assert soon.new and late.new
    assert soon.novelty["X"] < late.novelty["X"] < 1.0
    after = d.check(cand("4", related, 30 * H), 30 * H)
    assert after.novelty["X"] == 1.0
    d.release(["4"])
    # Follow-ups pile up: each one lowers the next one's novelty.
    follow_ups = [
        "Bluefin breach: card customers told to watch statements",
        "Bluefin breach costs estimated at $200 million for card customers",
        "Bluefin card customers sue over breach",
        "Bluefin breach: second wave of card customers notified",
    ]
    scores = []
    for n, title in enumerate(follow_ups):
        v = d.check(cand(f"r{n}", title, H), H)
        assert v.new, title
        scores.append(v.novelty["X"])
    assert scores == sorted(scores, reverse=True) and scores[-1] < scores[0]


def test_reservation_blocks_a_concurrent_copy_and_release_frees_it() -> None:
    d = Deduper()
    assert d.check(cand("a", "Quarry Mining halts Andes mine after accident", 0), 0).new
    copy = d.check(cand("b", "Quarry Mining halts Andes mine after an accident", 0), 0)
    assert not copy.new
    d.release(["a"])
    assert d.check(cand("b", "Quarry Mining halts Andes mine after an accident", 0), 0).new


def test_seen_set_expires_after_retention(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from monitor.collect.state import SeenRow, StateStore

    store = StateStore(tmp_path / "s.sqlite")
    day = 86400.0
    rows = [
        SeenRow(f"i{n}", None, "f", f"title {n}", frozenset({"t"}), (), 0, n * day)
        for n in range(5)
    ]
    store.add_seen(rows)
    assert store.prune(before_ts=3 * day) == 3 and store.count_seen() == 2
    d = Deduper(retention_s=2 * day)
    assert d.load(store, now=5 * day) == 2
    assert not d.check(cand("i4", "whatever title here", 5 * day), 5 * day).new
    d.prune_ids(now=7 * day)
    assert len(d) == 0
    store.close()
