"""The bag-of-words sentiment model a model directory may carry beside its graph (numpy only).

A TF-IDF + logistic regression model over word 1-2-grams and within-word character 3-5-grams,
trained by exporters/lexical.py on the same sentiment rows as the encoder. Its probabilities are
mixed into the graph's: ``log((1 - w) * softmax(graph) + w * lexical)``, before the calibration
(which was fitted on the mixture). Words and character shapes ("downgrade", "-cut", "profit
warning") carry sentiment that a small encoder with a 64-token window sometimes misses.

The transform reproduces scikit-learn's ``TfidfVectorizer`` (lowercase; word tokens
``(?u)\\b\\w\\w+\\b``; ``char_wb`` n-grams of each whitespace-separated word padded with one
space; sublinear tf; idf; L2 norm per vectorizer) and the multinomial logistic regression; the
exporter's tests hold the two to 1e-9. scikit-learn is a training dependency only: the daemon
reads plain arrays from an ``.npz`` written without pickles.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.errors import ModelError
from monitor.score.text import softmax

Array = np.ndarray[Any, Any]
LOG_FLOOR = 1e-6
WORD_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default token_pattern
_WORD = re.compile(WORD_PATTERN)
# Keys of the .npz; vocabularies and labels are "\n"-joined UTF-8 (no term holds a newline:
# word n-grams are \w runs joined by spaces, char_wb n-grams never cross whitespace).
NPZ_KEYS = (
    "labels",
    "word_vocab",
    "word_idf",
    "word_ngrams",
    "char_vocab",
    "char_idf",
    "char_ngrams",
    "coef",
    "intercept",
)


def join_terms(terms: Sequence[str]) -> Array:
    """Terms as one ``uint8`` array ("\\n"-joined UTF-8), the form the .npz stores."""
    for t in terms:
        if "\n" in t:
            raise ValueError(f"term {t!r} holds a newline; it cannot be stored")
    return np.frombuffer("\n".join(terms).encode("utf-8"), dtype=np.uint8)


def split_terms(blob: Array, count: int) -> list[str]:
    if count == 0:
        return []
    terms = bytes(np.asarray(blob, dtype=np.uint8)).decode("utf-8").split("\n")
    if len(terms) != count:
        raise ValueError(f"{len(terms)} terms for {count} weights")
    return terms


def word_ngrams(text: str, low: int, high: int) -> list[str]:
    tokens = _WORD.findall(text.lower())
    out: list[str] = []
    for n in range(low, high + 1):
        out += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return out


def char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    out: list[str] = []
    for word in text.lower().split():
        padded = f" {word} "
        size = len(padded)
        for n in range(low, high + 1):
            out += [padded[i : i + n] for i in range(max(1, size - n + 1))]
            # A padded word no longer than n is one n-gram, counted once (as sklearn does).
            if size <= n:
                break
    return out


_EMPTY = np.zeros(0, dtype=np.int64)
#: Distinct words whose char n-gram columns are kept; cleared when full (headlines reuse words).
WORD_CACHE_SIZE = 50_000


@dataclass(frozen=True)
class LexicalModel:
    """Class probabilities, in ``labels`` order, from a fitted TF-IDF + LR model."""

    labels: tuple[str, ...]
    word_index: dict[str, int]
    word_idf: Array
    word_range: tuple[int, int]
    char_index: dict[str, int]
    char_idf: Array
    char_range: tuple[int, int]
    coef: Array  # [word features + char features, labels]
    intercept: Array  # [labels]
    _char_cols: dict[str, Array] = field(default_factory=dict, compare=False, repr=False)

    @property
    def features(self) -> int:
        return len(self.word_index) + len(self.char_index)

    def _word_columns(self, text: str) -> list[int]:
        index = self.word_index
        return [index[g] for g in word_ngrams(text, *self.word_range) if g in index]

    def _char_columns(self, text: str) -> list[Array]:
        # A word's char_wb n-grams do not depend on its neighbours: look each word up once.
        cache, index = self._char_cols, self.char_index
        parts: list[Array] = []
        for word in text.lower().split():
            cols = cache.get(word)
            if cols is None:
                if len(cache) >= WORD_CACHE_SIZE:
                    cache.clear()
                found = [index[g] for g in char_wb_ngrams(word, *self.char_range) if g in index]
                cols = cache[word] = np.asarray(found, dtype=np.int64)
            parts.append(cols)
        return parts

    def logits(self, texts: Sequence[str]) -> Array:
        n = len(texts)
        out = np.tile(self.intercept, (n, 1))
        words = [self._word_columns(t) for t in texts]
        chars = [self._char_columns(t) for t in texts]
        parts = (
            (
                np.fromiter((c for w in words for c in w), dtype=np.int64),
                [len(w) for w in words],
                self.word_idf,
                0,
            ),
            (
                np.concatenate([p for ps in chars for p in ps] or [_EMPTY]),
                [sum(p.size for p in ps) for ps in chars],
                self.char_idf,
                len(self.word_index),
            ),
        )
        for cols, lengths, idf, offset in parts:
            if cols.size == 0:
                continue
            # One pass over the batch: (row, column) pairs counted together.
            rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
            keys, counts = np.unique(rows * idf.size + cols, return_counts=True)
            r, c = np.divmod(keys, idf.size)
            v = (1.0 + np.log(counts)) * idf[c]
            v /= np.sqrt(np.bincount(r, weights=v * v, minlength=n))[r]
            contrib = self.coef[c + offset] * v[:, None]
            for k in range(out.shape[1]):
                out[:, k] += np.bincount(r, weights=contrib[:, k], minlength=n)
        return out

    def probs(self, texts: Sequence[str]) -> Array:
        return softmax(self.logits(texts))


def mix_logits(sent_logits: Array, lexical_probs: Array, weight: float) -> Array:
    """``log((1 - weight) * softmax(sent_logits) + weight * lexical_probs)``, floored at 1e-6:
    log-probabilities, which the calibration and every reader of the logits take as logits."""
    p = softmax(np.asarray(sent_logits, dtype=np.float64))
    mixed = (1.0 - weight) * p + weight * np.asarray(lexical_probs, dtype=np.float64)
    out: Array = np.log(np.maximum(mixed, LOG_FLOOR)).astype(np.float32)
    return out


def write_lexical(
    path: Path,
    *,
    labels: Sequence[str],
    word_vocab: Sequence[str],
    word_idf: Array,
    word_range: tuple[int, int],
    char_vocab: Sequence[str],
    char_idf: Array,
    char_range: tuple[int, int],
    coef: Array,
    intercept: Array,
) -> Path:
    """Write the arrays ``load_lexical`` reads (``coef`` is [labels, word + char features])."""
    arrays: dict[str, Any] = {
        "word_vocab": join_terms(word_vocab),
        "word_idf": np.asarray(word_idf, dtype=np.float64),
        "word_ngrams": np.asarray(word_range, dtype=np.int64),
        "char_vocab": join_terms(char_vocab),
        "char_idf": np.asarray(char_idf, dtype=np.float64),
        "char_ngrams": np.asarray(char_range, dtype=np.int64),
        "labels": join_terms(labels),
        "coef": np.asarray(coef, dtype=np.float64),
        "intercept": np.asarray(intercept, dtype=np.float64),
    }
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def _ngram_range(arr: Array, key: str) -> tuple[int, int]:
    low, high = (int(v) for v in np.asarray(arr).reshape(-1))
    if not 1 <= low <= high:
        raise ValueError(f"{key} must be [low, high] with 1 <= low <= high, got [{low}, {high}]")
    return low, high


def load_lexical(path: Path, labels: Sequence[str]) -> LexicalModel:
    """Read ``path`` (an .npz without pickles) and order its classes as ``labels``; any problem
    is a :class:`ModelError` naming the file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise ValueError(f"missing arrays {missing}")
            z = {k: npz[k] for k in NPZ_KEYS}
        own = split_terms(z["labels"], len(z["intercept"]))
        word_vocab = split_terms(z["word_vocab"], len(z["word_idf"]))
        char_vocab = split_terms(z["char_vocab"], len(z["char_idf"]))
        coef = np.asarray(z["coef"], dtype=np.float64)
        if coef.shape != (len(own), len(word_vocab) + len(char_vocab)):
            raise ValueError(
                f"coef has shape {list(coef.shape)}, expected "
                f"[{len(own)}, {len(word_vocab) + len(char_vocab)}]"
            )
        if sorted(own) != sorted(labels):
            raise ValueError(f"labels {own} differ from the manifest's {list(labels)}")
        order = [own.index(label) for label in labels]
        return LexicalModel(
            labels=tuple(labels),
            word_index={t: i for i, t in enumerate(word_vocab)},
            word_idf=np.asarray(z["word_idf"], dtype=np.float64),
            word_range=_ngram_range(z["word_ngrams"], "word_ngrams"),
            char_index={t: i for i, t in enumerate(char_vocab)},
            char_idf=np.asarray(z["char_idf"], dtype=np.float64),
            char_range=_ngram_range(z["char_ngrams"], "char_ngrams"),
            coef=np.ascontiguousarray(coef[order].T),
            intercept=np.asarray(z["intercept"], dtype=np.float64)[order],
        )
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a lexical sentiment model: {exc}") from exc
