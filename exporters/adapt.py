"""Task-adaptive pretraining: masked-LM steps on the training texts before fine-tuning.

Gururangan et al. (2020, "Don't Stop Pretraining") continue the encoder's masked-LM objective on
the unlabelled texts of the task itself; it moves the encoder towards the domain's vocabulary
(tickers, "EUR mn", "yoy") before any label is seen. Only training texts are read, never
validation or test rows.

The packaged encoder ships without its MLM head (it was trained for sentence embeddings), so a
BERT prediction head is built on it: its decoder is tied to the word embeddings and only the
transform (dense + LayerNorm) and the vocabulary bias start from scratch. The head is dropped
afterwards; the classifier keeps the adapted encoder.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from exporters.batching import length_bucketed_batches
from exporters.model import base_model_dir
from exporters.recipe import TrainConfig
from exporters.schedule import LinearSchedule


def _collator(cfg: TrainConfig, seed: int) -> Any:
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir()))
    return DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=cfg.mlm_probability, seed=seed
    )


def mlm_head(encoder: Any) -> nn.Module:
    """A BERT MLM prediction head on ``encoder``, its decoder tied to the word embeddings."""
    from transformers.models.bert.modeling_bert import BertOnlyMLMHead

    head: Any = BertOnlyMLMHead(encoder.config)  # type: ignore[no-untyped-call]
    head.predictions.decoder.weight = encoder.embeddings.word_embeddings.weight
    module: nn.Module = head
    return module


def masked_lm_loss(
    encoder: nn.Module,
    head: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    train_encoder: bool = True,
) -> torch.Tensor:
    """Cross-entropy on the masked positions only (the vocabulary projection of the others is
    never computed: it would cost 6x the masked share of a 30k-way matmul)."""
    with torch.set_grad_enabled(train_encoder and torch.is_grad_enabled()):
        out = encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        )
    chosen = labels != -100
    logits = head(out.last_hidden_state[chosen])
    return nn.functional.cross_entropy(logits.float(), labels[chosen])


# Share of the masked-LM steps that train the new head alone: its first gradients come from a
# random transform and would only shake the pretrained encoder.
HEAD_ONLY_SHARE = 0.1


def adapt(
    encoder: Any,
    seqs: Sequence[Sequence[int]],
    cfg: TrainConfig,
    *,
    precision: str,
    seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``cfg.mlm_epochs`` of masked-LM steps on the token ids ``seqs`` (each distinct text
    once); return what happened, for the manifest's training counts."""
    started = time.monotonic()
    unique = [list(s) for s in dict.fromkeys(tuple(s) for s in seqs)]
    collate = _collator(cfg, seed)
    head = mlm_head(encoder)
    # The new head learns at the classifier heads' lr; the tied decoder weight is the (frozen
    # or encoder-owned) word-embedding tensor, so each parameter is listed once.
    head_params = [p for n, p in head.named_parameters() if "decoder.weight" not in n]
    taken = {id(p) for p in head_params}
    encoder_params = [p for p in encoder.parameters() if p.requires_grad and id(p) not in taken]
    params = [*encoder_params, *head_params]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": cfg.mlm_lr},
            {"params": head_params, "lr": cfg.head_lr},
        ],
        weight_decay=cfg.weight_decay,
    )
    per_epoch = math.ceil(len(unique) / cfg.batch_size)
    total = max(1, round(per_epoch * cfg.mlm_epochs))
    head_only = round(HEAD_ONLY_SHARE * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, LinearSchedule(total, round(cfg.warmup * total))
    )
    rng = random.Random(seed)
    lengths = [len(s) for s in unique]
    encoder.train()
    head.train()
    losses: list[float] = []
    bar = tqdm(total=total, desc="adapt (masked LM)", unit="step", disable=not progress)
    step = 0
    while step < total:
        for batch in length_bucketed_batches(lengths, cfg.batch_size, rng):
            if step >= total:
                break
            enc = collate([{"input_ids": unique[i]} for i in batch])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = masked_lm_loss(
                    encoder,
                    head,
                    enc["input_ids"],
                    enc["attention_mask"],
                    enc["labels"],
                    train_encoder=step >= head_only,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.item()))
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    tenth = max(1, len(losses) // 10)
    return {
        "mlm_steps": step,
        "mlm_texts": len(unique),
        "mlm_loss_first_tenth": round(sum(losses[:tenth]) / tenth, 4),
        "mlm_loss_last_tenth": round(sum(losses[-tenth:]) / tenth, 4),
        "mlm_minutes": round((time.monotonic() - started) / 60, 2),
    }
