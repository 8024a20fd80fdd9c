"""Replay test kit: headlines the tiny model labels negative (or not), archives with a cluster."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from monitor.records import EntityMatch, NewsItem
from monitor.score.config import ScoreConfig
from monitor.score.model import load_model
from monitor.score.text import decode_outputs

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CLUSTER_ENTITY = "ACME"
CLUSTER_SIZE = 8
CLUSTER_START = T0 + timedelta(hours=30)
CLUSTER_STEP = timedelta(minutes=4)
RULE_COUNT = 5

_SUBJECTS = ["Acme", "Acme Corp", "Acme shares", "Acme bonds", "Acme unit"]
_EVENTS = [
    "plunge after profit warning",
    "hit by fraud probe",
    "default fears grow",
    "cut to junk by agency",
    "ceo resigns amid lawsuit",
    "recall halts sales",
    "outage hits market",
    "rise on record profit",
    "beat earnings estimates",
    "announce dividend",
    "steady ahead of results",
    "win new deal",
]


def probe_labels(model_dir: Path, titles: list[str]) -> dict[str, tuple[str, float]]:
    """The tiny model's label and p(negative) for each title, scored one at a time."""
    model = load_model(model_dir, ScoreConfig(intra_op_threads=1))
    out: dict[str, tuple[str, float]] = {}
    for t in titles:
        ids = np.asarray([model.tokenizer.encode(t).ids], dtype=np.int64)
        sent, risk = model.infer(ids, np.ones_like(ids))
        sent = model.sentiment_logits(sent, model.lexical_probs([t]))
        sentiment, _ = decode_outputs(sent, risk, model.manifest)[0]
        out[t] = (sentiment.label, sentiment.probs["negative"])
    return out


@dataclass(frozen=True)
class Headlines:
    negative: str
    calm: list[str]


def pick_headlines(model_dir: Path) -> Headlines:
    """A title the model calls negative with the widest margin, and titles it does not."""
    titles = [f"{s} {e}" for s in _SUBJECTS for e in _EVENTS]
    labels = probe_labels(model_dir, titles)
    neg = sorted((p for t, (lab, p) in labels.items() if lab == "negative"), reverse=True)
    negative = [t for t, (lab, p) in labels.items() if lab == "negative" and p == neg[0]]
    assert negative, "the tiny model labels none of the probe titles negative"
    calm = [t for t, (lab, p) in labels.items() if lab != "negative" and p < 0.3]
    if len(calm) < 3:
        calm = [t for t, (lab, _) in labels.items() if lab != "negative"]
    assert len(calm) >= 3, "the tiny model labels too few probe titles non-negative"
    return Headlines(negative[0], calm[:6])


def item(i: int, title: str, when: datetime, entity: str | None, source: str = "wire") -> NewsItem:
    return NewsItem(
        id=f"item-{i:05d}" if i >= 0 else f"cluster-{-i:03d}",
        source=source,
        url=f"https://news.example/{i}",
        title=title,
        published_at=when,
        fetched_at=when + timedelta(seconds=30),
        entities=(EntityMatch(id=entity, name=entity, matched=entity),) if entity else (),
    )


def archive_items(h: Headlines, n_noise: int = 300) -> tuple[list[NewsItem], list[NewsItem]]:
    """Noise over 3 days (calm titles, several entities incl. ACME) plus one negative ACME cluster.

    Returns (all items in a shuffled-but-deterministic file order, the cluster in event order).
    """
    noise = [
        item(
            i,
            h.calm[i % len(h.calm)],
            T0 + timedelta(minutes=13 * i + (i % 7)),
            [CLUSTER_ENTITY, "GLOBEX", "INITECH", None][i % 4],
        )
        for i in range(n_noise)
    ]
    cluster = [
        item(-1 - k, h.negative, CLUSTER_START + k * CLUSTER_STEP, CLUSTER_ENTITY)
        for k in range(CLUSTER_SIZE)
    ]
    everything = noise + cluster
    # Files are rarely in event order: even positions forwards, odd ones backwards.
    return everything[::2] + everything[1::2][::-1], cluster


def shifted(items: list[NewsItem], delta: timedelta) -> list[NewsItem]:
    """The same items, published and fetched ``delta`` later."""
    return [
        i.model_copy(
            update={"published_at": i.published_at + delta, "fetched_at": i.fetched_at + delta}
        )
        for i in items
    ]


def fetched_late(h: Headlines, published: list[datetime], fetched: datetime) -> list[NewsItem]:
    """Items a collector first saw at ``fetched`` (a feed read late, a first poll's backfill)."""
    return [
        item(90_000 + k, h.calm[k % len(h.calm)], when, "GLOBEX").model_copy(
            update={"fetched_at": fetched}
        )
        for k, when in enumerate(published)
    ]


def write_jsonl(path: Path, items: list[NewsItem], extra_lines: tuple[str, ...] = ()) -> Path:
    lines = [i.to_json().decode() for i in items]
    for k, bad in enumerate(extra_lines):
        lines.insert(min(len(lines), 7 * (k + 1)), bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


RULES_YAML = f"""
rules:
  - name: acme_negative_burst
    description: negative burst on the cluster entity
    match:
      sentiment: negative
      entities: [{CLUSTER_ENTITY}]
    window: {{size: 1h, allowed_lateness: 10m}}
    condition:
      count: {{min: {RULE_COUNT}}}
    severity: critical
"""


def write_config(path: Path, data_dir: Path, model_dir: Path, **extra: object) -> Path:
    doc = {
        "data_dir": str(data_dir),
        "bus": {"partitions": 3},
        "score": {"model_dir": str(model_dir), "intra_op_threads": 1},
        **extra,
    }
    path.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    return path
