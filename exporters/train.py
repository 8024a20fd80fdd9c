"""Fine-tune the two-head classifier: PhraseBank + Twitter sentiment, hand + weak risk tags.

Seeded and reproducible for a given machine and thread count; progress bars on stderr; model
selection and early stopping on validation rows only (never test rows).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from tokenizers import Tokenizer
from torch import nn
from tqdm import tqdm

from exporters import adapt, distill, sam
from exporters import data as ds
from exporters.batching import length_bucketed_batches, pad_batch
from exporters.bundle import fingerprint_files
from exporters.ema import WeightAverage
from exporters.model import TwoHeadClassifier, base_model_dir, load_classifier
from exporters.recipe import Source, TrainConfig
from exporters.risk_lexicon import load_lexicon
from exporters.schedule import LinearSchedule
from monitor.logs import get_logger
from monitor.score.manifest import RISK_TAGS, SENTIMENT_LABELS

log = get_logger("exporters.train")

CHECKPOINT_FILE = "classifier.pt"
STATE_FILE = "train_state.json"


@dataclass
class Example:
    text: str
    sent_target: list[float] | None  # soft target over SENTIMENT_LABELS
    sent_weight: float
    risk_target: list[float] | None
    risk_weight: float
    source: Source


@dataclass
class ValidationSet:
    texts: list[str]
    sentiment: np.ndarray[Any, Any] | None = None  # int labels
    risk: np.ndarray[Any, Any] | None = None  # multi-hot


@dataclass
class TrainResult:
    model: TwoHeadClassifier
    tokenizer: Tokenizer
    config: TrainConfig
    history: list[dict[str, Any]]
    best: dict[str, Any]
    seconds: float
    counts: dict[str, Any]
    data_fingerprint: str
    lexicon_version: int
    validation: dict[str, ValidationSet] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 matmuls natively here (AVX512-BF16 or AMX)."""
    try:
        return bool(
            torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
            and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``bf16`` or ``fp32`` for this machine; an explicit bf16 it cannot run fails."""
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision == "bf16" and not cpu_has_bf16():
        raise ValueError(
            "precision='bf16' was asked for, but this CPU has no native bf16 (AVX512-BF16/AMX); "
            "use precision='fp32' or 'auto'"
        )
    return precision


def _onehot(label: int, smoothing: float) -> list[float]:
    return [1.0 - smoothing + smoothing / 3 if i == label else smoothing / 3 for i in range(3)]


def build_training_set(
    cfg: TrainConfig, root: Path
) -> tuple[list[Example], dict[str, Any], str, int]:
    """Training examples, counts per source, data fingerprint and lexicon version."""
    lexicon = load_lexicon(cfg.lexicon)
    examples: list[Example] = []
    counts: dict[str, Any] = {}
    pb = ds.cap_rows(ds.load_phrasebank(root, "train"), cfg.limit_per_source, cfg.seed)
    for r in [row for _ in range(cfg.phrasebank_repeat) for row in pb]:
        examples.append(
            Example(
                r.text,
                _onehot(r.label, cfg.agreement_smoothing.get(r.agreement, 0.0)),
                cfg.agreement_weight.get(r.agreement, 1.0),
                lexicon.vector(r.text),
                cfg.weak_risk_weight,
                "phrasebank",
            )
        )
    counts["phrasebank_train"] = len(pb)
    files = [*ds.phrasebank_files(root), cfg.risk_csv, cfg.lexicon]
    if cfg.use_twitter:
        tw = ds.cap_rows(ds.load_twitter(root, "train"), cfg.limit_per_source, cfg.seed + 1)
        for r in tw:
            examples.append(
                Example(
                    r.text,
                    _onehot(r.label, cfg.twitter_smoothing),
                    cfg.twitter_weight,
                    lexicon.vector(r.text),
                    cfg.weak_risk_weight,
                    "twitter",
                )
            )
        counts["twitter_train"] = len(tw)
        files += ds.twitter_files(root)
    if cfg.extra_sentiment_csv is not None:
        own = ds.extra_sentiment_csv(cfg.extra_sentiment_csv)
        examples += [Example(r.text, _onehot(r.label, 0.0), 1.0, None, 0.0, "own") for r in own]
        counts["own_sentiment"] = len(own)
        files.append(cfg.extra_sentiment_csv)
    risk = ds.cap_rows(ds.load_risk(cfg.risk_csv, "train"), cfg.limit_per_source, cfg.seed + 2)
    for _ in range(cfg.risk_repeat):
        for rr in risk:
            examples.append(
                Example(
                    rr.text,
                    None if rr.sentiment is None else _onehot(rr.sentiment, 0.1),
                    cfg.hand_sentiment_weight,
                    list(rr.tags),
                    1.0,
                    "risk",
                )
            )
    counts["risk_train"] = len(risk)
    counts["risk_repeat"] = cfg.risk_repeat
    counts["examples_per_epoch"] = len(examples)
    return examples, counts, fingerprint_files(files), lexicon.version


def distilled(examples: Sequence[Example], cfg: TrainConfig) -> tuple[list[Example], str]:
    """``examples`` with the teacher (``cfg.distill_from``) mixed into their sentiment targets,
    and the sha256 of the teacher's graph. Each distinct text is scored once."""
    if cfg.distill_from is None:
        raise ValueError("distilled() needs cfg.distill_from")
    texts = sorted({e.text for e in examples if e.sent_target is not None})
    log.info("distill: scoring training rows with the teacher", extra={"texts": len(texts)})
    probs, sha = distill.teacher_probabilities(cfg.distill_from, texts, threads=cfg.threads)
    row = {t: i for i, t in enumerate(texts)}
    # Rows without a sentiment target keep None in mix_targets; their teacher row is unused.
    teacher = np.zeros((len(examples), len(SENTIMENT_LABELS)))
    for k, e in enumerate(examples):
        if e.sent_target is not None:
            teacher[k] = probs[row[e.text]]
    mixed = distill.mix_targets([e.sent_target for e in examples], teacher, cfg.distill_alpha)
    return [
        dataclasses.replace(e, sent_target=m) for e, m in zip(examples, mixed, strict=True)
    ], sha


def build_validation(cfg: TrainConfig, root: Path) -> dict[str, ValidationSet]:
    pb = ds.cap_rows(ds.load_phrasebank(root, "validation"), cfg.limit_per_source, cfg.seed)
    out = {"phrasebank": ValidationSet([r.text for r in pb], np.array([r.label for r in pb]))}
    if cfg.use_twitter:
        tw = ds.cap_rows(ds.load_twitter(root, "validation"), cfg.limit_per_source, cfg.seed)
        out["twitter"] = ValidationSet([r.text for r in tw], np.array([r.label for r in tw]))
    rk = ds.load_risk(cfg.risk_csv, "validation")
    out["risk"] = ValidationSet([r.text for r in rk], risk=np.array([r.tags for r in rk]))
    return out


def calibration_texts(cfg: TrainConfig, n: int = 512) -> list[str]:
    """``n`` training sentences (never validation or test rows), shortest first.

    int8 SmoothQuant measures activation ranges on them; sorted by length they batch like the
    daemon's length-grouped batches.
    """
    root = ds.resolve_datasets(cfg.datasets)
    examples = build_training_set(cfg, root)[0]
    texts = sorted({e.text for e in examples})
    chosen = random.Random(cfg.seed).sample(texts, min(n, len(texts)))
    return sorted(chosen, key=len)


def encode(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(list(texts))]


def length_ordered_batches(
    tokenizer: Tokenizer, texts: Sequence[str], batch_size: int
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """(row positions, input_ids, attention_mask) per batch; rows sorted by token count, so a
    batch pads little. Callers scatter each batch's outputs back to ``row positions``."""
    seqs = encode(tokenizer, texts)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, mask = pad_batch([seqs[i] for i in idx])
        yield idx, ids, mask


@torch.no_grad()
def predict_logits(
    model: nn.Module, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 64
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(sentiment logits, risk logits) in input order."""
    model.eval()
    sent = np.zeros((len(texts), 3), dtype=np.float32)
    risk = np.zeros((len(texts), len(RISK_TAGS)), dtype=np.float32)
    for idx, ids, mask in length_ordered_batches(tokenizer, texts, batch_size):
        s, r = model(ids, mask)
        sent[idx] = s.numpy()
        risk[idx] = r.numpy()
    return sent, risk


def validation_scores(
    model: nn.Module, tokenizer: Tokenizer, sets: dict[str, ValidationSet]
) -> dict[str, float]:
    scores: dict[str, float] = {}
    for name, vs in sets.items():
        sent, risk = predict_logits(model, tokenizer, vs.texts)
        if vs.sentiment is not None:
            pred = sent.argmax(axis=1)
            scores[f"{name}_accuracy"] = float(accuracy_score(vs.sentiment, pred))
            scores[f"{name}_macro_f1"] = float(
                f1_score(vs.sentiment, pred, average="macro", zero_division=0)
            )
        if vs.risk is not None:
            pred_r = (risk > 0).astype(int)
            scores[f"{name}_macro_f1"] = float(
                f1_score(vs.risk, pred_r, average="macro", zero_division=0)
            )
    # Selection score: every validation figure counts equally.
    scores["selection"] = float(np.mean(list(scores.values())))
    return scores


def param_groups(model: TwoHeadClassifier, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Layer-wise lr decay: top layer at ``lr``, each lower layer x ``layer_decay``."""
    encoder: Any = model.encoder
    layers = list(encoder.encoder.layer)
    n = len(layers)
    groups: list[dict[str, Any]] = []

    def add(params: list[nn.Parameter], lr: float) -> None:
        params = [p for p in params if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups.append({"params": decay, "lr": lr, "weight_decay": cfg.weight_decay})
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})

    add(list(encoder.embeddings.parameters()), cfg.lr * cfg.layer_decay**n)
    for i, layer in enumerate(layers):
        add(list(layer.parameters()), cfg.lr * cfg.layer_decay ** (n - 1 - i))
    heads = list(model.sentiment_head.parameters()) + list(model.risk_head.parameters())
    add(heads, cfg.head_lr)
    return [g for g in groups if g["params"]]


def base_tokenizer(max_length: int) -> Tokenizer:
    tok = Tokenizer.from_file(str(base_model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def train(cfg: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Run the recipe; return the best model (by validation selection score)."""
    started = time.monotonic()
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    root = ds.resolve_datasets(cfg.datasets)
    tokenizer = base_tokenizer(cfg.max_length)
    examples, counts, fingerprint, lex_version = build_training_set(cfg, root)
    if cfg.distill_from is not None:
        examples, counts["distill_teacher_sha256"] = distilled(examples, cfg)
    precision = resolve_precision(cfg.precision)
    counts["precision"] = precision
    validation = build_validation(cfg, root)
    model = load_classifier(
        layers=cfg.layers,
        pooling=cfg.pooling,
        n_risk=len(RISK_TAGS),
        encoder_dropout=cfg.encoder_dropout,
    )
    if cfg.freeze_word_embeddings:
        encoder: Any = model.encoder
        encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    order_seed = cfg.seed if cfg.order_seed is None else cfg.order_seed
    if cfg.order_seed is not None:
        # Reseeded only when asked: the default run keeps the RNG stream of earlier releases.
        torch.manual_seed(order_seed)
    seqs = encode(tokenizer, [e.text for e in examples])
    if cfg.mlm_epochs > 0:
        counts.update(
            adapt.adapt(
                model.encoder, seqs, cfg, precision=precision, seed=order_seed, progress=progress
            )
        )
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = max(1, round(steps_per_epoch * cfg.epochs))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, cfg))
    schedule = LinearSchedule(total, round(cfg.warmup * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    eval_every = max(1, steps_per_epoch // cfg.evals_per_epoch)
    rng = random.Random(order_seed)
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    log.info("training", extra={"steps": total, "examples": len(examples), **counts})
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"selection": -1.0}
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    step = 0
    stop_reason = "completed"
    loop_started = time.monotonic()
    # The loop's share of the budget; evaluations on validation are counted in the pace.
    budget_s = cfg.max_minutes * 60 - (loop_started - started)
    bar = tqdm(total=total, desc="train", unit="step", disable=not progress, dynamic_ncols=True)

    def evaluate() -> bool:
        """Validate the raw (and averaged) weights at ``step``; keep a new best. True if one."""
        nonlocal best, best_state
        improved = False
        for scores, state in _checkpoints(model, ema, tokenizer, validation):
            scores.update(step=step, epoch=round(step / steps_per_epoch, 2))
            scores["minutes"] = round((time.monotonic() - started) / 60, 2)
            history.append(scores)
            bar.write("validation " + json.dumps(_rounded(scores)))
            if scores["selection"] > best["selection"]:
                best, best_state, improved = scores, state(), True
        return improved

    while step < total:
        for batch in length_bucketed_batches([len(s) for s in seqs], cfg.batch_size, rng):
            if step >= total:
                break
            model.train()
            rows = [examples[i] for i in batch]
            again = _rdrop_rows(cfg, rows)
            ids, mask = pad_batch([seqs[i] for i in batch] + [seqs[batch[j]] for j in again])
            optimizer.zero_grad(set_to_none=True)
            loss = _batch_loss(cfg, model, rows, again, ids, mask, precision)
            loss.backward()  # type: ignore[no-untyped-call]
            if cfg.sam_rho > 0:
                with sam.ascended(trainable, cfg.sam_rho):
                    _batch_loss(cfg, model, rows, again, ids, mask, precision).backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            if step % 10 == 0 and schedule.fit_budget(
                step, time.monotonic() - loop_started, budget_s
            ):
                total = schedule.total
                bar.total = total
                stop_reason = (
                    f"schedule shortened to {total} steps to fit {cfg.max_minutes} min"
                    if total < schedule.planned
                    else "completed"
                )
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if ema is not None:
                ema.update(model)
            if step % eval_every == 0 or step == total:
                stale = 0 if evaluate() else stale + 1
                if may_stop_early(stale, cfg.patience, step, total, cfg.min_progress):
                    stop_reason = f"early stop: no gain in {stale} evaluations"
                    step = total
                    break
            if (time.monotonic() - started) / 60 > cfg.max_minutes:
                stop_reason = f"time budget of {cfg.max_minutes} min reached"
                if not history or history[-1]["step"] != step:
                    evaluate()
                step = total
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    best = {**best, "stop_reason": stop_reason}
    log.info("trained", extra={"best": best, "seconds": round(time.monotonic() - started, 1)})
    return TrainResult(
        model=model,
        tokenizer=tokenizer,
        config=cfg,
        history=history,
        best=best,
        seconds=time.monotonic() - started,
        counts=counts,
        data_fingerprint=fingerprint,
        lexicon_version=lex_version,
        validation=validation,
    )


def may_stop_early(stale: int, patience: int, step: int, total: int, min_progress: float) -> bool:
    """Patience is spent and the schedule is far enough along for the lr to have come down.

    Validation figures of this encoder swing by a point between neighbouring checkpoints while
    the lr is high: a seed whose best came early (epoch 2 of 6) was stopped at epoch 4, before
    the annealed checkpoints that are usually the best had been seen.
    """
    return stale >= patience and step >= min_progress * total


StateFn = Callable[[], dict[str, torch.Tensor]]


def _checkpoints(
    model: TwoHeadClassifier,
    ema: WeightAverage | None,
    tokenizer: Tokenizer,
    validation: dict[str, ValidationSet],
) -> list[tuple[dict[str, Any], StateFn]]:
    """Validation scores of the raw weights and, with EMA on, of the averaged weights.

    Each comes with a function returning a copy of that state, called only for a new best.
    """
    raw: dict[str, Any] = {"weights": "raw", **validation_scores(model, tokenizer, validation)}
    out: list[tuple[dict[str, Any], StateFn]] = [(raw, lambda: copy.deepcopy(model.state_dict()))]
    if ema is not None:
        with ema.applied(model):
            avg = validation_scores(model, tokenizer, validation)
        out.append(({"weights": "ema", **avg}, lambda: ema.state_dict_for(model)))
    return out


def _rounded(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}


def _loss(
    cfg: TrainConfig,
    batch: Sequence[Example],
    sent_logits: torch.Tensor,
    risk_logits: torch.Tensor,
) -> torch.Tensor:
    sent_w = torch.tensor([e.sent_weight if e.sent_target else 0.0 for e in batch])
    sent_t = torch.tensor([e.sent_target or [0.0, 0.0, 0.0] for e in batch])
    ce = -(sent_t * torch.log_softmax(sent_logits, dim=1)).sum(dim=1)
    sent_loss = (ce * sent_w).sum() / sent_w.sum().clamp(min=1e-6)
    zeros = [0.0] * len(RISK_TAGS)
    risk_w = torch.tensor([e.risk_weight if e.risk_target else 0.0 for e in batch])
    risk_t = torch.tensor([e.risk_target or zeros for e in batch])
    bce = nn.functional.binary_cross_entropy_with_logits(
        risk_logits,
        risk_t,
        reduction="none",
        pos_weight=torch.full((len(RISK_TAGS),), cfg.risk_pos_weight),
    ).mean(dim=1)
    risk_loss = (bce * risk_w).sum() / risk_w.sum().clamp(min=1e-6)
    return sent_loss + cfg.risk_loss_weight * risk_loss


def _batch_loss(
    cfg: TrainConfig,
    model: TwoHeadClassifier,
    rows: Sequence[Example],
    again: Sequence[int],
    ids: torch.Tensor,
    mask: torch.Tensor,
    precision: str,
) -> torch.Tensor:
    """One batch's training loss; rows listed in ``again`` follow the batch a second time."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        sent_logits, risk_logits = model(ids, mask)
    n = len(rows)
    loss = _loss(cfg, rows, sent_logits[:n].float(), risk_logits[:n].float())
    if again:
        loss = loss + cfg.rdrop_weight * symmetric_kl(
            sent_logits[list(again)].float(), sent_logits[n:].float()
        )
    return loss


def _rdrop_rows(cfg: TrainConfig, rows: Sequence[Example]) -> list[int]:
    """Positions in the batch of the rows that take a second pass (R-Drop)."""
    if cfg.rdrop_weight <= 0:
        return []
    wanted = set(cfg.rdrop_sources)
    return [i for i, e in enumerate(rows) if e.source in wanted and e.sent_target is not None]


def symmetric_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over rows of (KL(p_a || p_b) + KL(p_b || p_a)) / 2 for two sets of logits."""
    la, lb = torch.log_softmax(a, dim=1), torch.log_softmax(b, dim=1)
    kl = nn.functional.kl_div
    return (
        kl(lb, la, reduction="batchmean", log_target=True)
        + kl(la, lb, reduction="batchmean", log_target=True)
    ) / 2


def save_checkpoint(result: TrainResult, ckpt_dir: Path) -> Path:
    """Weights + recipe + history, enough for ``riskwire export`` to rebuild the model."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    torch.save(result.model.state_dict(), ckpt_dir / CHECKPOINT_FILE)
    state = {
        "config": result.config.model_dump(mode="json"),
        "history": result.history,
        "best": result.best,
        "seconds": result.seconds,
        "counts": result.counts,
        "data_fingerprint": result.data_fingerprint,
        "lexicon_version": result.lexicon_version,
    }
    (ckpt_dir / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
    return ckpt_dir


def load_checkpoint(ckpt_dir: Path) -> TrainResult:
    state = json.loads((ckpt_dir / STATE_FILE).read_text(encoding="utf-8"))
    cfg = TrainConfig.model_validate(state["config"])
    model = load_classifier(layers=cfg.layers, pooling=cfg.pooling, pretrained=False)
    model.load_state_dict(torch.load(ckpt_dir / CHECKPOINT_FILE, weights_only=True))
    model.eval()
    root = ds.resolve_datasets(cfg.datasets)
    return TrainResult(
        model=model,
        tokenizer=base_tokenizer(cfg.max_length),
        config=cfg,
        history=state["history"],
        best=state["best"],
        seconds=state["seconds"],
        counts=state["counts"],
        data_fingerprint=state["data_fingerprint"],
        lexicon_version=state["lexicon_version"],
        validation=build_validation(cfg, root),
    )
