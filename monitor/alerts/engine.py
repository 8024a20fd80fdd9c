"""The rule engine: scored items in, alerts out, in event time (each item's ``published_at``).

Windows
    A windowed rule keeps, per group key (entity by default), the matched items of the last
    ``window.size`` plus ``allowed_lateness``. The watermark is the newest event time this engine
    has seen minus the rule's allowed lateness; an item older than the watermark is too late: it is
    dropped and counted. An item that arrives out of order but within the lateness is inserted in
    event-time order and every window it belongs to (those ending at it and at the later items
    less than ``size`` after it) is evaluated again.

    A rule fires eagerly: as soon as one window meets the condition. It clears (and sends
    ``resolved`` when ``send_resolved``) when the window ending at the watermark — which no later
    item can change any more — no longer meets it, and that window ends after the one that fired.

State across restarts
    We persist window state rather than rebuild it: a window spans hours while the consumer
    commits every second, so the records replayed after a restart (those since the last commit)
    are far fewer than the window holds. At each checkpoint the role saves every group changed
    since the previous one to SQLite, then commits offsets: saved state and committed offsets
    describe the same point of the stream. After a crash the replayed records rebuild what was
    lost; an item already in its group (a replay past a save) is recognised by id and ignored.
    Alert ids are derived from the fingerprint and the window, so a re-derived alert has the id
    it had before and the outbox ignores it. Only the newest ``max_items`` events of a group
    keep their item details in the saved state (older ones are never shown).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from monitor.alerts.config import RuleConfig, _AlertsDoc
from monitor.alerts.rules import CompiledRule, RuleIndex, compile_rules, novelty_of
from monitor.records import Alert, AlertItem, ScoredItem, rfc3339

_FIELD = re.compile(r"\{([a-z_]+)\}")


def fingerprint_of(rule: str, key: str) -> str:
    return hashlib.sha256(f"{rule}\x00{key}".encode()).hexdigest()[:16]


def _id(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def fill(template: str, values: dict[str, Any]) -> str:
    """Replace ``{name}`` with values (only names, no attribute access: templates are plain)."""

    def sub(m: re.Match[str]) -> str:
        v = values.get(m.group(1))
        if v is None:
            return m.group(0)
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    return _FIELD.sub(sub, template)


@dataclass
class Event:
    ts: float
    id: str
    polarity: float
    negative: bool
    item: dict[str, Any]


@dataclass
class GroupState:
    """One (rule, group key): its window events, baseline buckets and firing state.

    ``ts``, ``cpol`` and ``cneg`` run beside ``events``: event times and running sums of
    polarity and negatives. A window's count, mean and share are then two bisects and two
    differences; dropping events from the front leaves the differences valid.
    """

    rule: str
    key: str
    events: list[Event] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    cpol: list[float] = field(default_factory=list)
    cneg: list[int] = field(default_factory=list)
    base_pol: float = 0.0  # running sums just before events[0]
    base_neg: int = 0
    ids: set[str] = field(default_factory=set)
    buckets: dict[int, list[float]] = field(default_factory=dict)
    firing: bool = False
    fired_end: float | None = None
    alert_id: str | None = None
    # The window at the watermark cannot change before this (not saved: a reload re-checks).
    check_after: float = float("-inf")

    def to_json(self, keep_items: int = 100) -> str:
        """Serialise; only the newest ``keep_items`` events keep their item (for ``items``)."""
        cut = len(self.events) - keep_items
        return json.dumps(
            {
                "events": [
                    [e.ts, e.id, e.polarity, e.negative, e.item if i >= cut else {}]
                    for i, e in enumerate(self.events)
                ],
                "buckets": {str(k): v for k, v in self.buckets.items()},
                "firing": self.firing,
                "fired_end": self.fired_end,
                "alert_id": self.alert_id,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, rule: str, key: str, text: str) -> GroupState:
        doc = json.loads(text)
        g = cls(rule, key)
        for e in doc["events"]:
            g.insert(Event(e[0], e[1], e[2], e[3], e[4]))
        g.buckets = {int(k): v for k, v in doc["buckets"].items()}
        g.firing = doc["firing"]
        g.fired_end = doc["fired_end"]
        g.alert_id = doc["alert_id"]
        return g

    def insert(self, ev: Event) -> int:
        ts = self.ts
        pos = len(ts) if not ts or ts[-1] <= ev.ts else bisect.bisect_right(ts, ev.ts)
        prev_pol = self.cpol[pos - 1] if pos else self.base_pol
        prev_neg = self.cneg[pos - 1] if pos else self.base_neg
        neg = 1 if ev.negative else 0
        self.events.insert(pos, ev)
        ts.insert(pos, ev.ts)
        self.cpol.insert(pos, prev_pol + ev.polarity)
        self.cneg.insert(pos, prev_neg + neg)
        for j in range(pos + 1, len(ts)):  # only for out-of-order inserts
            self.cpol[j] += ev.polarity
            self.cneg[j] += neg
        self.ids.add(ev.id)
        self.check_after = float("-inf")
        return pos

    def next_change(self, end: float, size: float) -> float:
        """The first later window end at which an event leaves or enters the window."""
        lo, hi = self.bounds(end, size)
        leave = self.ts[lo] + size if lo < hi else float("inf")
        enter = self.ts[hi] if hi < len(self.ts) else float("inf")
        return min(leave, enter)

    def drop_until(self, horizon: float) -> None:
        """Forget events at or before ``horizon`` (no window still open can hold them)."""
        n = bisect.bisect_right(self.ts, horizon)
        if n:
            for e in self.events[:n]:
                self.ids.discard(e.id)
            self.base_pol = self.cpol[n - 1]
            self.base_neg = self.cneg[n - 1]
            del self.events[:n], self.ts[:n], self.cpol[:n], self.cneg[:n]

    def bounds(self, end: float, size: float) -> tuple[int, int]:
        return bisect.bisect_right(self.ts, end - size), bisect.bisect_right(self.ts, end)

    def sums(self, lo: int, hi: int) -> tuple[int, float, int]:
        """count, sum of polarity, negatives of events[lo:hi]."""
        if hi <= lo:
            return 0, 0.0, 0
        pol = self.cpol[hi - 1] - (self.cpol[lo - 1] if lo else self.base_pol)
        neg = self.cneg[hi - 1] - (self.cneg[lo - 1] if lo else self.base_neg)
        return hi - lo, pol, neg

    def window(self, end: float, size: float) -> list[Event]:
        lo, hi = self.bounds(end, size)
        return self.events[lo:hi]


class StateStore(Protocol):
    """Where group states are loaded from; :class:`monitor.alerts.store.AlertStore` is one."""

    def load_group(self, rule: str, key: str) -> str | None: ...

    def firing_groups(self) -> Iterable[tuple[str, str, str]]: ...


@dataclass
class EngineStats:
    evaluated: int = 0
    matched: int = 0
    late: dict[str, int] = field(default_factory=dict)


class Engine:
    """Evaluates rules on scored items. Not thread-safe: one engine per consuming thread."""

    def __init__(
        self,
        doc: _AlertsDoc,
        *,
        state: StateStore | None = None,
        watermark: float | None = None,
        on_late: Callable[[str], None] | None = None,
        advance_step: float = 0.0,
    ) -> None:
        self.rules = compile_rules(doc.rules, doc.watchlists)
        self.index = RuleIndex.build(self.rules)
        self.by_name = {r.name: r for r in self.rules}
        self.state = state
        self.groups: dict[tuple[str, str], GroupState] = {}
        self.dirty: set[tuple[str, str]] = set()
        self.max_ts = watermark if watermark is not None else float("-inf")
        self.stats = EngineStats()
        self.on_late = on_late
        self._item_cache: tuple[ScoredItem, dict[str, Any]] | None = None
        # Firing groups, and a heap of when each may next clear (in event time, lateness
        # included): advance() touches only the groups whose window at the watermark changed.
        self.firing: dict[tuple[str, str], None] = {}  # insertion-ordered set
        self._due: list[tuple[float, str, str]] = []
        self.advance_step = advance_step
        self._advanced_at = float("-inf")
        if state is not None:
            for rule, key, text in state.firing_groups():
                if rule in self.by_name:
                    self.groups[(rule, key)] = GroupState.from_json(rule, key, text)
                    self.firing[(rule, key)] = None
                    heapq.heappush(self._due, (float("-inf"), rule, key))

    # --- public ------------------------------------------------------------------------------

    def process(self, item: ScoredItem) -> list[Alert]:
        """Evaluate one item; returns the alerts it raises (firing and resolved)."""
        ts = item.published_at.timestamp()
        self.max_ts = max(self.max_ts, ts)
        self.stats.evaluated += 1
        out: list[Alert] = []
        for rule in self.index.candidates(item):
            self.stats.matched += 1
            for key in rule.group_keys(item):
                if rule.cfg.window is None:
                    out.append(self._instant(rule, key, item))
                else:
                    alert = self._windowed(rule, key, item, ts)
                    if alert is not None:
                        out.append(alert)
        out += self.advance()
        return out

    def advance(self, now: float | None = None) -> list[Alert]:
        """Clear firing groups whose window at the watermark no longer holds."""
        if now is not None:
            self.max_ts = max(self.max_ts, now)
        elif self.max_ts < self._advanced_at + self.advance_step:
            return []
        self._advanced_at = self.max_ts
        out: list[Alert] = []
        due = self._due
        while due and due[0][0] <= self.max_ts:
            at, name, key = heapq.heappop(due)
            g = self.groups.get((name, key))
            rule = self.by_name.get(name)
            if g is None or not g.firing or at != g.check_after or rule is None:
                continue  # stale entry: rescheduled since, or no longer firing
            if rule.cfg.window is None or rule.cfg.condition is None:
                continue
            wm = self.max_ts - rule.cfg.window.allowed_lateness
            if g.fired_end is not None and wm <= g.fired_end:
                self._schedule(rule, g, g.fired_end, after=True)
                continue
            if self._holds(rule, g, wm) and (
                rule.cfg.condition.zscore is None or self._evaluate(rule, g, wm)[0]
            ):
                self._schedule(rule, g, wm)
                continue
            ok, values, _conds, events = self._evaluate(rule, g, wm)
            g.firing = False
            del self.firing[(name, key)]
            fired_id = g.alert_id or ""
            g.alert_id = None
            self.dirty.add((name, key))
            if rule.cfg.send_resolved:
                out.append(
                    self._alert(
                        rule,
                        key,
                        "resolved",
                        _id(fingerprint_of(name, key), "resolved", fired_id),
                        start=g.fired_end or wm,
                        end=wm,
                        events=events,
                        values=values,
                        conds=_conds,
                        filters=[],
                    )
                )
            self._prune(rule, g)
        return out

    def _schedule(self, rule: CompiledRule, g: GroupState, wm: float, after: bool = False) -> None:
        """Queue ``g`` for the watermark at which its window next changes."""
        w = rule.cfg.window
        c = rule.cfg.condition
        assert w is not None and c is not None
        if after:
            nxt = wm + 1e-6
        elif c.zscore is not None:
            nxt = wm + min(w.size, _bucket(c.zscore.baseline))  # the baseline moves too
        else:
            nxt = g.next_change(wm, w.size)
        g.check_after = nxt + w.allowed_lateness
        heapq.heappush(self._due, (g.check_after, rule.name, g.key))

    def dirty_states(self) -> list[tuple[str, str, str]]:
        """(rule, key, json) of every group changed since the last call."""
        groups = self.groups
        keep = {r.name: r.cfg.max_items for r in self.rules}
        out = [
            (r, k, groups[(r, k)].to_json(keep.get(r, 100)))
            for r, k in self.dirty
            if (r, k) in groups
        ]
        # Saved now: an empty, quiet group need not stay in memory (it reloads as empty).
        for r, k in self.dirty:
            g = groups.get((r, k))
            if g is not None and not g.events and not g.firing and not g.buckets:
                del groups[(r, k)]
        self.dirty.clear()
        return out

    # --- internals ---------------------------------------------------------------------------

    def _group(self, rule: str, key: str) -> GroupState:
        g = self.groups.get((rule, key))
        if g is None:
            text = self.state.load_group(rule, key) if self.state is not None else None
            g = GroupState.from_json(rule, key, text) if text else GroupState(rule, key)
            self.groups[(rule, key)] = g
        return g

    def _item(self, item: ScoredItem) -> dict[str, Any]:
        """The item as an alert carries it (AlertItem's JSON), built once per record."""
        if self._item_cache is not None and self._item_cache[0] is item:
            return self._item_cache[1]
        doc = {
            "id": item.id,
            "url": item.url,
            "title": item.title,
            "source": item.source,
            "sentiment": item.sentiment.label,
            "polarity": item.sentiment.polarity,
            "tags": [r.tag for r in item.risk if r.p >= 0.5],
            "novelty": novelty_of(item),
            "published_at": rfc3339(item.published_at),
        }
        self._item_cache = (item, doc)
        return doc

    def _instant(self, rule: CompiledRule, key: str, item: ScoredItem) -> Alert:
        fp = fingerprint_of(rule.name, key)
        filters = rule.explain_filters(item)
        ts = item.published_at.timestamp()
        ev = Event(ts, item.id, item.sentiment.polarity, item.sentiment.label == "negative", {})
        ev.item = self._item(item)
        return self._alert(
            rule,
            key,
            "firing",
            _id(fp, "item", item.id),
            start=ts,
            end=None,
            events=[ev],
            values={"count": 1, "polarity": item.sentiment.polarity},
            conds=[],
            filters=filters,
        )

    def _windowed(self, rule: CompiledRule, key: str, item: ScoredItem, ts: float) -> Alert | None:
        w = rule.cfg.window
        assert w is not None
        g = self._group(rule.name, key)
        if item.id in g.ids:
            return None  # replayed after a restart: already counted
        if ts < self.max_ts - w.allowed_lateness:
            self.stats.late[rule.name] = self.stats.late.get(rule.name, 0) + 1
            if self.on_late is not None:
                self.on_late(rule.name)
            return None
        ev = Event(ts, item.id, item.sentiment.polarity, item.sentiment.label == "negative", {})
        ev.item = self._item(item)
        pos = g.insert(ev)
        if g.firing:
            heapq.heappush(self._due, (g.check_after, rule.name, key))  # insert reset it
        z = rule.cfg.condition.zscore if rule.cfg.condition else None
        if z is not None:
            b = g.buckets.setdefault(int(ts // _bucket(z.baseline)), [0.0, 0.0, 0.0])
            p = item.sentiment.polarity
            b[0] += 1
            b[1] += p
            b[2] += p * p
        self.dirty.add((rule.name, key))
        alert: Alert | None = None
        if not g.firing:
            # Windows ending at the new item and at later items within `size` of it.
            ends = [ts] + [t for t in g.ts[pos + 1 :] if t < ts + w.size]
            for end in ends:
                if not self._holds(rule, g, end):
                    continue
                ok, values, conds, events = self._evaluate(rule, g, end)
                if ok:
                    g.firing = True
                    self.firing[(rule.name, key)] = None
                    self._schedule(rule, g, end)
                    g.fired_end = end
                    fp = fingerprint_of(rule.name, key)
                    g.alert_id = _id(fp, "firing", f"{end:.3f}")
                    alert = self._alert(
                        rule,
                        key,
                        "firing",
                        g.alert_id,
                        start=end,
                        end=None,
                        events=events,
                        values=values,
                        conds=conds,
                        filters=rule.explain_filters(item),
                    )
                    break
        self._prune(rule, g)
        return alert

    def _prune(self, rule: CompiledRule, g: GroupState) -> None:
        w = rule.cfg.window
        assert w is not None
        g.drop_until(self.max_ts - w.allowed_lateness - w.size)
        z = rule.cfg.condition.zscore if rule.cfg.condition else None
        if z is not None and g.buckets:
            width = _bucket(z.baseline)
            oldest = int((self.max_ts - w.allowed_lateness - z.baseline) // width) - 1
            for k in [k for k in g.buckets if k < oldest]:
                del g.buckets[k]

    def _holds(self, rule: CompiledRule, g: GroupState, end: float) -> bool:
        """The condition at ``end``, numbers only (the fast path; explain comes after)."""
        w = rule.cfg.window
        c = rule.cfg.condition
        assert w is not None and c is not None
        n, spol, sneg = g.sums(*g.bounds(end, w.size))
        if n == 0:
            return False
        if c.count is not None and not c.count.holds(n):
            return False
        if c.mean_polarity is not None and not c.mean_polarity.holds(round(spol / n, 4)):
            return False
        # zscore is left to _evaluate: it needs the baseline sums.
        return c.share_negative is None or c.share_negative.holds(round(sneg / n, 4))

    def _evaluate(
        self, rule: CompiledRule, g: GroupState, end: float
    ) -> tuple[bool, dict[str, Any], list[dict[str, Any]], list[Event]]:
        w = rule.cfg.window
        c = rule.cfg.condition
        assert w is not None and c is not None
        lo, hi = g.bounds(end, w.size)
        events = g.events[lo:hi]
        n, spol, sneg = g.sums(lo, hi)
        mean = spol / n if n else 0.0
        neg = sneg / n if n else 0.0
        values: dict[str, Any] = {
            "count": n,
            "mean_polarity": round(mean, 4),
            "share_negative": round(neg, 4),
        }
        conds: list[dict[str, Any]] = []
        ok = True

        def check(name: str, bound: Any, value: float | None) -> None:
            nonlocal ok
            met = value is not None and bound.holds(value)
            conds.append(
                {
                    "condition": name,
                    "min": bound.min,
                    "max": bound.max,
                    "value": value,
                    "met": met,
                }
            )
            ok = ok and met

        if c.count is not None:
            check("count", c.count, float(n))
        if n == 0:
            ok = False
        if c.mean_polarity is not None:
            check("mean_polarity", c.mean_polarity, round(mean, 4) if n else None)
        if c.share_negative is not None:
            check("share_negative", c.share_negative, round(neg, 4) if n else None)
        if c.zscore is not None:
            z = c.zscore
            width = _bucket(z.baseline)
            first = int((end - w.size) // width)  # buckets strictly before the window
            last = int((end - z.baseline) // width)
            bn = bs = bss = 0.0
            for k, (cn, cs, css) in g.buckets.items():
                if last <= k < first:
                    bn += cn
                    bs += cs
                    bss += css
            zval: float | None = None
            if bn >= z.min_samples and n:
                mu = bs / bn
                sd = max(math.sqrt(max(bss / bn - mu * mu, 0.0)), z.min_std)
                zval = round((mean - mu) / (sd / math.sqrt(n)), 3)
                values["baseline"] = {"n": int(bn), "mean": round(mu, 4), "std": round(sd, 4)}
            else:
                values["baseline"] = {"n": int(bn), "needs": z.min_samples}
            values["zscore"] = zval
            check("zscore", z, zval)
        return ok, values, conds, events

    def _alert(
        self,
        rule: CompiledRule,
        key: str,
        status: str,
        alert_id: str,
        *,
        start: float,
        end: float | None,
        events: list[Event],
        values: dict[str, Any],
        conds: list[dict[str, Any]],
        filters: list[dict[str, Any]],
    ) -> Alert:
        cfg: RuleConfig = rule.cfg
        entity = key if cfg.group_by == "entity" else None
        latest = events[-1].item if events else {}
        tmpl_values: dict[str, Any] = {
            **{k: v for k, v in values.items() if not isinstance(v, dict)},
            "rule": cfg.name,
            "severity": cfg.severity,
            "entity": entity or key,
            "key": key,
            "status": status,
            "title": latest.get("title"),
            "source": latest.get("source"),
        }
        if cfg.window is not None:
            tmpl_values["window"] = _human(cfg.window.size)
        annotations = {k: fill(v, tmpl_values) for k, v in cfg.annotations.items()}
        title = annotations.pop("title", None) or _default_title(cfg, entity or key, values)
        summary = annotations.pop("summary", None) or _default_summary(cfg, values, latest)
        items = [AlertItem.model_validate(e.item) for e in events[-cfg.max_items :] if e.item][::-1]
        explain: dict[str, Any] = {
            "rule": cfg.name,
            "description": cfg.description,
            "group_by": cfg.group_by,
            "group_key": key,
            "filters": filters,
            "conditions": conds,
            "values": values,
        }
        if cfg.window is not None:
            explain["window"] = {
                "size_s": cfg.window.size,
                "allowed_lateness_s": cfg.window.allowed_lateness,
                "end": _dt(end if end is not None else start).isoformat(),
            }
        return Alert(
            id=alert_id,
            fingerprint=fingerprint_of(cfg.name, key),
            rule=cfg.name,
            severity=cfg.severity,
            status=status,  # type: ignore[arg-type]
            entity=entity,
            title=title,
            summary=summary,
            items=tuple(items),
            starts_at=_dt(start),
            ends_at=_dt(end) if end is not None and status == "resolved" else None,
            labels=dict(cfg.labels),
            annotations=annotations,
            explain=explain,
        )


def _bucket(baseline: float) -> float:
    # ~168 buckets per baseline (1 h for 7 d): cheap sums, fine enough to exclude the window.
    return max(60.0, baseline / 168.0)


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _default_title(cfg: RuleConfig, key: str, values: dict[str, Any]) -> str:
    return f"[{cfg.severity}] {cfg.name}: {key}"


def _default_summary(cfg: RuleConfig, values: dict[str, Any], latest: dict[str, Any]) -> str:
    if cfg.window is None:
        return str(latest.get("title", ""))
    parts = [f"{values['count']} items in {_human(cfg.window.size)}"]
    parts.append(f"mean polarity {values['mean_polarity']:+.2f}")
    parts.append(f"{values['share_negative']:.0%} negative")
    if values.get("zscore") is not None:
        parts.append(f"z {values['zscore']:+.2f} vs baseline")
    return ", ".join(parts)
