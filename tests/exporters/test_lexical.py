"""The lexical model written by exporters/lexical.py scores in the daemon (numpy only) exactly
as scikit-learn scores it, on ordinary and odd text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402

from exporters import data as ds  # noqa: E402
from exporters.baseline import SentimentBaseline  # noqa: E402
from exporters.lexical import save_lexical  # noqa: E402
from monitor.errors import ModelError  # noqa: E402
from monitor.score.lexical import char_wb_ngrams, load_lexical, word_ngrams  # noqa: E402
from monitor.score.manifest import SENTIMENT_LABELS  # noqa: E402

NEG = ["profit warning hits {c}", "{c} shares plunge", "{c} cuts guidance", "{c} misses estimates"]
NEU = ["{c} holds annual meeting", "{c} to report results", "{c} names new auditor"]
POS = ["{c} beats estimates", "{c} raises dividend", "{c} shares surge on record sales"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark"]
ODD = [
    "",
    "   \n\t ",
    "A",
    "x" * 3000,
    "Ünïcode ÄKTIE fällt — 5% ↓ après l'alerte",
    "Q3 EPS $1.02 vs. est. $0.98\n\nguidance\traised  (again)",
    "株価が急落",
    "🚀📉 profit   warning",
    "ACME-GLOBEX merger: deal_value=5bn",
]


def _rows() -> list[ds.SentimentRow]:
    rows = []
    for label, templates in enumerate((NEG, NEU, POS)):
        for t in templates:
            for c in COMPANIES:
                rows.append(ds.SentimentRow(t.format(c=c), label, 100))
    return rows


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[SentimentBaseline, Path]:
    model = SentimentBaseline().fit(_rows())
    path = tmp_path_factory.mktemp("lex") / "lexical.npz"
    sizes = save_lexical(model, path)
    assert sizes["word_features"] > 10 and sizes["char_features"] > 50
    return model, path


def test_analyzers_match_scikit_learn() -> None:
    word = TfidfVectorizer(ngram_range=(1, 2)).build_analyzer()
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).build_analyzer()
    for text in ODD + [r.text for r in _rows()[:5]]:
        assert word_ngrams(text, 1, 2) == word(text), text
        assert char_wb_ngrams(text, 3, 5) == char(text), text


def test_probabilities_match_scikit_learn(fitted: tuple[SentimentBaseline, Path]) -> None:
    model, path = fitted
    lexical = load_lexical(path, SENTIMENT_LABELS)
    texts = [r.text for r in _rows()] + ODD + ["Initech shares plunge after profit warning"]
    want = model.pipe.predict_proba(texts)
    got = lexical.probs(texts)
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert got[-1].argmax() == SENTIMENT_LABELS.index("negative")


def test_settings_the_daemon_does_not_implement_are_refused(tmp_path: Path) -> None:
    model = SentimentBaseline()
    model.pipe.set_params(tfidf__word__sublinear_tf=False, tfidf__char__lowercase=False)
    model.fit(_rows())
    with pytest.raises(ValueError, match="word vectorizer settings {'sublinear_tf': False}"):
        save_lexical(model, tmp_path / "lexical.npz")
    assert not (tmp_path / "lexical.npz").exists()


def test_a_label_missing_from_training_is_refused(tmp_path: Path) -> None:
    rows = [r for r in _rows() if r.label != 2]
    with pytest.raises(ValueError, match=r"classes \[0, 1\]"):
        save_lexical(SentimentBaseline().fit(rows), tmp_path / "lexical.npz")


def test_a_file_missing_arrays_is_refused_naming_them(
    fitted: tuple[SentimentBaseline, Path], tmp_path: Path
) -> None:
    _, path = fitted
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "char_idf"}
    broken = tmp_path / "lexical.npz"
    np.savez(broken, **arrays)
    with pytest.raises(ModelError, match=r"lexical\.npz: .*missing arrays \['char_idf'\]"):
        load_lexical(broken, SENTIMENT_LABELS)
    arrays["char_idf"] = np.ones(3)
    np.savez(broken, **arrays)
    with pytest.raises(ModelError, match=r"terms for 3 weights"):
        load_lexical(broken, SENTIMENT_LABELS)
