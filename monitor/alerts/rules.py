"""Rules compiled for speed, and an index so each record meets only the rules that could match it.

A rule's filter is the AND of its ``match`` fields. The index files each rule under the most
selective thing it filters on: entity ids / watchlists, then sources, then title keywords (one
Aho-Corasick automaton for all), then risk tags, then the sentiment label. A rule that filters
on none of these is checked for every record. The naive evaluator (every rule on every record)
is kept for the benchmark's baseline and for the test that checks the index changes nothing.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.alerts.config import RuleConfig
from monitor.records import ScoredItem


def novelty_of(item: ScoredItem) -> float | None:
    if item.novelty is not None:
        return item.novelty
    nov = [e.novelty for e in item.entities if e.novelty is not None]
    return max(nov) if nov else None


@dataclass
class CompiledRule:
    index: int
    cfg: RuleConfig
    entities: frozenset[str] | None
    sources: frozenset[str] | None
    labels: frozenset[str] | None
    risk: tuple[tuple[str, float], ...]
    keywords: tuple[str, ...]
    regex: re.Pattern[str] | None
    indexed_by: str = ""  # the filter the index already checked (entity, source, keyword)

    @property
    def name(self) -> str:
        return self.cfg.name

    def matches(self, item: ScoredItem, indexed: bool = False) -> bool:
        """All filters hold. ``indexed``: the index found the rule, skip what it checked."""
        m = self.cfg.match
        skip = self.indexed_by if indexed else ""
        s = item.sentiment
        if self.labels is not None and s.label not in self.labels:
            return False
        if m.min_probability is not None and s.probs.get(s.label, 0.0) < m.min_probability:
            return False
        if m.polarity is not None and not m.polarity.holds(s.polarity):
            return False
        if m.min_novelty is not None:
            # Unknown novelty passes: a missing score must not hide an alert.
            nov = novelty_of(item)
            if nov is not None and nov < m.min_novelty:
                return False
        if self.sources is not None and item.source not in self.sources:
            return False
        if (
            self.entities is not None
            and skip != "entity"
            and not any(e.id in self.entities for e in item.entities)
        ):
            return False
        if self.risk and not any(
            r.tag == tag and r.p >= p for tag, p in self.risk for r in item.risk
        ):
            return False
        if self.keywords and skip != "keyword":
            title = item.title.lower()
            if not any(k in title for k in self.keywords):
                return False
        return not (self.regex is not None and self.regex.search(item.title) is None)

    def group_keys(self, item: ScoredItem) -> list[str]:
        by = self.cfg.group_by
        if by == "rule":
            return ["*"]
        if by == "source":
            return [item.source]
        if self.entities is not None:
            return sorted({e.id for e in item.entities if e.id in self.entities})
        return [item.primary_entity or item.id]

    def explain_filters(self, item: ScoredItem) -> list[dict[str, Any]]:
        """The filters this rule applies, each with the item's value that met it."""
        m = self.cfg.match
        s = item.sentiment
        out: list[dict[str, Any]] = []
        if self.labels is not None:
            out.append({"filter": "sentiment", "want": sorted(self.labels), "value": s.label})
        if m.min_probability is not None:
            out.append(
                {
                    "filter": "min_probability",
                    "want": m.min_probability,
                    "value": round(s.probs.get(s.label, 0.0), 4),
                }
            )
        if m.polarity is not None:
            out.append({"filter": "polarity", "want": m.polarity.model_dump(), "value": s.polarity})
        if m.min_novelty is not None:
            out.append({"filter": "min_novelty", "want": m.min_novelty, "value": novelty_of(item)})
        if self.sources is not None:
            out.append({"filter": "sources", "value": item.source})
        if self.entities is not None:
            hit = sorted(e.id for e in item.entities if e.id in self.entities)
            out.append({"filter": "entities", "value": hit})
        if self.risk:
            hits = [
                {"tag": r.tag, "p": round(r.p, 4), "min_p": p}
                for tag, p in self.risk
                for r in item.risk
                if r.tag == tag and r.p >= p
            ]
            out.append({"filter": "risk", "value": hits})
        if self.keywords:
            title = item.title.lower()
            out.append({"filter": "keywords", "value": [k for k in self.keywords if k in title]})
        if self.regex is not None:
            found = self.regex.search(item.title)
            out.append(
                {
                    "filter": "title_regex",
                    "want": self.regex.pattern,
                    "value": found.group(0) if found else None,
                }
            )
        return out


