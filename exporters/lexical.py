"""Fit the bag-of-words sentiment model a model directory carries (monitor/score/lexical.py).

It is the TF-IDF + logistic regression baseline of ``riskwire eval`` (exporters/baseline.py),
fitted on the sentiment training rows of the recipe (PhraseBank train, the Twitter train file
minus its validation slice, ``--sentiment-csv`` rows), and written as plain arrays that the
daemon reads without scikit-learn.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sklearn.feature_extraction.text import TfidfVectorizer

from exporters import data as ds
from exporters.baseline import SentimentBaseline
from exporters.recipe import TrainConfig
from monitor.score.lexical import WORD_PATTERN, write_lexical
from monitor.score.manifest import SENTIMENT_LABELS

LEXICAL_FILE = "lexical.npz"


def lexical_rows(cfg: TrainConfig, root: Path) -> list[ds.SentimentRow]:
    """The sentiment rows the encoder trains on, each once (capped as training caps them)."""
    rows = ds.cap_rows(ds.load_phrasebank(root, "train"), cfg.limit_per_source, cfg.seed)
    if cfg.use_twitter:
        rows += ds.cap_rows(ds.load_twitter(root, "train"), cfg.limit_per_source, cfg.seed + 1)
    if cfg.extra_sentiment_csv is not None:
        rows += ds.extra_sentiment_csv(cfg.extra_sentiment_csv)
    return rows


def _checked(vec: TfidfVectorizer, analyzer: str, key: str) -> TfidfVectorizer:
    # The daemon's transform implements exactly these settings; anything else would score
    # differently there than here, so it is refused rather than written.
    want = {
        "analyzer": analyzer,
        "lowercase": True,
        "sublinear_tf": True,
        "use_idf": True,
        "norm": "l2",
        "strip_accents": None,
        "stop_words": None,
        "preprocessor": None,
        "tokenizer": None,
    }
    if analyzer == "word":
        want["token_pattern"] = WORD_PATTERN
    got = {k: getattr(vec, k) for k in want}
    if got != want:
        bad = {k: v for k, v in got.items() if v != want[k]}
        raise ValueError(f"{key} vectorizer settings {bad} differ from the daemon's {want}")
    return vec


def _vocabulary(vec: TfidfVectorizer) -> list[str]:
    return sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)


def save_lexical(
    model: SentimentBaseline, path: Path, labels: Sequence[str] = SENTIMENT_LABELS
) -> dict[str, int]:
    """Write the fitted ``model`` to ``path`` (.npz, no pickles); return its sizes."""
    parts = dict(model.pipe.named_steps["tfidf"].transformer_list)
    word = _checked(parts["word"], "word", "word")
    char = _checked(parts["char"], "char_wb", "char")
    lr = model.pipe.named_steps["lr"]
    classes = [int(c) for c in lr.classes_]
    if classes != list(range(len(labels))):
        raise ValueError(f"classes {classes}: every label of {list(labels)} must occur in training")
    write_lexical(
        path,
        labels=labels,
        word_vocab=_vocabulary(word),
        word_idf=word.idf_,
        word_range=word.ngram_range,
        char_vocab=_vocabulary(char),
        char_idf=char.idf_,
        char_range=char.ngram_range,
        coef=lr.coef_,
        intercept=lr.intercept_,
    )
    return {"word_features": len(word.vocabulary_), "char_features": len(char.vocabulary_)}


def build_lexical(cfg: TrainConfig, root: Path, out_dir: Path) -> dict[str, Any]:
    """Fit on the recipe's rows, write ``out_dir/lexical.npz``; the manifest's record of it."""
    t0 = time.monotonic()
    rows = lexical_rows(cfg, root)
    model = SentimentBaseline().fit(rows)
    sizes = save_lexical(model, out_dir / LEXICAL_FILE)
    return {
        "file": LEXICAL_FILE,
        "weight": cfg.lexical_weight,
        "rows": len(rows),
        "label_counts": ds.label_counts(r.label for r in rows),
        **sizes,
        "seconds": round(time.monotonic() - t0, 1),
    }
