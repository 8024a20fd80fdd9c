"""TF-IDF + logistic regression, trained on the same rows as the model, to show the gain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from exporters import data as ds

Array = np.ndarray[Any, Any]


def _features() -> FeatureUnion:
    return FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(3, 5), min_df=3, sublinear_tf=True
                ),
            ),
        ]
    )


class SentimentBaseline:
    def __init__(self, seed: int = 0) -> None:
        self.pipe = Pipeline(
            [
                ("tfidf", _features()),
                ("lr", LogisticRegression(C=4.0, max_iter=2000, random_state=seed)),
            ]
        )

    def fit(self, rows: Sequence[ds.SentimentRow]) -> SentimentBaseline:
        self.pipe.fit([r.text for r in rows], [r.label for r in rows])
        return self

    def predict(self, texts: Sequence[str]) -> Array:
        out: Array = np.asarray(self.pipe.predict(list(texts)))
        return out


class RiskBaseline:
    """One logistic regression per tag; a tag never seen positive predicts 0."""

    def __init__(self, n_tags: int, seed: int = 0) -> None:
        self.features = _features()
        self.models: list[LogisticRegression | None] = [None] * n_tags
        self.seed = seed

    def fit(self, texts: Sequence[str], targets: Array) -> RiskBaseline:
        x = self.features.fit_transform(list(texts))
        for j in range(targets.shape[1]):
            y = targets[:, j] >= 0.5
            if y.any() and not y.all():
                model = LogisticRegression(
                    C=4.0, max_iter=2000, class_weight="balanced", random_state=self.seed
                )
                self.models[j] = model.fit(x, y)
        return self

    def predict(self, texts: Sequence[str]) -> Array:
        x = self.features.transform(list(texts))
        cols = [
            np.zeros(x.shape[0], dtype=int) if m is None else m.predict(x).astype(int)
            for m in self.models
        ]
        return np.stack(cols, axis=1)
