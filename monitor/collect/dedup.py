"""Dedup and novelty: is this item new, and how new is its story for each entity it names?

An item is a duplicate when its id, its canonical URL, or (within the near-duplicate window) its
headline's word set matches one already published or in flight. Near-duplicates must also be
about the same entities: "Solano Foods cuts outlook" is not a copy of "Atlas Retail cuts
outlook", so two items that both name watchlist entities, but no entity in common, never match.
Checks reserve the item, so two feeds polled at once cannot both publish one story; a failed
publish releases the reservation, a successful one is committed to the state file by the caller.

Novelty (per entity, in [0, 1]): 1 for a story the entity has not had, lower for each related
story of the same entity in the last ``window`` (default 24 h):
``novelty = prod(1 - jaccard(story, other) * (1 - age / window))`` over the entity's recent
stories with a Jaccard of at least 0.2. A verbatim copy an hour later scores about 0.04; the tenth
follow-up of one story scores near 0; yesterday's story barely counts.

Related stories are found through a per-entity inverted index of headline words, skipping the
words that most of the entity's stories share (its own name), so the cost of a novelty score
grows with the number of *related* stories, not with all of the entity's news.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from monitor.collect.similarity import LshIndex, band_keys, jaccard, shingles
from monitor.collect.state import SeenRow, StateStore

RELATED_JACCARD = 0.2


@dataclass(frozen=True)
class Candidate:
    id: str
    url: str | None
    source: str
    title: str
    entities: tuple[str, ...]
    event_ts: float


@dataclass(frozen=True)
class Verdict:
    new: bool
    reason: str | None  # same_id | same_url | near_duplicate (None when new)
    duplicate_of: str | None
    similarity: float | None
    novelty: dict[str, float]
    item_novelty: float
    words: frozenset[str]


@dataclass
class _Entry:
    id: str
    words: frozenset[str]
    event_ts: float
    seen_ts: float


class _EntityNews:
    """One entity's recent stories, with an inverted index of their words."""

    def __init__(self) -> None:
        self.entries: deque[_Entry] = deque()
        self.postings: dict[str, set[str]] = {}
        self.by_id: dict[str, _Entry] = {}

    def add(self, entry: _Entry) -> None:
        self.entries.append(entry)
        self.by_id[entry.id] = entry
        for w in entry.words:
            self.postings.setdefault(w, set()).add(entry.id)

    def _unindex(self, entry: _Entry) -> None:
        self.by_id.pop(entry.id, None)
        for w in entry.words:
            ids = self.postings.get(w)
            if ids is not None:
                ids.discard(entry.id)
                if not ids:
                    del self.postings[w]

    def remove(self, entry: _Entry) -> None:
        if entry.id in self.by_id:
            self._unindex(entry)
            self.entries.remove(entry)

    def expire(self, cutoff: float) -> None:
        while self.entries and self.entries[0].seen_ts < cutoff:
            self._unindex(self.entries.popleft())

    def related(self, words: frozenset[str]) -> list[_Entry]:
        """Entries sharing at least one distinctive word with ``words``."""
        n = len(self.by_id)
        common = max(8, n // 3)
        ids: set[str] = set()
        for w in words:
            posting = self.postings.get(w)
            if posting and len(posting) <= common:
                ids |= posting
        return [self.by_id[i] for i in ids]


class Deduper:
    def __init__(
        self,
        *,
        near_dup_jaccard: float = 0.6,
        window_s: float = 48 * 3600.0,
        novelty_window_s: float = 24 * 3600.0,
        retention_s: float = 30 * 86400.0,
    ) -> None:
        self.near_dup_jaccard = near_dup_jaccard
        self.window_s = window_s
        self.novelty_window_s = novelty_window_s
        self.retention_s = retention_s
        self._lock = threading.Lock()
        self._ids: dict[str, float] = {}
        self._urls: dict[str, str] = {}
        self._index = LshIndex()
        self._recent: deque[_Entry] = deque()  # in seen order, for expiry from the LSH index
        self._by_entity: dict[str, _EntityNews] = {}
        self._reserved: dict[str, tuple[Candidate, _Entry]] = {}
        self._entities: dict[str, tuple[str, ...]] = {}  # id -> entities, for the LSH window

    def __len__(self) -> int:
        return len(self._ids)

    def load(self, store: StateStore, now: float) -> int:
        """Rebuild the in-memory sets from the state file; returns rows loaded."""
        n = 0
        for row in store.seen_since(now - self.retention_s):
            self._remember(row, now)
            n += 1
        return n

    def _remember(self, row: SeenRow, now: float) -> None:
        self._ids[row.id] = row.seen_ts
        if row.url:
            self._urls[row.url] = row.id
        if now - row.seen_ts <= self.window_s:
            entry = _Entry(row.id, row.words, row.event_ts, row.seen_ts)
            self._index.add(row.id, row.words)
            self._entities[row.id] = row.entities
            self._recent.append(entry)
            for e in row.entities:
                self._by_entity.setdefault(e, _EntityNews()).add(entry)

    def _expire(self, now: float) -> None:
        while self._recent and now - self._recent[0].seen_ts > self.window_s:
            old = self._recent.popleft()
            if old.id not in self._reserved:
                self._index.remove(old.id)
                self._entities.pop(old.id, None)
        for entity in list(self._by_entity):
            news = self._by_entity[entity]
            news.expire(now - self.window_s)
            if not news.entries:
                del self._by_entity[entity]

    def prune_ids(self, now: float) -> None:
        with self._lock:
            cutoff = now - self.retention_s
            self._ids = {k: v for k, v in self._ids.items() if v >= cutoff}
            self._urls = {u: i for u, i in self._urls.items() if i in self._ids}

    def _novelty(self, c: Candidate, words: frozenset[str]) -> tuple[dict[str, float], float]:
        per: dict[str, float] = {}
        for entity in c.entities:
            score = 1.0
            news = self._by_entity.get(entity)
            for other in news.related(words) if news is not None else ():
                if other.id == c.id:
                    continue
                age = abs(c.event_ts - other.event_ts)
                if age >= self.novelty_window_s:
                    continue
                j = jaccard(words, other.words)
                if j >= RELATED_JACCARD:
                    score *= 1.0 - j * (1.0 - age / self.novelty_window_s)
            per[entity] = round(max(0.0, min(1.0, score)), 4)
        if per:
            return per, min(per.values())
        # No entity: novelty against all recent news, through the index.
        score = 1.0
        for key, j in self._index.near(words, RELATED_JACCARD + 0.2):
            if key == c.id:
                continue
            score *= 1.0 - j
        return per, round(max(0.0, min(1.0, score)), 4)

    @staticmethod
    def _same_subject(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
        return not a or not b or not set(a).isdisjoint(b)

    def check(self, c: Candidate, now: float) -> Verdict:
        """Decide, and reserve the item when it is new (then ``commit`` or ``release`` it)."""
        words = shingles(c.title)
        with self._lock:
            self._expire(now)
            novelty, item_novelty = self._novelty(c, words)
            reason: str | None = None
            keys: list[int] | None = None
            of: str | None = None
            sim: float | None = None
            if c.id in self._ids or c.id in self._reserved:
                reason, of = "same_id", c.id
            elif c.url and c.url in self._urls:
                reason, of = "same_url", self._urls[c.url]
            elif c.url and any(r.url == c.url for r, _ in self._reserved.values()):
                reason = "same_url"
                of = next(k for k, (r, _) in self._reserved.items() if r.url == c.url)
            elif len(words) >= 3:
                keys = band_keys(words)
                near = [
                    (key, j)
                    for key, j in self._index.near(words, self.near_dup_jaccard, keys)
                    if self._same_subject(c.entities, self._entities.get(key, ()))
                ]
                if near:
                    reason, (of, sim) = "near_duplicate", near[0]
            if reason is not None:
                return Verdict(False, reason, of, sim, novelty, item_novelty, words)
            entry = _Entry(c.id, words, c.event_ts, now)
            self._reserved[c.id] = (c, entry)
            self._index.add(c.id, words, keys)
            self._entities[c.id] = c.entities
            for e in c.entities:
                self._by_entity.setdefault(e, _EntityNews()).add(entry)
            return Verdict(True, None, None, None, novelty, item_novelty, words)

    def commit(self, ids: list[str]) -> None:
        with self._lock:
            for item_id in ids:
                reserved = self._reserved.pop(item_id, None)
                if reserved is None:
                    continue
                c, entry = reserved
                self._ids[item_id] = entry.seen_ts
                if c.url:
                    self._urls[c.url] = item_id
                self._recent.append(entry)

    def release(self, ids: list[str]) -> None:
        with self._lock:
            for item_id in ids:
                reserved = self._reserved.pop(item_id, None)
                if reserved is None:
                    continue
                c, entry = reserved
                self._index.remove(item_id)
                self._entities.pop(item_id, None)
                for e in c.entities:
                    news = self._by_entity.get(e)
                    if news is not None:
                        news.remove(entry)
