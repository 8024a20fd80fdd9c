"""The versioned weak-label lexicon for risk tags (``exporters/data/risk_lexicon_v*.yaml``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from monitor.errors import ConfigError
from monitor.score.manifest import RISK_TAGS

DEFAULT_LEXICON = Path(__file__).parent / "data" / "risk_lexicon_v1.yaml"


@dataclass(frozen=True)
class TagRule:
    tag: str
    any: tuple[re.Pattern[str], ...]
    unless: tuple[re.Pattern[str], ...]

    def matches(self, text: str) -> bool:
        return any(p.search(text) for p in self.any) and not any(
            p.search(text) for p in self.unless
        )


@dataclass(frozen=True)
class RiskLexicon:
    version: int
    rules: tuple[TagRule, ...]
    source: Path

    def tags(self, text: str) -> list[str]:
        return [r.tag for r in self.rules if r.matches(text)]

    def vector(self, text: str) -> list[float]:
        """Multi-hot over ``RISK_TAGS`` order."""
        hit = set(self.tags(text))
        return [1.0 if tag in hit else 0.0 for tag in RISK_TAGS]


def load_lexicon(path: Path = DEFAULT_LEXICON) -> RiskLexicon:
    """Parse and compile a lexicon file; every bad entry is reported with its key path."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("tags"), dict):
        raise ConfigError(["<root>: expected a mapping with 'version' and 'tags'"], str(path))
    version = doc.get("version")
    if not isinstance(version, int):
        problems.append("version: must be an integer")
    unknown = set(doc["tags"]) - set(RISK_TAGS)
    problems += [f"tags.{t}: not a risk tag (known: {', '.join(RISK_TAGS)})" for t in unknown]
    rules: list[TagRule] = []
    for tag in RISK_TAGS:
        entry = doc["tags"].get(tag)
        if entry is None:
            problems.append(f"tags.{tag}: missing")
            continue
        compiled: dict[str, list[re.Pattern[str]]] = {"any": [], "unless": []}
        for key in compiled:
            for i, pattern in enumerate(entry.get(key) or []):
                try:
                    compiled[key].append(re.compile(pattern, re.IGNORECASE))
                except re.error as exc:
                    problems.append(f"tags.{tag}.{key}[{i}]: bad regex: {exc}")
        rules.append(TagRule(tag, tuple(compiled["any"]), tuple(compiled["unless"])))
    if problems:
        raise ConfigError(problems, str(path))
    return RiskLexicon(version=int(version or 0), rules=tuple(rules), source=path)
