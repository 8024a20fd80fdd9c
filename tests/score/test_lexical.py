"""The lexical sentiment model a model directory may carry: loaded, verified, mixed in by the
worker exactly as the exporters calibrated it, and refused when broken."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from exporters.scoring import variant_scorer
from exporters.tiny import build_tiny_model_dir, write_tiny_lexical
from monitor.errors import ModelError
from monitor.score.config import ScoreConfig
from monitor.score.lexical import (
    char_wb_ngrams,
    join_terms,
    load_lexical,
    mix_logits,
    word_ngrams,
)
from monitor.score.manifest import MANIFEST_NAME, SENTIMENT_LABELS
from monitor.score.model import load_model
from monitor.score.pipeline import ScoringPipeline
from monitor.score.text import sentiment_probs

from .kit import copy_model, news, rewrite_manifest, wait_for

CFG = ScoreConfig(intra_op_threads=1, max_wait_ms=1, variant="fp32")
TEXTS = [
    "Acme Corp shares plunge after profit warning",
    "Globex beats earnings estimates",
    "Initech raises its dividend",
    "Oil prices steady as markets await inflation data",
]


@pytest.fixture(scope="module")
def lexical_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_tiny_model_dir(tmp_path_factory.mktemp("lex") / "m", lexical_weight=0.9)


def test_ngrams_follow_the_vectorizer_rules() -> None:
    assert word_ngrams("Profit WARNING: shares cut, a b", 1, 2) == [
        "profit",
        "warning",
        "shares",
        "cut",
        "profit warning",
        "warning shares",
        "shares cut",
    ]  # lowercased; one-letter tokens dropped
    # Each word padded with one space; a padded word no longer than n is counted once.
    assert char_wb_ngrams("Up  x", 3, 4) == [" up", "up ", " up ", " x "]


def test_mix_is_a_log_probability_and_weight_zero_is_the_graph() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    lex = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    graph = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for weight in (0.0, 0.25, 0.9):
        mixed = mix_logits(logits, lex, weight)
        np.testing.assert_allclose(np.exp(mixed), (1 - weight) * graph + weight * lex, atol=1e-6)
    assert mix_logits(logits, lex, 0.9)[0].argmax() == 2  # a strong vote moves the label


def test_the_worker_labels_with_the_mixture_the_exporters_calibrated(
    lexical_model: Path,
) -> None:
    model = load_model(lexical_model, CFG)
    assert model.manifest.lexical is not None and model.manifest.lexical.weight == 0.9
    assert model.lexical is not None and model.lexical.features == 5
    pipe = ScoringPipeline(model, CFG).start()
    for i, text in enumerate(TEXTS):
        pipe.submit(news(i, title=text), i)
    got: list = []

    def all_in() -> bool:
        got.extend(pipe.collect(0.05))
        return len(got) == len(TEXTS)

    wait_for(all_in, 30, "results")
    assert pipe.close(5.0)
    labels = {r.ref: r.record.sentiment.label for r in got}
    # The untrained graph has no opinion worth 10%: the cues decide.
    assert labels == {0: "negative", 1: "positive", 2: "positive", 3: "neutral"}
    # `riskwire eval`'s scorer mixes the same way: the same probabilities, row for row.
    scorer = variant_scorer(lexical_model, model.manifest, "fp32", threads=1)
    want = sentiment_probs(scorer.logits(TEXTS)[0], model.manifest)
    for r in got:
        probs = [r.record.sentiment.probs[k] for k in SENTIMENT_LABELS]
        assert probs == pytest.approx(want[r.ref], abs=1e-4)


def test_without_the_lexical_entry_the_graph_alone_labels(lexical_model: Path) -> None:
    model = load_model(lexical_model, CFG)
    plain = build_tiny_model_dir(lexical_model.parent / "plain")
    alone = load_model(plain, CFG)
    assert alone.manifest.lexical is None and alone.lexical is None
    ids = np.array([alone.tokenizer.encode(TEXTS[0]).ids], dtype=np.int64)
    sent, _ = alone.infer(ids, np.ones_like(ids))
    assert alone.sentiment_logits(sent, None) is sent
    mixed = model.sentiment_logits(sent, model.lexical_probs(TEXTS[:1]))
    assert mixed[0].argmax() == 0 and not np.allclose(mixed, sent)
    with pytest.raises(ValueError, match="none were given"):
        model.sentiment_logits(sent, None)


def test_a_broken_lexical_file_is_refused_naming_it(lexical_model: Path, tmp_path: Path) -> None:
    # Tampered after the manifest was written: the hash check names it.
    tampered = copy_model(lexical_model, tmp_path / "tampered")
    write_tiny_lexical(tampered / "lexical.npz", strength=1.0)
    with pytest.raises(ModelError, match=r"lexical\.npz: sha256 mismatch"):
        load_model(tampered, CFG)
    # Consistent hashes, but labels that are not the manifest's.
    relabelled = copy_model(lexical_model, tmp_path / "relabelled")
    with np.load(relabelled / "lexical.npz") as npz:
        arrays = dict(npz)
    arrays["labels"] = join_terms(["bearish", "neutral", "bullish"])
    np.savez(relabelled / "lexical.npz", **arrays)
    rewrite_manifest(relabelled)
    with pytest.raises(ModelError, match=r"lexical\.npz: not a lexical sentiment model: labels"):
        load_model(relabelled, CFG)
    # Not an .npz at all.
    garbage = copy_model(lexical_model, tmp_path / "garbage")
    (garbage / "lexical.npz").write_bytes(b"not a zip file")
    rewrite_manifest(garbage)
    with pytest.raises(ModelError, match=r"lexical\.npz: not a lexical sentiment model"):
        load_model(garbage, CFG)
    # Named by the manifest but not hashed in it.
    unlisted = copy_model(lexical_model, tmp_path / "unlisted")
    doc = json.loads((unlisted / MANIFEST_NAME).read_text())
    doc["lexical"]["file"] = "other.npz"
    (unlisted / MANIFEST_NAME).write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"'other\.npz' is used but not listed in 'files'"):
        load_model(unlisted, CFG)


def test_labels_in_another_order_are_reordered(lexical_model: Path) -> None:
    path = lexical_model / "lexical.npz"
    ours = load_lexical(path, SENTIMENT_LABELS)
    flipped = load_lexical(path, ("positive", "neutral", "negative"))
    np.testing.assert_allclose(flipped.probs(TEXTS), ours.probs(TEXTS)[:, ::-1])
