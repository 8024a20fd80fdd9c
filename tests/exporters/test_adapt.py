"""Task-adaptive masked-LM steps: a head tied to the word embeddings, a loss over masked tokens
only, and an encoder that learns the training texts while frozen embeddings stay put."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from exporters import adapt  # noqa: E402
from exporters.commands import train_config  # noqa: E402
from exporters.model import load_classifier  # noqa: E402
from exporters.recipe import TrainConfig  # noqa: E402
from exporters.train import base_tokenizer, encode  # noqa: E402
from monitor.errors import ConfigError  # noqa: E402

TEXTS = [
    "Acme Corp net sales rose 12 % to EUR 31 mn in the third quarter",
    "Operating profit fell to EUR 4.1 mn from EUR 5.3 mn a year earlier",
    "The company said it expects the rating agency to cut its outlook",
    "Shares of the lender slumped after regulators opened a probe",
    "Finnish retailer Kesko reports higher earnings per share",
    "Bondholders face losses as the insurer misses a coupon payment",
    "The board proposes a dividend of EUR 0.45 per share",
    "Quarterly revenue beat analysts' expectations by a wide margin",
]


def _encoder() -> object:
    torch.manual_seed(0)
    model = load_classifier(layers=2, n_risk=11)
    model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    return model.encoder


def test_the_head_decodes_through_the_word_embeddings() -> None:
    encoder = _encoder()
    head = adapt.mlm_head(encoder)
    words = encoder.embeddings.word_embeddings.weight  # type: ignore[attr-defined]
    assert head.predictions.decoder.weight is words  # type: ignore[union-attr]


def test_loss_counts_only_masked_tokens_and_can_spare_the_encoder() -> None:
    encoder = _encoder()
    head = adapt.mlm_head(encoder)
    tok = base_tokenizer(32)
    ids = torch.tensor([encode(tok, TEXTS[:1])[0]])
    mask = torch.ones_like(ids)
    labels = torch.full_like(ids, -100)
    labels[0, 3] = ids[0, 3]
    encoder.eval()  # type: ignore[attr-defined]
    head.eval()
    loss = adapt.masked_lm_loss(encoder, head, ids, mask, labels)
    states = encoder(  # type: ignore[operator]
        input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
    ).last_hidden_state
    want = torch.nn.functional.cross_entropy(head(states[0, 3:4]), ids[0, 3:4])
    assert torch.allclose(loss, want, atol=1e-5)
    # Head-only steps: the encoder gets no gradient, the head does.
    adapt.masked_lm_loss(encoder, head, ids, mask, labels, train_encoder=False).backward()
    layer = encoder.encoder.layer[0].attention.self.query.weight  # type: ignore[attr-defined]
    assert layer.grad is None
    assert head.predictions.transform.dense.weight.grad is not None  # type: ignore[union-attr]


def test_adapt_learns_the_texts_and_leaves_frozen_embeddings_alone() -> None:
    encoder = _encoder()
    words = encoder.embeddings.word_embeddings.weight.clone()  # type: ignore[attr-defined]
    query = encoder.encoder.layer[0].attention.self.query.weight.clone()  # type: ignore[attr-defined]
    seqs = encode(base_tokenizer(32), TEXTS * 3)  # repeated rows are adapted on once
    cfg = TrainConfig(mlm_epochs=12, batch_size=4, mlm_lr=5e-4)
    out = adapt.adapt(encoder, seqs, cfg, precision="fp32", seed=3, progress=False)
    assert out["mlm_texts"] == len(TEXTS)
    assert out["mlm_steps"] == math.ceil(len(TEXTS) / 4) * 12
    assert out["mlm_loss_last_tenth"] < out["mlm_loss_first_tenth"] - 1.0
    assert torch.equal(words, encoder.embeddings.word_embeddings.weight)  # type: ignore[attr-defined]
    moved = encoder.encoder.layer[0].attention.self.query.weight  # type: ignore[attr-defined]
    assert not torch.equal(query, moved)


def test_a_masking_share_outside_0_1_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mlm_probability"):
        train_config({"mlm_probability": 1.5})