def compile_rules(
    rules: Sequence[RuleConfig], watchlists: dict[str, list[str]]
) -> list[CompiledRule]:
    out = []
    for i, r in enumerate(rules):
        m = r.match
        ents: set[str] = set(m.entities)
        for w in m.watchlists:
            ents |= set(watchlists.get(w, ()))
        out.append(
            CompiledRule(
                index=i,
                cfg=r,
                entities=frozenset(ents) if (m.entities or m.watchlists) else None,
                sources=frozenset(m.sources) if m.sources else None,
                labels=frozenset(m.sentiment) if m.sentiment else None,
                risk=tuple((x.tag, x.min_p) for x in m.risk),
                keywords=tuple(k.lower() for k in m.keywords),
                regex=re.compile(m.title_regex) if m.title_regex else None,
            )
        )
    return out


@dataclass
class RuleIndex:
    """Candidate rules for a record, by what the rules filter on."""

    rules: list[CompiledRule]
    by_entity: dict[str, list[int]] = field(default_factory=dict)
    by_source: dict[str, list[int]] = field(default_factory=dict)
    by_tag: dict[str, tuple[list[float], list[int]]] = field(default_factory=dict)
    by_label: dict[str, list[int]] = field(default_factory=dict)
    always: list[int] = field(default_factory=list)
    keywords: Any = None  # an Aho-Corasick automaton: keyword -> rule indices

    @classmethod
    def build(cls, rules: list[CompiledRule]) -> RuleIndex:
        idx = cls(rules)
        tags: dict[str, list[tuple[float, int]]] = {}
        words: dict[str, list[int]] = {}
        for r in rules:
            if r.entities is not None:
                r.indexed_by = "entity"
                for e in r.entities:
                    idx.by_entity.setdefault(e, []).append(r.index)
            elif r.sources is not None:
                for s in r.sources:
                    idx.by_source.setdefault(s, []).append(r.index)
            elif r.keywords:
                r.indexed_by = "keyword"
                for k in r.keywords:
                    words.setdefault(k, []).append(r.index)
            elif r.risk:
                for tag, p in r.risk:
                    tags.setdefault(tag, []).append((p, r.index))
            elif r.labels is not None:
                for label in r.labels:
                    idx.by_label.setdefault(label, []).append(r.index)
            else:
                idx.always.append(r.index)
        for tag, pairs in tags.items():
            pairs.sort()
            idx.by_tag[tag] = ([p for p, _ in pairs], [i for _, i in pairs])
        if words:
            import ahocorasick

            auto = ahocorasick.Automaton()
            for k, ids in words.items():
                auto.add_word(k, tuple(ids))
            auto.make_automaton()
            idx.keywords = auto
        return idx

    def candidates(self, item: ScoredItem) -> list[CompiledRule]:
        hit: set[int] = set(self.always)
        for e in item.entities:
            got = self.by_entity.get(e.id)
            if got:
                hit.update(got)
        got = self.by_source.get(item.source)
        if got:
            hit.update(got)
        for r in item.risk:
            entry = self.by_tag.get(r.tag)
            if entry:
                # Rules filed under this tag with min_p <= p are candidates.
                cut = bisect.bisect_right(entry[0], r.p)
                hit.update(entry[1][:cut])
        got = self.by_label.get(item.sentiment.label)
        if got:
            hit.update(got)
        if self.keywords is not None:
            # Substring hits, the same test CompiledRule.matches applies to keywords.
            for _end, ids in self.keywords.iter(item.title.lower()):
                hit.update(ids)
        rules = self.rules
        return [rules[i] for i in sorted(hit) if rules[i].matches(item, True)]


def naive_matches(rules: Iterable[CompiledRule], item: ScoredItem) -> list[CompiledRule]:
    """Every rule on every record: the benchmark's baseline."""
    return [r for r in rules if r.matches(item)]
