"""Event-time windows: in order, out of order, late, resolved, z-score, restart, index = naive."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from monitor.alerts.config import AlertsConfig
from monitor.alerts.engine import Engine, fingerprint_of
from monitor.alerts.rules import naive_matches
from monitor.alerts.store import AlertStore

from .kit import T0, scored


def engine(rule: dict[str, Any], **kw: Any) -> Engine:
    cfg = AlertsConfig.model_validate({"rules": [rule]})
    return Engine(cfg.effective, **kw)


BURST = {
    "name": "burst",
    "match": {"sentiment": "negative"},
    "window": {"size": "1h", "allowed_lateness": "10m"},
    "condition": {"count": {"min": 3}},
    "send_resolved": True,
}


def test_count_window_fires_once_in_order() -> None:
    e = engine(BURST)
    assert e.process(scored("a", T0)) == []
    assert e.process(scored("b", T0 + 600)) == []
    fired = e.process(scored("c", T0 + 1200))
    assert [a.status for a in fired] == ["firing"]
    a = fired[0]
    assert a.fingerprint == fingerprint_of("burst", "ACME") and a.entity == "ACME"
    assert a.explain["values"]["count"] == 3
    assert a.explain["conditions"][0] == {
        "condition": "count",
        "min": 3.0,
        "max": None,
        "value": 3.0,
        "met": True,
    }
    assert [i.id for i in a.items] == ["c", "b", "a"]  # newest first, with url/title/sentiment
    assert a.items[0].url.endswith("/c") and a.items[0].sentiment == "negative"
    # Still firing: more items do not raise the alert again.
    assert e.process(scored("d", T0 + 1300)) == []


def test_items_outside_the_window_do_not_count() -> None:
    e = engine(BURST)
    e.process(scored("a", T0))
    e.process(scored("b", T0 + 3000))
    assert e.process(scored("c", T0 + 3700)) == []  # 'a' is more than 1h before 'c'


def test_out_of_order_event_within_lateness_completes_an_earlier_window() -> None:
    e = engine(BURST)
    e.process(scored("a", T0))
    e.process(scored("c", T0 + 1200))
    # 'b' arrives after 'c' but belongs between them: the window ending at 'c' now has 3.
    fired = e.process(scored("b", T0 + 600))
    assert [a.status for a in fired] == ["firing"]
    assert fired[0].explain["window"]["end"].startswith("2026-")
    assert {i.id for i in fired[0].items} == {"a", "b", "c"}


def test_late_event_beyond_allowed_lateness_is_dropped_and_counted() -> None:
    late: list[str] = []
    e = engine(BURST, on_late=late.append)
    e.process(scored("a", T0 + 4000))
    e.process(scored("b", T0 + 4100))
    # 'old' is 4100-1000 = 3100 s behind the newest event: over the 600 s lateness.
    assert e.process(scored("old", T0 + 1000)) == []
    assert late == ["burst"] and e.stats.late == {"burst": 1}
    assert e.process(scored("c", T0 + 4200))[0].explain["values"]["count"] == 3


def test_resolves_when_the_watermark_passes_the_burst() -> None:
    e = engine(BURST)
    for i, dt in enumerate((0, 60, 120)):
        out = e.process(scored(f"n{i}", T0 + dt))
    assert [a.status for a in out] == ["firing"]
    firing = out[0]
    # A neutral item for another entity moves event time but not yet past the lateness.
    assert e.process(scored("x", T0 + 3000, entity="OTHER", label="neutral")) == []
    # Watermark = newest - 10 min; the window at the watermark must exclude n0..n2.
    out = e.process(scored("y", T0 + 120 + 3600 + 600 + 1, entity="OTHER", label="neutral"))
    assert [a.status for a in out] == ["resolved"]
    r = out[0]
    assert r.fingerprint == firing.fingerprint and r.id != firing.id
    assert r.ends_at is not None and r.starts_at == firing.starts_at


def test_mean_polarity_and_share_negative() -> None:
    rule = {
        "name": "sour",
        "window": {"size": "30m", "allowed_lateness": 0},
        "condition": {
            "count": {"min": 4},
            "mean_polarity": {"max": -0.3},
            "share_negative": {"min": 0.5},
        },
    }
    e = engine(rule)
    e.process(scored("p", T0, label="positive", polarity=0.6))
    e.process(scored("n1", T0 + 1, label="negative", polarity=-0.9))
    assert e.process(scored("z", T0 + 2, label="neutral", polarity=0.0)) == []
    out = e.process(scored("n2", T0 + 3, label="negative", polarity=-0.9))
    # mean = (0.6 - 0.9 + 0 - 0.9) / 4 = -0.3; share negative = 0.5
    assert len(out) == 1
    vals = out[0].explain["values"]
    assert vals["mean_polarity"] == -0.3 and vals["share_negative"] == 0.5


def test_zscore_drop_against_trailing_baseline() -> None:
    rule = {
        "name": "drop",
        "window": {"size": "1h", "allowed_lateness": 0},
        "condition": {
            "count": {"min": 3},
            "zscore": {"max": -3, "baseline": "7d", "min_samples": 20},
        },
    }
    e = engine(rule)
    rng = random.Random(7)
    # Two days of mildly positive news, one item an hour.
    for h in range(48):
        pol = 0.2 + rng.uniform(-0.1, 0.1)
        assert e.process(scored(f"b{h}", T0 + h * 3600, label="neutral", polarity=pol)) == []
    t = T0 + 48 * 3600
    out: list[Any] = []
    for i in range(3):
        out += e.process(scored(f"d{i}", t + i * 60, label="negative", polarity=-0.7))
    assert [a.status for a in out] == ["firing"]
    vals = out[0].explain["values"]
    assert vals["zscore"] < -3 and vals["baseline"]["n"] >= 20


def test_zscore_needs_enough_baseline() -> None:
    rule = {
        "name": "drop",
        "window": {"size": "1h", "allowed_lateness": 0},
        "condition": {"zscore": {"max": -3, "min_samples": 20}},
    }
    e = engine(rule)
    out = []
    for i in range(5):
        out += e.process(scored(f"d{i}", T0 + i, polarity=-0.9))
    assert out == []


def test_instant_rule_with_risk_tag_explains_the_match() -> None:
    rule = {
        "name": "fraud",
        "match": {"risk": [{"tag": "fraud_misconduct", "min_p": 0.8}], "min_novelty": 0.5},
        "severity": "critical",
        "annotations": {"summary": "{entity}: {title}"},
    }
    e = engine(rule)
    assert e.process(scored("low", T0, risk=(("fraud_misconduct", 0.7),))) == []
    assert e.process(scored("stale", T0, risk=(("fraud_misconduct", 0.9),), novelty=0.1)) == []
    out = e.process(scored("hit", T0 + 1, risk=(("fraud_misconduct", 0.93),), novelty=0.9))
    assert len(out) == 1
    a = out[0]
    assert a.severity == "critical" and a.summary == f"ACME: {a.items[0].title}"
    risk = next(f for f in a.explain["filters"] if f["filter"] == "risk")
    assert risk["value"] == [{"tag": "fraud_misconduct", "p": 0.93, "min_p": 0.8}]
    # Same item again (a replay): same alert id, so the outbox ignores it.
    assert e.process(scored("hit", T0 + 1, risk=(("fraud_misconduct", 0.93),)))[0].id == a.id


def test_window_state_survives_a_restart_and_replays_are_ignored(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite")
    cfg = AlertsConfig.model_validate({"rules": [BURST]})
    e1 = Engine(cfg.effective, state=store)
    e1.process(scored("a", T0))
    e1.process(scored("b", T0 + 60))
    store.commit_batch([], e1.dirty_states(), now=T0, watermark=e1.max_ts)
    # Restart: a new engine on the same store; the batch after the commit is replayed.
    e2 = Engine(cfg.effective, state=store, watermark=store.watermark())
    assert e2.process(scored("b", T0 + 60)) == []  # replayed: recognised, not counted twice
    out = e2.process(scored("c", T0 + 120))
    assert [a.explain["values"]["count"] for a in out] == [3]
    store.commit_batch([], e2.dirty_states(), now=T0, watermark=e2.max_ts)
    # A third engine knows the group is firing (loaded eagerly) and can resolve it.
    e3 = Engine(cfg.effective, state=store, watermark=store.watermark())
    assert e3.groups[("burst", "ACME")].firing
    out = e3.advance(now=T0 + 120 + 3600 + 601)
    assert [a.status for a in out] == ["resolved"]
    store.close()


def test_index_gives_the_same_matches_as_naive_evaluation() -> None:
    rules: list[dict[str, Any]] = []
    for i in range(60):
        kind = i % 5
        if kind == 0:
            rules.append({"name": f"e{i}", "match": {"entities": [f"E{i % 7}"]}})
        elif kind == 1:
            rules.append(
                {"name": f"s{i}", "match": {"sources": [f"src{i % 3}"], "sentiment": "negative"}}
            )
        elif kind == 2:
            rules.append(
                {"name": f"r{i}", "match": {"risk": [{"tag": "credit", "min_p": (i % 10) / 10}]}}
            )
        elif kind == 3:
            rules.append(
                {"name": f"l{i}", "match": {"sentiment": ["positive"], "keywords": ["beat"]}}
            )
        else:
            rules.append({"name": f"k{i}", "match": {"title_regex": r"(?i)headline \w*[13]$"}})
    cfg = AlertsConfig.model_validate({"rules": rules})
    e = Engine(cfg.effective)
    rng = random.Random(1)
    for n in range(500):
        item = scored(
            f"i{n}",
            T0 + n,
            entity=f"E{rng.randrange(9)}",
            label=rng.choice(["negative", "neutral", "positive"]),
            source=f"src{rng.randrange(4)}",
            risk=(("credit", rng.random()),),
            title=rng.choice(["X beat", "headline a1", "other", "headline b3"]),
        )
        fast = [r.name for r in e.index.candidates(item)]
        slow = [r.name for r in naive_matches(e.rules, item)]
        assert fast == slow


def test_running_sums_match_brute_force_with_out_of_order_inserts_and_drops() -> None:
    from monitor.alerts.engine import Event, GroupState

    rng = random.Random(5)
    g = GroupState("r", "k")
    t = 0.0
    for i in range(2000):
        t += rng.uniform(0, 10)
        ts = t - rng.uniform(0, 60) if rng.random() < 0.3 else t
        g.insert(Event(ts, f"e{i}", rng.uniform(-1, 1), rng.random() < 0.4, {}))
        if i % 50 == 0:
            g.drop_until(t - 900)
        end = t - rng.uniform(0, 100)
        lo, hi = g.bounds(end, 300)
        n, pol, neg = g.sums(lo, hi)
        brute = [e for e in g.events if end - 300 < e.ts <= end]
        assert n == len(brute) and neg == sum(e.negative for e in brute)
        assert abs(pol - sum(e.polarity for e in brute)) < 1e-9
    assert g.ts == sorted(g.ts) and len(g.ids) == len(g.events)
