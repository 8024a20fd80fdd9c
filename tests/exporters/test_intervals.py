"""Bootstrap intervals: the vectorised metrics equal scikit-learn's, the intervals hold the
figure and shrink with more rows, and the paired gain interval tells a real gain from none."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from exporters import intervals


def _noisy(y: np.ndarray, right: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(len(y)) < right, y, rng.integers(0, 3, len(y)))


@pytest.fixture
def labels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 3, 500)


def test_vectorised_metrics_equal_sklearn(labels: np.ndarray) -> None:
    pred = _noisy(labels, 0.8, 1)
    assert intervals.accuracy(labels, pred) == pytest.approx(np.mean(labels == pred))
    assert intervals.macro_f1_labels(3)(labels, pred) == pytest.approx(
        f1_score(labels, pred, average="macro")
    )
    # A class neither present nor predicted counts 0, like sklearn with explicit labels.
    assert intervals.macro_f1_labels(4)(labels, pred) == pytest.approx(
        f1_score(labels, pred, average="macro", labels=[0, 1, 2, 3], zero_division=0)
    )
    rng = np.random.default_rng(2)
    truth = (rng.random((120, 6)) < 0.2).astype(int)
    truth[:, 5] = 0  # a tag with no positive row
    tags = np.where(rng.random(truth.shape) < 0.9, truth, 1 - truth)
    assert intervals.macro_f1_tags(truth, tags) == pytest.approx(
        f1_score(truth, tags, average="macro", zero_division=0)
    )
    assert intervals.exact_match(truth, tags) == pytest.approx(np.all(truth == tags, axis=1).mean())


def test_interval_holds_the_figure_and_halves_with_four_times_the_rows(labels: np.ndarray) -> None:
    pred = _noisy(labels, 0.8, 3)
    low, high = intervals.interval(intervals.accuracy, labels, pred)
    assert low < intervals.accuracy(labels, pred) < high
    big = np.tile(labels, 4)
    big_low, big_high = intervals.interval(intervals.accuracy, big, np.tile(pred, 4))
    assert (big_high - big_low) == pytest.approx((high - low) / 2, rel=0.25)
    assert intervals.interval(intervals.accuracy, labels, pred) == (low, high)  # fixed seed


def test_paired_gain_interval_separates_a_real_gain_from_none(labels: np.ndarray) -> None:
    good = _noisy(labels, 0.9, 4)
    worse = _noisy(labels, 0.7, 5)
    low, high = intervals.gain_interval(intervals.accuracy, labels, good, worse)
    assert 0 < low < high
    same = intervals.gain_interval(intervals.accuracy, labels, good, good)
    assert same == (0.0, 0.0)
    # Another model right on 4 rows where this one is wrong and wrong on 4 where it is right:
    # equal accuracy, and the interval straddles zero.
    close = good.copy()
    fixed = np.flatnonzero(good != labels)[:4]
    broken = np.flatnonzero(good == labels)[:4]
    close[fixed] = labels[fixed]
    close[broken] = (labels[broken] + 1) % 3
    low, high = intervals.gain_interval(intervals.accuracy, labels, good, close)
    assert low <= 0 <= high
    # A paired interval sees a consistent edge that separate intervals would hide: better on
    # 8 rows, worse on none, is a gain whose interval stays above zero.
    edge = good.copy()
    eight = np.flatnonzero(good == labels)[:8]
    edge[eight] = (labels[eight] + 1) % 3
    low, _ = intervals.gain_interval(intervals.accuracy, labels, good, edge)
    assert low > 0
