"""``riskwire eval``: score a model directory in ONNX Runtime on the held-out sets.

Sets: PhraseBank ``split == test`` (all agreement levels, and the all-agree subset), the Twitter
``sent_valid.csv`` file, and the risk-headline test split. The TF-IDF + logistic regression
baseline is trained on the same training rows in the same run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)

from exporters import calibrate, intervals
from exporters import data as ds
from exporters.baseline import RiskBaseline, SentimentBaseline
from exporters.risk_lexicon import DEFAULT_LEXICON, load_lexicon
from exporters.scoring import OnnxScorer, variant_scorer
from exporters.verify import verify_model_dir
from monitor.score.manifest import RISK_TAGS, SENTIMENT_LABELS, Manifest
from monitor.score.text import sentiment_probs

Array = np.ndarray[Any, Any]
SET_NAMES = ("phrasebank_test", "phrasebank_allagree_test", "twitter_valid", "risk_test")


@dataclass(frozen=True)
class EvalData:
    phrasebank_test: list[ds.SentimentRow]
    twitter_test: list[ds.SentimentRow]
    risk_test: list[ds.RiskRow]
    sentiment_train: list[ds.SentimentRow]
    risk_train_texts: list[str]
    risk_train_targets: Array


def load_eval_data(
    root: Path, risk_csv: Path, *, use_twitter: bool = True, lexicon: Path = DEFAULT_LEXICON
) -> EvalData:
    lex = load_lexicon(lexicon)
    pb_train = ds.load_phrasebank(root, "train")
    tw_train = ds.load_twitter(root, "train") if use_twitter else []
    hand = ds.load_risk(risk_csv, "train")
    weak_texts = [r.text for r in pb_train + tw_train]
    texts = [r.text for r in hand] + weak_texts
    targets = np.array([list(r.tags) for r in hand] + [lex.vector(t) for t in weak_texts])
    return EvalData(
        phrasebank_test=ds.load_phrasebank(root, "test"),
        twitter_test=ds.load_twitter(root, "test"),
        risk_test=ds.load_risk(risk_csv, "test"),
        sentiment_train=pb_train + tw_train,
        risk_train_texts=texts,
        risk_train_targets=targets,
    )


def sentiment_report(y: Array, pred: Array, probs: Array | None = None) -> dict[str, Any]:
    labels = list(range(len(SENTIMENT_LABELS)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    out: dict[str, Any] = {
        "rows": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=labels, zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, average="weighted", labels=labels, zero_division=0)),
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, name in enumerate(SENTIMENT_LABELS)
        },
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
    }
    if probs is not None:
        out["ece"] = calibrate.expected_calibration_error(probs, y)
        out["ece_floor_median"], out["ece_floor_p90"] = calibrate.ece_sampling_floor(probs)
    return out


def risk_report(targets: Array, pred: Array) -> dict[str, Any]:
    truth = (targets >= 0.5).astype(int)
    p, r, f, s = precision_recall_fscore_support(truth, pred, zero_division=0)
    mcm = multilabel_confusion_matrix(truth, pred)
    return {
        "rows": int(len(truth)),
        # Exact-match (subset) accuracy: every tag of the row right, "none" included.
        "accuracy": float(np.mean(np.all(truth == pred, axis=1))),
        "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(truth, pred, average="weighted", zero_division=0)),
        "micro_f1": float(f1_score(truth, pred, average="micro", zero_division=0)),
        "per_tag": {
            tag: {
                "precision": float(p[j]),
                "recall": float(r[j]),
                "f1": float(f[j]),
                "support": int(s[j]),
                # [[tn, fp], [fn, tp]]
                "confusion": mcm[j].tolist(),
            }
            for j, tag in enumerate(RISK_TAGS)
        },
    }


def _header(base: dict[str, Any] | None) -> str:
    cols = f"{'model':>9s}" + (f"{'tfidf+lr':>10s}{'gain':>8s}" if base else "")
    return f"   {'':22s}{cols}  {'model 95% CI':16s}" + ("gain 95% CI" if base else "")


def _figure_line(label: str, key: str, model: dict[str, Any], base: dict[str, Any] | None) -> str:
    """One figure: model, baseline and gain, then bootstrap intervals where they were computed."""
    line = f"   {label:22s}{model[key]:9.4f}"
    if base:
        line += f"{base[key]:10.4f}{model[key] - base[key]:+8.4f}"
    ci = model.get("ci95", {}).get(key)
    if ci:
        line += f"  [{ci[0]:.3f}, {ci[1]:.3f}]"
        gain = model.get("baseline", {}).get("gain_ci95", {}).get(key)
        if base and gain:
            line += f"  [{gain[0]:+.3f}, {gain[1]:+.3f}]"
    return line


def _fmt_sentiment(name: str, model: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    lines = [f"== {name} ({model['rows']} rows)"]
    lines.append(_header(base))
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        lines.append(_figure_line(key, key, model, base))
    if "ece" in model:
        lines.append(f"   {'ece (calibrated)':22s}{model['ece']:9.4f}")
        lines.append(
            f"   {'ece if calibrated':22s}{model['ece_floor_median']:9.4f}"
            f"  (sampling floor on {model['rows']} rows: median; p90 {model['ece_floor_p90']:.4f})"
        )
    if "fp32_argmax_agreement" in model:
        lines.append(f"   {'agreement with fp32':22s}{model['fp32_argmax_agreement']:9.4f}")
    if "vs_fp32" in model:
        delta, (low, high) = model["vs_fp32"]["accuracy_delta"], model["vs_fp32"]["ci95"]
        lines.append(
            f"   {'accuracy minus fp32':22s}{delta:+9.4f}  [{low:+.3f}, {high:+.3f}] (paired)"
        )
    lines.append(f"   {'class':12s}{'precision':>10s}{'recall':>8s}{'f1':>8s}{'support':>9s}")
    for label, m in model["per_class"].items():
        lines.append(
            f"   {label:12s}{m['precision']:10.4f}{m['recall']:8.4f}{m['f1']:8.4f}{m['support']:9d}"
        )
    lines.append("   confusion (rows = gold, cols = predicted: " + "/".join(SENTIMENT_LABELS) + ")")
    for label, row in zip(SENTIMENT_LABELS, model["confusion"], strict=True):
        lines.append(f"   {label:12s}" + "".join(f"{v:7d}" for v in row))
    return lines


def _fmt_risk(model: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    lines = [f"== risk_test ({model['rows']} rows, multi-label, thresholds from validation)"]
    lines.append(_header(base))
    for key in ("accuracy", "macro_f1", "weighted_f1", "micro_f1"):
        label = "exact-match accuracy" if key == "accuracy" else key
        lines.append(_figure_line(label, key, model, base))
    lines.append(
        f"   {'tag':20s}{'precision':>10s}{'recall':>8s}{'f1':>8s}{'support':>9s}"
        f"{'tp':>5s}{'fp':>5s}{'fn':>5s}{'base f1':>9s}"
    )
    for tag, m in model["per_tag"].items():
        (_tn, fp), (fn, tp) = m["confusion"]
        lines.append(
            f"   {tag:20s}{m['precision']:10.4f}{m['recall']:8.4f}{m['f1']:8.4f}{m['support']:9d}"
            f"{tp:5d}{fp:5d}{fn:5d}" + (f"{base['per_tag'][tag]['f1']:9.4f}" if base else "")
        )
    return lines


def save_confusion_png(path: Path, title: str, reports: dict[str, dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(4.2 * len(reports), 3.8))
    axes_list = list(np.atleast_1d(axes))
    for ax, (who, rep) in zip(axes_list, reports.items(), strict=True):
        cm = np.array(rep["confusion"])
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(3), SENTIMENT_LABELS, rotation=30)
        ax.set_yticks(range(3), SENTIMENT_LABELS)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(f"{who}: acc {rep['accuracy']:.3f}")
        for i in range(3):
            for j in range(3):
                color = "white" if cm[i, j] > cm.max() / 2 else "black"
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=color)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_risk_png(
    path: Path, title: str, model: dict[str, Any], base: dict[str, Any] | None
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = list(model["per_tag"])

    def counts(rep: dict[str, Any], tag: str) -> list[int]:
        (_tn, fp), (fn, tp) = rep["per_tag"][tag]["confusion"]
        return [tp, fp, fn]

    # Per tag: [tp, fp, fn] counts, model and (when run) baseline side by side.
    grid = np.array([counts(model, t) + (counts(base, t) if base else []) for t in tags])
    fig, ax = plt.subplots(figsize=(7.5, 6))
    ax.imshow(grid, cmap="Blues", aspect="auto")
    cols = ["tp", "fp", "fn"] + (["base tp", "base fp", "base fn"] if base else [])
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(tags)), tags)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, str(grid[i, j]), ha="center", va="center")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


SENTIMENT_METRICS: dict[str, intervals.Metric] = {
    "accuracy": intervals.accuracy,
    "macro_f1": intervals.macro_f1_labels(len(SENTIMENT_LABELS)),
}
RISK_METRICS: dict[str, intervals.Metric] = {
    "accuracy": intervals.exact_match,
    "macro_f1": intervals.macro_f1_tags,
}


def _intervals(
    metrics: dict[str, intervals.Metric], y: Array, pred: Array
) -> dict[str, list[float]]:
    """95% bootstrap interval of each figure."""
    return {k: list(intervals.interval(m, y, pred)) for k, m in metrics.items()}


def _gains(
    metrics: dict[str, intervals.Metric], y: Array, pred: Array, other: Array
) -> dict[str, list[float]]:
    """Paired 95% interval of each figure's difference from ``other``'s on the same rows."""
    return {k: list(intervals.gain_interval(m, y, pred, other)) for k, m in metrics.items()}


def _comparison(
    metrics: dict[str, intervals.Metric], y: Array, pred: Array, other: Array, who: str
) -> dict[str, Any]:
    """Figures of ``other`` (another model's predictions on the same rows) and our difference."""
    return {
        "model_dir": who,
        **{k: float(m(y, other)) for k, m in metrics.items()},
        "delta": {k: float(m(y, pred) - m(y, other)) for k, m in metrics.items()},
        "delta_ci95": _gains(metrics, y, pred, other),
    }


def _fmt_comparison(cmp: dict[str, Any]) -> str:
    parts = [
        f"{k} {cmp['delta'][k]:+.4f} [{lo:+.3f}, {hi:+.3f}]"
        for k, (lo, hi) in cmp["delta_ci95"].items()
    ]
    return f"   minus {cmp['model_dir']} (paired): " + "  ".join(parts)


def _sentiment_logits(
    scorer: OnnxScorer, pb_texts: list[str], allagree: Array, tw_texts: list[str]
) -> dict[str, Array]:
    pb = scorer.logits(pb_texts)[0]
    return {
        "phrasebank_test": pb,
        "phrasebank_allagree_test": pb[allagree],
        "twitter_valid": scorer.logits(tw_texts)[0],
    }


def _risk_predictions(manifest: Manifest, scorer: OnnxScorer, texts: list[str]) -> Array:
    """0/1 tags per text at the model's own per-tag thresholds (chosen on its validation)."""
    thresholds = np.array([manifest.threshold(t) for t in RISK_TAGS])
    return (calibrate.sigmoid(scorer.logits(texts)[1]) >= thresholds).astype(int)


def _open(
    model_dir: Path, variant: str, threads: int, providers: Sequence[str]
) -> tuple[Manifest, OnnxScorer]:
    manifest = verify_model_dir(model_dir)
    scorer = variant_scorer(model_dir, manifest, variant, threads=threads, providers=providers)
    return manifest, scorer


def evaluate_model_dir(
    model_dir: Path,
    *,
    variant: str = "int8",
    datasets: Path | None = None,
    risk_csv: Path | None = None,
    png_dir: Path | None = None,
    baseline: bool = True,
    threads: int = 2,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    against: Path | None = None,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Evaluate one variant of ``model_dir``; print tables via ``report`` and return figures.

    With ``against``, the same variant of that model directory is scored on the same rows and
    each figure's difference from it is given with a paired interval.
    """
    manifest, scorer = _open(model_dir, variant, threads, providers)
    other = _open(against, variant, threads, providers) if against else None
    recipe = manifest.training.get("recipe", {})
    root = ds.resolve_datasets(datasets or recipe.get("datasets"))
    risk_path = Path(risk_csv or recipe.get("risk_csv") or ds.DEFAULT_RISK_CSV)
    if not risk_path.is_file():
        risk_path = ds.DEFAULT_RISK_CSV
    data = load_eval_data(root, risk_path, use_twitter=bool(recipe.get("use_twitter", True)))
    report(
        f"riskwire eval {model_dir} variant={variant} ({manifest.variants[variant]}) "
        f"model={manifest.name} {manifest.version} temperature={manifest.temperature:.3f}"
        + (
            " bias " + " ".join(f"{k} {v:+.3f}" for k, v in manifest.sentiment_bias.items())
            if manifest.sentiment_bias
            else ""
        )
        + (f" lexical weight {manifest.lexical.weight}" if manifest.lexical else "")
    )
    results: dict[str, Any] = {
        "variant": variant,
        "model": f"{manifest.name} {manifest.version}",
        "lexical_weight": manifest.lexical.weight if manifest.lexical else 0.0,
    }
    base_sent = SentimentBaseline().fit(data.sentiment_train) if baseline else None

    pb_texts = [r.text for r in data.phrasebank_test]
    pb_y = np.array([r.label for r in data.phrasebank_test])
    allagree = np.array([r.agreement == 100 for r in data.phrasebank_test])
    tw_texts = [r.text for r in data.twitter_test]
    tw_y = np.array([r.label for r in data.twitter_test])
    ours = _sentiment_logits(scorer, pb_texts, allagree, tw_texts)
    sets: list[tuple[str, list[str], Array, Array]] = [
        ("phrasebank_test", pb_texts, pb_y, ours["phrasebank_test"]),
        (
            "phrasebank_allagree_test",
            [t for t, a in zip(pb_texts, allagree, strict=True) if a],
            pb_y[allagree],
            ours["phrasebank_allagree_test"],
        ),
        ("twitter_valid", tw_texts, tw_y, ours["twitter_valid"]),
    ]
    reference: dict[str, Array] = {}
    if variant != "fp32" and "fp32" in manifest.variants:
        # How often the shipped variant's label equals the reference graph's, on the same rows.
        ref = variant_scorer(model_dir, manifest, "fp32", threads=threads)
        reference = _sentiment_logits(ref, pb_texts, allagree, tw_texts)
    theirs = _sentiment_logits(other[1], pb_texts, allagree, tw_texts) if other else {}
    for name, texts, y, logits in sets:
        # Labels as the daemon gives them: argmax of the calibrated probabilities (a class bias
        # can move one), for this model, its fp32 reference and the model compared against.
        probs = sentiment_probs(logits, manifest)
        pred = probs.argmax(axis=1)
        rep = sentiment_report(y, pred, probs)
        if name in reference:
            ref_pred = sentiment_probs(reference[name], manifest).argmax(axis=1)
            rep["fp32_argmax_agreement"] = float(np.mean(ref_pred == pred))
            # Accuracy of this variant minus fp32's on the same rows, with a paired interval.
            rep["vs_fp32"] = {
                "accuracy_delta": float(np.mean(pred == y) - np.mean(ref_pred == y)),
                "ci95": list(intervals.gain_interval(intervals.accuracy, y, pred, ref_pred)),
            }
        rep["ece_uncalibrated"] = calibrate.expected_calibration_error(calibrate.softmax(logits), y)
        base_pred = base_sent.predict(texts) if base_sent else None
        base_rep = sentiment_report(y, base_pred) if base_pred is not None else None
        rep["ci95"] = _intervals(SENTIMENT_METRICS, y, pred)
        if base_rep is not None and base_pred is not None:
            rep["baseline"] = {k: base_rep[k] for k in ("accuracy", "macro_f1", "weighted_f1")}
            rep["baseline"]["gain_ci95"] = _gains(SENTIMENT_METRICS, y, pred, base_pred)
        if name in theirs:
            assert other is not None
            their_pred = sentiment_probs(theirs[name], other[0]).argmax(axis=1)
            rep["against"] = _comparison(SENTIMENT_METRICS, y, pred, their_pred, str(against))
        results[name] = rep
        for line in _fmt_sentiment(name, rep, base_rep):
            report(line)
        if "against" in rep:
            report(_fmt_comparison(rep["against"]))
        if png_dir is not None:
            png = save_confusion_png(
                png_dir / f"confusion_{name}_{variant}.png",
                f"{name} ({variant})",
                {"model": rep, "tf-idf + LR": base_rep} if base_rep else {"model": rep},
            )
            rep["png"] = str(png)
            report(f"   confusion matrix saved: {png}")

    risk_texts = [r.text for r in data.risk_test]
    targets = np.array([list(r.tags) for r in data.risk_test])
    risk_pred = _risk_predictions(manifest, scorer, risk_texts)
    risk_rep = risk_report(targets, risk_pred)
    base_risk: dict[str, Any] | None = None
    base_risk_pred: Array | None = None
    if baseline:
        rb = RiskBaseline(len(RISK_TAGS)).fit(data.risk_train_texts, data.risk_train_targets)
        base_risk_pred = rb.predict(risk_texts)
        base_risk = risk_report(targets, base_risk_pred)
    truth = (targets >= 0.5).astype(int)
    risk_rep["ci95"] = _intervals(RISK_METRICS, truth, risk_pred)
    if base_risk is not None and base_risk_pred is not None:
        risk_rep["baseline"] = {
            k: base_risk[k] for k in ("accuracy", "macro_f1", "weighted_f1", "micro_f1")
        }
        risk_rep["baseline"]["gain_ci95"] = _gains(RISK_METRICS, truth, risk_pred, base_risk_pred)
    if other is not None:
        their_risk = _risk_predictions(*other, risk_texts)
        risk_rep["against"] = _comparison(RISK_METRICS, truth, risk_pred, their_risk, str(against))
    results["risk_test"] = risk_rep
    for line in _fmt_risk(risk_rep, base_risk):
        report(line)
    if "against" in risk_rep:
        report(_fmt_comparison(risk_rep["against"]))
    if png_dir is not None:
        png = save_risk_png(
            png_dir / f"confusion_risk_test_{variant}.png",
            f"risk_test ({variant})",
            risk_rep,
            base_risk,
        )
        risk_rep["png"] = str(png)
        report(f"   per-tag confusion saved: {png}")
    return results
