"""Calibration on validation data: sentiment temperature, per-tag risk thresholds, ECE."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def softmax(logits: NDArray[np.floating], temperature: float = 1.0) -> Array:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def sigmoid(logits: NDArray[np.floating]) -> Array:
    out: Array = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    return out


def nll(
    logits: NDArray[np.floating],
    labels: NDArray[np.integer],
    temperature: float,
    groups: NDArray[np.integer] | None = None,
) -> float:
    """Mean negative log-likelihood; with ``groups``, the mean of each group's mean."""
    p = softmax(logits, temperature)
    losses = -np.log(p[np.arange(len(labels)), labels] + 1e-12)
    if groups is None:
        return float(np.mean(losses))
    return float(np.mean([losses[groups == g].mean() for g in np.unique(groups)]))


def expected_calibration_error(
    probs: NDArray[np.floating], labels: NDArray[np.integer], bins: int = 15
) -> float:
    """Top-label ECE with equal-width confidence bins."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def ece_sampling_floor(
    probs: NDArray[np.floating], bins: int = 15, draws: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """ECE a perfectly calibrated model with these confidences would still show: (median, p90).

    Each row is drawn correct with probability equal to its confidence; on a few hundred rows
    the binned ECE of such a model is far from zero, so a measured ECE is read against this.
    """
    conf = np.asarray(probs, dtype=np.float64).max(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    conf_sum = np.bincount(which, weights=conf, minlength=bins)
    rng = np.random.default_rng(seed)
    correct = rng.random((draws, len(conf))) < conf
    hits = np.stack([np.bincount(which, weights=c, minlength=bins) for c in correct])
    ece = np.abs(hits - conf_sum).sum(axis=1) / len(conf)
    return float(np.median(ece)), float(np.percentile(ece, 90))


def fit_temperature(
    logits: NDArray[np.floating],
    labels: NDArray[np.integer],
    groups: NDArray[np.integer] | None = None,
) -> float:
    """The temperature minimising validation NLL (log-spaced grid, then a finer local grid).

    ``groups`` marks each row's validation set so that every set weighs the same: otherwise the
    largest set (Twitter) alone decides the temperature of PhraseBank-like sentences too.
    """
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))
    best = min(grid, key=lambda t: nll(logits, labels, float(t), groups))
    fine = np.linspace(best * 0.93, best * 1.07, 29)
    return float(min(fine, key=lambda t: nll(logits, labels, float(t), groups)))


def f1_at(probs: NDArray[np.floating], target: NDArray[np.floating], threshold: float) -> float:
    pred = probs >= threshold
    truth = target >= 0.5
    tp = float(np.sum(pred & truth))
    fp = float(np.sum(pred & ~truth))
    fn = float(np.sum(~pred & truth))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def fit_thresholds(
    probs: NDArray[np.floating],
    targets: NDArray[np.floating],
    tags: tuple[str, ...],
    *,
    default: float = 0.5,
) -> dict[str, float]:
    """Per tag, the threshold in [0.05, 0.95] with the best validation F1.

    Ties go to the threshold closest to ``default``; tags without a positive validation row keep
    ``default``.
    """
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    out: dict[str, float] = {}
    for j, tag in enumerate(tags):
        if targets[:, j].sum() == 0:
            out[tag] = default
            continue
        scores = [(f1_at(probs[:, j], targets[:, j], float(t)), -abs(t - default), t) for t in grid]
        out[tag] = float(max(scores)[2])
    return out
