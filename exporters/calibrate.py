"""Calibration on validation data: sentiment temperature (and class bias), risk thresholds, ECE.

Sentiment: either temperature scaling alone, or temperature plus a per-class bias ("vector
scaling" with one shared scale, Guo et al., 2017), ``softmax(logits / T + b)``. The bias corrects
class priors the training mixture shifted (Twitter rows, agreement-level soft targets); it can
move a label, so it is chosen only when it predicts held-out validation rows better: both are
fitted on k-1 folds of the validation rows and scored by NLL on the k-th (:func:`choose_scaling`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from monitor.score.text import calibrated_probs
from monitor.score.text import sigmoid as sigmoid  # re-exported: the one risk-tag sigmoid

Array = NDArray[np.float64]


def softmax(logits: NDArray[np.floating], temperature: float = 1.0) -> Array:
    """Temperature-scaled softmax: the daemon's calibrated probabilities at zero bias."""
    x = np.asarray(logits)
    out: Array = calibrated_probs(x, temperature, (0.0,) * x.shape[1])
    return out


def nll(
    logits: NDArray[np.floating],
    labels: NDArray[np.integer],
    temperature: float,
    groups: NDArray[np.integer] | None = None,
) -> float:
    """Mean negative log-likelihood; with ``groups``, the mean of each group's mean."""
    return scaled_nll(Scaling(temperature, (0.0,) * logits.shape[1]), logits, labels, groups)


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


@dataclass(frozen=True)
class Scaling:
    """``softmax(logits / temperature + bias)``; bias in label order, centred on zero."""

    temperature: float
    bias: tuple[float, ...]

    def probs(self, logits: NDArray[np.floating]) -> Array:
        out: Array = calibrated_probs(np.asarray(logits), self.temperature, self.bias)
        return out


def _row_losses(probs: NDArray[np.floating], labels: NDArray[np.integer]) -> Array:
    out: Array = -np.log(probs[np.arange(len(labels)), labels] + 1e-12)
    return out


def _row_weights(n: int, groups: NDArray[np.integer] | None) -> Array:
    """Weights summing to 1 with every group weighing the same (see fit_temperature)."""
    if groups is None:
        return np.full(n, 1.0 / n)
    w = np.zeros(n)
    names = np.unique(groups)
    for g in names:
        sel = groups == g
        w[sel] = 1.0 / (sel.sum() * len(names))
    return w


def scaled_nll(
    scaling: Scaling,
    logits: NDArray[np.floating],
    labels: NDArray[np.integer],
    groups: NDArray[np.integer] | None = None,
) -> float:
    losses = _row_losses(scaling.probs(logits), labels)
    return float(np.sum(_row_weights(len(labels), groups) * losses))


def fit_scaling(
    logits: NDArray[np.floating],
    labels: NDArray[np.integer],
    groups: NDArray[np.integer] | None = None,
) -> Scaling:
    """Temperature and per-class bias minimising the (group-weighted) validation NLL.

    The NLL is convex in (1/T, b), so L-BFGS from (1, 0) finds the optimum; the last class's
    bias is pinned at 0 during the fit (a constant shift changes nothing), then all are centred.
    """
    x = np.asarray(logits, dtype=np.float64)
    n, k = x.shape
    w = _row_weights(n, groups)
    onehot = np.eye(k)[labels]

    def loss(theta: Array) -> tuple[float, Array]:
        b = np.append(theta[1:], 0.0)
        z = x * theta[0] + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        g = (np.exp(logp) - onehot) * w[:, None]
        grad = np.concatenate([[np.sum(g * x)], g.sum(axis=0)[:-1]])
        return float(-np.sum(w * logp[np.arange(n), labels])), grad

    start = np.concatenate([[1.0], np.zeros(k - 1)])
    bounds = [(1.0 / 8.0, 4.0)] + [(-5.0, 5.0)] * (k - 1)
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    b = np.append(res.x[1:], 0.0)
    return Scaling(float(1.0 / res.x[0]), tuple(float(v) for v in b - b.mean()))


Fitter = Callable[[Array, NDArray[np.integer], NDArray[np.integer]], Scaling]


def choose_scaling(
    logits: NDArray[np.floating],
    labels: NDArray[np.integer],
    groups: NDArray[np.integer],
    *,
    folds: int = 5,
    seed: int = 20261201,
) -> tuple[Scaling, dict[str, Any]]:
    """Temperature alone or temperature + bias, whichever has the lower cross-validated NLL.

    Folds are drawn within each group, so every fold holds the same share of every set. The
    winner is then refitted on every row. Returns it and the figures behind the choice.
    """
    k = logits.shape[1]
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), dtype=int)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        fold[idx] = rng.permutation(len(idx)) % folds

    def temperature_only(x: Array, y: NDArray[np.integer], gr: NDArray[np.integer]) -> Scaling:
        return Scaling(fit_temperature(x, y, gr), (0.0,) * k)

    fitters: dict[str, Fitter] = {"temperature": temperature_only, "temperature_bias": fit_scaling}
    held_out: dict[str, Array] = {}
    for name, fit in fitters.items():
        losses = np.zeros(len(labels))
        for f in range(folds):
            tr, te = fold != f, fold == f
            sc = fit(logits[tr], labels[tr], groups[tr])
            losses[te] = _row_losses(sc.probs(logits[te]), labels[te])
        held_out[name] = losses
    w = _row_weights(len(labels), groups)
    cv = {name: round(float(np.sum(w * losses)), 5) for name, losses in held_out.items()}
    method = min(cv, key=lambda m: (cv[m], m != "temperature"))
    chosen = fitters[method](np.asarray(logits, dtype=np.float64), labels, groups)
    return chosen, {"method": method, "cv_nll": cv, "folds": folds}


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
