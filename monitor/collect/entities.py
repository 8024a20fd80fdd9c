"""The entity watchlist and a fast multi-pattern matcher over it (Aho-Corasick).

Watchlist file (YAML)::

    entities:
      - id: BLFN                 # stable id (usually the ticker)
        name: Bluefin Payments   # display name, also matched
        ticker: BLFN             # matched case-sensitively, and as the cashtag $BLFN
        aliases: [Bluefin]       # more names, matched case-insensitively
        cashtags: [$BLFN.US]     # extra cashtags

Names and aliases match regardless of case; tickers and any pattern of five characters or less
that is written in capitals match case-sensitively ("ACME" is the company, "acme" is a word).
Every match must sit on word boundaries. Where matches overlap, the longest wins.

Relevance: a match in the title scores 1.0; in the summary only, 0.6 (0.7 for two or more); an
entity named only by the feed's ``entity_hints`` scores 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ahocorasick
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from monitor.errors import ConfigError
from monitor.records import EntityMatch


class WatchEntity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    ticker: str | None = None
    aliases: tuple[str, ...] = ()
    cashtags: tuple[str, ...] = ()


class Watchlist(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    entities: tuple[WatchEntity, ...] = ()


def load_watchlist(path: Path) -> Watchlist:
    try:
        doc: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"], str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"], str(path)) from exc
    if isinstance(doc, list):
        doc = {"entities": doc}
    try:
        return Watchlist.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(
            [f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()],
            str(path),
        ) from exc


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    entity: str


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _lower_same_length(text: str) -> str:
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


class EntityMatcher:
    """Finds watchlist entities in text. Build once per watchlist; ``match`` is thread-safe."""

    def __init__(self, watchlist: Watchlist) -> None:
        self._entities = {e.id: e for e in watchlist.entities}
        self._exact: Any = ahocorasick.Automaton()
        self._folded: Any = ahocorasick.Automaton()
        n_exact = n_folded = 0
        for e in watchlist.entities:
            exact: set[str] = set()
            folded: set[str] = set()
            for pattern in (e.name, *e.aliases):
                p = pattern.strip()
                if not p:
                    continue
                if len(p) <= 5 and p.isupper():
                    exact.add(p)
                else:
                    folded.add(p.lower())
            if e.ticker:
                exact.add(e.ticker)
                exact.add(f"${e.ticker}")
            for tag in e.cashtags:
                exact.add(tag if tag.startswith("$") else f"${tag}")
            for p in exact:
                self._add(self._exact, p, e.id)
                n_exact += 1
            for p in folded:
                self._add(self._folded, p, e.id)
                n_folded += 1
        self._has_exact = n_exact > 0
        self._has_folded = n_folded > 0
        if self._has_exact:
            self._exact.make_automaton()
        if self._has_folded:
            self._folded.make_automaton()

    @staticmethod
    def _add(automaton: Any, pattern: str, entity: str) -> None:
        existing = automaton.get(pattern, None)
        ids = (*existing[1], entity) if existing else (entity,)
        automaton.add_word(pattern, (len(pattern), ids))

    def __len__(self) -> int:
        return len(self._entities)

    def name(self, entity_id: str) -> str | None:
        e = self._entities.get(entity_id)
        return e.name if e else None

    def find(self, text: str) -> list[tuple[str, str]]:
        """(entity id, matched text) for each non-overlapping match, in text order."""
        if not text or not self._entities:
            return []
        hits: list[_Hit] = []
        for automaton, haystack, enabled in (
            (self._exact, text, self._has_exact),
            (self._folded, _lower_same_length(text), self._has_folded),
        ):
            if not enabled:
                continue
            for end_idx, (length, ids) in automaton.iter(haystack):
                start = end_idx - length + 1
                end = end_idx + 1
                first = haystack[start]
                # A cashtag starts with '$', which is not a word character itself.
                if start > 0 and _is_word_char(text[start - 1]) and first != "$":
                    continue
                if start > 0 and first == "$" and _is_word_char(text[start - 1]):
                    continue
                if end < len(text) and _is_word_char(text[end]):
                    continue
                for entity in ids:
                    hits.append(_Hit(start, end, entity))
        hits.sort(key=lambda h: (-(h.end - h.start), h.start))
        taken: list[_Hit] = []
        for h in hits:
            if all(h.end <= t.start or h.start >= t.end for t in taken):
                taken.append(h)
        taken.sort(key=lambda h: h.start)
        return [(h.entity, text[h.start : h.end]) for h in taken]

    def match(
        self, title: str, summary: str, hints: tuple[str, ...] = ()
    ) -> tuple[EntityMatch, ...]:
        """An item's entities with relevance (title > summary > feed hint), most relevant first."""
        found: dict[str, tuple[float, str]] = {}
        for entity, matched in self.find(title):
            if entity not in found:
                found[entity] = (1.0, matched)
        summary_hits: dict[str, list[str]] = {}
        for entity, matched in self.find(summary):
            summary_hits.setdefault(entity, []).append(matched)
        for entity, texts in summary_hits.items():
            if entity not in found:
                found[entity] = (0.7 if len(texts) > 1 else 0.6, texts[0])
        for entity in hints:
            if entity not in found and entity in self._entities:
                found[entity] = (0.5, "(feed hint)")
        out = [
            EntityMatch(id=e, name=self._entities[e].name, matched=m, relevance=r)
            for e, (r, m) in found.items()
        ]
        out.sort(key=lambda m: -m.relevance)
        return tuple(out)
