"""From a trained classifier to a verified model directory (``riskwire train`` / ``export``).

Order: attach the nearest-neighbour memory (exporters/memory.py) -> export fp32 -> check
against PyTorch (fast + slow shapes) -> ORT graph optimisation -> check again -> tokenizer ->
lexical model (exporters/lexical.py) -> calibrate on validation with the shipping graph and the
lexical mixture -> int8 (recipe measured at the shipped decisions) -> fp16 -> manifest (written
last, hashing every file) -> verify like the daemon.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from exporters import calibrate
from exporters import data as ds
from exporters.bundle import finish_model_dir, write_tokenizer
from exporters.export import (
    ExportSpec,
    export_onnx,
    optimize_graph,
    torch_reference,
    validate_outputs,
)
from exporters.lexical import LEXICAL_FILE, build_lexical
from exporters.memory import build_memory, validation_effect
from exporters.model import BASE_MODEL_NAME
from exporters.quantize import RECIPES, Int8Recipe, at_decisions, choose_int8, convert_fp16
from exporters.scoring import OnnxScorer
from exporters.smoothquant import calibration_feeds
from exporters.train import TrainResult, calibration_texts
from exporters.verify import verify_model_dir
from monitor.score.lexical import LexicalModel, load_lexical
from monitor.score.manifest import RISK_TAGS, SENTIMENT_LABELS, Manifest

MODEL_NAME = "riskwire-minilm-l6"
MODEL_VERSION = "1.0.0"


def build_model_dir(
    result: TrainResult,
    out_dir: Path,
    *,
    slow_check: bool = True,
    int8: bool = True,
    fp16: bool = True,
    threads: int = 2,
    int8_recipes: Sequence[Int8Recipe] = RECIPES,
    report: Callable[[str], None] = print,
) -> Manifest:
    """Export ``result`` with its recipe's nearest-neighbour memory attached (when
    ``memory_weight > 0``); ``result.model`` is left without it, as training left it."""
    memory_info: dict[str, Any] | None = None
    if result.config.memory_weight > 0:
        t0 = time.monotonic()
        result.model.memory, memory_info = build_memory(
            result.model, result.tokenizer, result.config
        )
        memory_info["validation"] = validation_effect(
            result.model, result.tokenizer, result.best, result.validation
        )
        memory_info["seconds"] = round(time.monotonic() - t0, 1)
        report(f"memory: {memory_info}")
    try:
        return _build_model_dir(
            result,
            out_dir,
            memory_info,
            slow_check=slow_check,
            int8=int8,
            fp16=fp16,
            threads=threads,
            int8_recipes=int8_recipes,
            report=report,
        )
    finally:
        result.model.memory = None


def _build_model_dir(
    result: TrainResult,
    out_dir: Path,
    memory_info: dict[str, Any] | None,
    *,
    slow_check: bool,
    int8: bool,
    fp16: bool,
    threads: int,
    int8_recipes: Sequence[Int8Recipe],
    report: Callable[[str], None],
) -> Manifest:
    t0 = time.monotonic()
    cfg = result.config
    encoder_cfg: Any = result.model.encoder.config
    spec = ExportSpec(vocab_size=int(encoder_cfg.vocab_size))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    reference = torch_reference(result.model)
    steps: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="riskwire-export-") as tmp:
        raw = export_onnx(result.model, Path(tmp) / "raw.onnx", spec)
        report(f"export: traced fp32 graph (opset {spec.opset})")
        validate_outputs(
            reference, raw, spec, max_length=cfg.max_length, slow=slow_check, report=report
        )
        fp32 = out_dir / "model.onnx"
        steps["optimization"] = optimize_graph(
            raw,
            fp32,
            num_heads=int(encoder_cfg.num_attention_heads),
            hidden_size=int(encoder_cfg.hidden_size),
        )
    report(f"export: optimized graph {steps['optimization']}")
    validate_outputs(
        reference, fp32, spec, max_length=cfg.max_length, slow=slow_check, report=report
    )
    write_tokenizer(result.tokenizer, out_dir, cfg.max_length)
    lexical_info: dict[str, Any] | None = None
    lexical: tuple[LexicalModel, float] | None = None
    if cfg.lexical_weight > 0:
        lexical_info = build_lexical(cfg, ds.resolve_datasets(cfg.datasets), out_dir)
        lexical = (load_lexical(out_dir / LEXICAL_FILE, SENTIMENT_LABELS), cfg.lexical_weight)
        report(f"lexical: {lexical_info}")

    def score(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        scorer = OnnxScorer(path, result.tokenizer, threads=threads, lexical=lexical)
        sents, risks = [], []
        for vs in result.validation.values():
            s, r = scorer.logits(vs.texts)
            sents.append(s)
            risks.append(r)
        return np.concatenate(sents), np.concatenate(risks)

    # Calibration on validation rows, with the graph that ships.
    sent_sets = [(n, vs) for n, vs in result.validation.items() if vs.sentiment is not None]
    scorer = OnnxScorer(fp32, result.tokenizer, threads=threads, lexical=lexical)
    val_logits = {n: scorer.logits(vs.texts) for n, vs in result.validation.items()}
    s_logits = np.concatenate([val_logits[n][0] for n, _ in sent_sets])
    s_labels = np.concatenate([vs.sentiment for _, vs in sent_sets if vs.sentiment is not None])
    s_groups = np.concatenate([np.full(len(vs.texts), i) for i, (_, vs) in enumerate(sent_sets)])
    scaling, choice = calibrate.choose_scaling(s_logits, s_labels, s_groups)
    ece_before = calibrate.expected_calibration_error(calibrate.softmax(s_logits), s_labels)
    ece_after = calibrate.expected_calibration_error(scaling.probs(s_logits), s_labels)
    bias = dict(zip(SENTIMENT_LABELS, scaling.bias, strict=True))
    calibration: dict[str, Any] = {
        "method": choice["method"],
        "cv_nll": choice["cv_nll"],
        "temperature": round(scaling.temperature, 4),
        "sentiment_bias": {k: round(v, 4) for k, v in bias.items()},
        "validation_ece_before": round(ece_before, 4),
        "validation_ece_after": round(ece_after, 4),
        "validation_rows": int(len(s_labels)),
    }
    for i, (name, _) in enumerate(sent_sets):
        sel = s_groups == i
        calibration[f"{name}_validation_ece_after"] = round(
            calibrate.expected_calibration_error(scaling.probs(s_logits[sel]), s_labels[sel]),
            4,
        )
    thresholds = dict.fromkeys(RISK_TAGS, 0.5)
    risk_vs = result.validation.get("risk")
    if risk_vs is not None and risk_vs.risk is not None:
        probs = calibrate.sigmoid(val_logits["risk"][1])
        thresholds = calibrate.fit_thresholds(probs, risk_vs.risk, RISK_TAGS)
        calibration["risk_validation_macro_f1_at_0.5"] = round(
            float(
                np.mean(
                    [
                        calibrate.f1_at(probs[:, j], risk_vs.risk[:, j], 0.5)
                        for j in range(len(RISK_TAGS))
                    ]
                )
            ),
            4,
        )
        calibration["risk_validation_macro_f1_tuned"] = round(
            float(
                np.mean(
                    [
                        calibrate.f1_at(probs[:, j], risk_vs.risk[:, j], thresholds[t])
                        for j, t in enumerate(RISK_TAGS)
                    ]
                )
            ),
            4,
        )
    report(f"calibration: {calibration}")
    variants = {"fp32": "model.onnx"}
    if int8:
        labels = np.concatenate(
            [
                vs.sentiment if vs.sentiment is not None else np.full(len(vs.texts), -1)
                for vs in result.validation.values()
            ]
        )
        report("int8: measuring recipes against fp32 on validation rows")
        calibration_rows = (
            calibration_texts(cfg) if any(r.smooth_alpha for r in int8_recipes) else []
        )
        steps["int8"] = choose_int8(
            fp32,
            out_dir / "model.int8.onnx",
            at_decisions(
                score, scaling.temperature, scaling.bias, [thresholds[t] for t in RISK_TAGS]
            ),
            labels,
            int8_recipes,
            report=report,
            calibration=calibration_feeds(result.tokenizer, calibration_rows),
        )
        steps["int8"]["calibration_rows"] = len(calibration_rows)
        variants["int8"] = "model.int8.onnx"
    if fp16:
        convert_fp16(fp32, out_dir / "model.fp16.onnx")
        variants["fp16"] = "model.fp16.onnx"
    training = {
        "recipe": cfg.model_dump(mode="json"),
        "history": result.history,
        "best_validation": result.best,
        "train_seconds": round(result.seconds, 1),
        "export_seconds": round(time.monotonic() - t0, 1),
        "counts": result.counts,
        "lexicon_version": result.lexicon_version,
        "calibration": calibration,
        "memory": memory_info,
        "lexical": lexical_info,
        "export": steps,
    }
    finish_model_dir(
        out_dir,
        name=MODEL_NAME,
        version=MODEL_VERSION,
        base_model=BASE_MODEL_NAME,
        max_length=cfg.max_length,
        variants=variants,
        temperature=scaling.temperature,
        sentiment_bias=bias,
        thresholds=thresholds,
        metrics={"validation": result.best, "calibration": calibration},
        data_fingerprint=result.data_fingerprint,
        training=training,
        lexical=(
            None
            if lexical_info is None
            else {"file": lexical_info["file"], "weight": lexical_info["weight"]}
        ),
    )
    manifest = verify_model_dir(out_dir)
    report(f"model directory ready: {out_dir} ({', '.join(variants)})")
    return manifest
