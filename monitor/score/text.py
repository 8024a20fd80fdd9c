"""What text the model sees for an item, and which items it must not see (with a reason).

Nothing here raises on odd input: any string yields either text to score (possibly cut, with
flags) or a skip reason. Skipped items still reach the scored topic, flagged ``unscored:<reason>``,
so downstream sees every item and can tell a neutral score from no score.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monitor.records import NewsItem, RiskTag, Sentiment
from monitor.score.config import ScoreConfig
from monitor.score.manifest import Manifest

UNSCORED_PREFIX = "unscored:"
SKIP_REASONS = ("empty_text", "binary", "lang_unsupported")
_JUNK_CATEGORIES = {"Cc", "Cs", "Co", "Cn"}


@dataclass(frozen=True)
class Prepared:
    text: str
    flags: tuple[str, ...] = ()
    skip: str | None = None


def _junk_ratio(text: str) -> float:
    sample = text[:2000]
    if not sample:
        return 0.0
    junk = sum(
        1
        for ch in sample
        if ch == "\ufffd" or (ch not in "\n\r\t" and unicodedata.category(ch) in _JUNK_CATEGORIES)
    )
    return junk / len(sample)


def prepare(item: NewsItem, config: ScoreConfig) -> Prepared:
    """Headline, then summary, cut to ``max_chars``; or why it cannot be scored."""
    title = item.title.strip()
    summary = item.summary.strip()
    text = f"{title}. {summary}" if title and summary else title or summary
    flags: list[str] = []
    if len(text) > config.max_chars:
        text = text[: config.max_chars]
        flags.append("truncated")
    if _junk_ratio(text) > config.max_junk_ratio:
        return Prepared("", tuple(flags), "binary")
    letters = sum(1 for ch in text[:2000] if ch.isalnum())
    if len(text) < config.min_chars or letters == 0:
        return Prepared("", tuple(flags), "empty_text")
    lang = (item.lang or "").split("-")[0].lower()
    if lang and lang not in {x.lower() for x in config.languages}:
        if config.other_languages == "skip":
            return Prepared("", tuple(flags), "lang_unsupported")
        flags.append("lang_unsupported")
    return Prepared(text, tuple(flags))


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax over the last axis."""
    z = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / np.sum(e, axis=-1, keepdims=True)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Risk-tag probabilities, in float64 (exporters' threshold fitting uses the same one)."""
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))
    return out


def calibrated_logits(
    sent_logits: np.ndarray, temperature: float, bias: Sequence[float]
) -> np.ndarray:
    """``logits / temperature + bias``: where calibrated sentiment decides (argmax)."""
    out: np.ndarray = sent_logits.astype(np.float64) / temperature + np.asarray(
        bias, dtype=np.float64
    )
    return out


def sentiment_probs(sent_logits: np.ndarray, manifest: Manifest) -> np.ndarray:
    """Calibrated sentiment probabilities: softmax(logits / temperature + bias).

    The one place the calibration is applied: the daemon, replay, eval and distillation all
    call it, so the label a desk sees is the label the reported figures were measured on.
    """
    return calibrated_probs(sent_logits, manifest.temperature, manifest.bias())


def calibrated_probs(
    sent_logits: np.ndarray, temperature: float, bias: Sequence[float]
) -> np.ndarray:
    """``softmax(logits / temperature + bias)`` for a calibration not (yet) in a manifest."""
    return softmax(calibrated_logits(sent_logits, temperature, bias))


def decode_outputs(
    sent_logits: np.ndarray, risk_logits: np.ndarray, manifest: Manifest
) -> list[tuple[Sentiment, tuple[RiskTag, ...]]]:
    """Per row: calibrated sentiment (see sentiment_probs) and the risk tags at/above threshold."""
    probs = sentiment_probs(sent_logits, manifest)
    risk_p = sigmoid(risk_logits)
    labels = manifest.labels.sentiment
    tags = manifest.labels.risk
    thresholds = np.array([manifest.threshold(t) for t in tags])
    out: list[tuple[Sentiment, tuple[RiskTag, ...]]] = []
    for row, rrow in zip(probs, risk_p, strict=True):
        p = {label: round(float(v), 6) for label, v in zip(labels, row, strict=True)}
        label = labels[int(np.argmax(row))]
        polarity = max(-1.0, min(1.0, p["positive"] - p["negative"]))
        hit = np.nonzero(rrow >= thresholds)[0]
        risk = tuple(
            RiskTag(tag=tags[i], p=round(float(rrow[i]), 6))
            for i in sorted(hit, key=lambda i: -rrow[i])
        )
        out.append((Sentiment(label=label, probs=p, polarity=polarity), risk))  # type: ignore[arg-type]
    return out


def unscored_sentiment() -> Sentiment:
    """What a skipped item carries: no preference, polarity 0 (flagged unscored downstream)."""
    third = round(1.0 / 3.0, 6)
    assert math.isclose(third * 3, 1.0, abs_tol=1e-5)
    return Sentiment(
        label="neutral",
        probs={"negative": third, "neutral": third, "positive": third},
        polarity=0.0,
    )
