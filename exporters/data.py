"""Data sets for training and evaluation, each mapped explicitly to our label order.

* Financial PhraseBank (``financial_phrasebank/``): the fixed split in ``phrasebank_split.csv``;
  training uses ``split == train`` rows only, selection ``validation``, reported figures ``test``.
* Twitter financial news sentiment: ``sent_train.csv`` is split here into train and a fixed-seed
  validation slice; ``sent_valid.csv`` is the held-out test file (reported as ``twitter_valid``).
  Label map: 0 bearish -> negative, 1 bullish -> positive, 2 neutral -> neutral.
* Risk headlines (``exporters/data/risk_headlines.csv``): hand-written and hand-labelled, with a
  committed ``split`` column (see exporters/README.md for the format).
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.datasets import locate_datasets
from monitor.errors import ConfigError
from monitor.score.manifest import RISK_TAGS, SENTIMENT_LABELS

DEFAULT_RISK_CSV = Path(__file__).parent / "data" / "risk_headlines.csv"
TWITTER_VALID_SEED = 20261201
TWITTER_VALID_FRACTION = 0.1
TWITTER_LABELS = {"0": "negative", "1": "positive", "2": "neutral"}
SPLITS = ("train", "validation", "test")
_URL = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class SentimentRow:
    text: str
    label: int  # index into SENTIMENT_LABELS
    agreement: int = 100  # PhraseBank agreement level (100/75/66/50); 100 elsewhere
    source: str = ""


@dataclass(frozen=True)
class RiskRow:
    text: str
    tags: tuple[float, ...]  # multi-hot in RISK_TAGS order
    sentiment: int | None = None  # optional hand label, index into SENTIMENT_LABELS
    id: str = ""


def resolve_datasets(path: str | Path | None) -> Path:
    """The datasets folder: explicit path, else found as ``monitor.datasets`` says."""
    return locate_datasets(path)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def phrasebank_files(root: Path) -> list[Path]:
    d = root / "financial_phrasebank"
    return [d / "sentences_50agree.csv", d / "phrasebank_split.csv"]


def load_phrasebank(root: Path, split: str, *, min_agreement: int = 50) -> list[SentimentRow]:
    """Rows of the 50Agree file in ``split``, keeping only ``agreement >= min_agreement``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    sentences_path, split_path = phrasebank_files(root)
    sentences = _read_csv(sentences_path)
    meta = _read_csv(split_path)
    if len(sentences) != len(meta):
        raise ConfigError(
            [f"{split_path.name}: {len(meta)} rows but {sentences_path.name} has {len(sentences)}"],
            str(root),
        )
    rows = []
    for m in meta:
        if m["split"] != split or int(m["agreement_level"]) < min_agreement:
            continue
        s = sentences[int(m["sentence_id"])]
        rows.append(
            SentimentRow(
                text=s["sentence"],
                label=SENTIMENT_LABELS.index(s["label"]),
                agreement=int(m["agreement_level"]),
                source="phrasebank",
            )
        )
    return rows


def clean_tweet(text: str) -> str:
    """Drop t.co links (they carry no sentiment and cost tokens); collapse whitespace."""
    return " ".join(_URL.sub(" ", text).split())


def twitter_files(root: Path) -> list[Path]:
    d = root / "twitter_financial_news_sentiment"
    return [d / "sent_train.csv", d / "sent_valid.csv"]


def load_twitter(root: Path, part: str) -> list[SentimentRow]:
    """``part``: train / validation (fixed-seed slice of sent_train.csv) / test (sent_valid.csv)."""
    train_path, valid_path = twitter_files(root)
    if part == "test":
        raw = _read_csv(valid_path)
    elif part in ("train", "validation"):
        raw = _read_csv(train_path)
        order = list(range(len(raw)))
        random.Random(TWITTER_VALID_SEED).shuffle(order)
        cut = round(TWITTER_VALID_FRACTION * len(raw))
        chosen = sorted(order[:cut]) if part == "validation" else sorted(order[cut:])
        raw = [raw[i] for i in chosen]
    else:
        raise ValueError(f"part must be train, validation or test, not {part!r}")
    return [
        SentimentRow(
            text=clean_tweet(r["text"]),
            label=SENTIMENT_LABELS.index(TWITTER_LABELS[r["label"].strip()]),
            source="twitter",
        )
        for r in raw
    ]


def parse_tags(value: str, *, where: str) -> tuple[float, ...]:
    names = [t.strip() for t in value.split(";") if t.strip()]
    unknown = [t for t in names if t not in RISK_TAGS]
    if unknown:
        raise ConfigError([f"{where}: unknown risk tags {unknown}"], "risk data")
    return tuple(1.0 if tag in names else 0.0 for tag in RISK_TAGS)


def load_risk(path: Path, split: str) -> list[RiskRow]:
    """Rows of a risk CSV (header ``id,split,text,tags[,sentiment]``) in ``split``."""
    rows = []
    for i, r in enumerate(_read_csv(path), start=2):
        where = f"{path.name}:{i}"
        if r.get("split") not in SPLITS:
            raise ConfigError([f"{where}: split must be one of {SPLITS}"], "risk data")
        if r["split"] != split:
            continue
        sent = (r.get("sentiment") or "").strip()
        if sent and sent not in SENTIMENT_LABELS:
            raise ConfigError(
                [f"{where}: sentiment {sent!r} not in {SENTIMENT_LABELS}"], "risk data"
            )
        rows.append(
            RiskRow(
                text=r["text"],
                tags=parse_tags(r.get("tags") or "", where=where),
                sentiment=SENTIMENT_LABELS.index(sent) if sent else None,
                id=r.get("id", ""),
            )
        )
    return rows


def extra_sentiment_csv(path: Path) -> list[SentimentRow]:
    """Your own sentiment data: header ``text,label`` with label negative/neutral/positive."""
    rows = []
    for i, r in enumerate(_read_csv(path), start=2):
        label = r.get("label", "").strip()
        if label not in SENTIMENT_LABELS:
            raise ConfigError([f"{path.name}:{i}: label {label!r} not in {SENTIMENT_LABELS}"])
        rows.append(SentimentRow(text=r["text"], label=SENTIMENT_LABELS.index(label), source="own"))
    return rows


def cap_rows(rows: Sequence[Any], limit: int | None, seed: int) -> list[Any]:
    """At most ``limit`` of ``rows``, a seeded sample (all of them when ``limit`` is None)."""
    rows = list(rows)
    if limit is None or len(rows) <= limit:
        return rows
    return random.Random(seed).sample(rows, limit)


def label_counts(labels: Iterable[int], names: Sequence[str] = SENTIMENT_LABELS) -> dict[str, int]:
    counts = dict.fromkeys(names, 0)
    for label in labels:
        counts[names[label]] += 1
    return counts
