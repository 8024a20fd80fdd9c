"""``riskwire eval`` on a model directory, in ONNX Runtime (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from exporters.calibrate import (
    Scaling,
    choose_scaling,
    ece_sampling_floor,
    expected_calibration_error,
    fit_scaling,
    fit_temperature,
    fit_thresholds,
    scaled_nll,
    softmax,
)
from exporters.evaluate import SET_NAMES, risk_report, sentiment_report
from exporters.tiny import build_tiny_model_dir
from monitor.cli import main


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def test_eval_json_has_every_set_and_saves_pngs(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "eval",
            str(tiny_dir),
            "--variant",
            "int8",
            "--json",
            "--no-baseline",
            "--png-dir",
            str(tmp_path / "png"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    doc = json.loads(out[-1])
    for name in SET_NAMES:
        for key in ("accuracy", "macro_f1", "weighted_f1"):
            assert 0.0 <= doc[name][key] <= 1.0
        for key in ("accuracy", "macro_f1"):
            low, high = doc[name]["ci95"][key]
            assert low <= doc[name][key] <= high
    for name in ("phrasebank_test", "twitter_valid"):
        vs = doc[name]["vs_fp32"]
        assert vs["ci95"][0] <= vs["accuracy_delta"] <= vs["ci95"][1]
        # Rows where int8 and fp32 agree score the same for both.
        assert abs(vs["accuracy_delta"]) <= 1 - doc[name]["fp32_argmax_agreement"] + 1e-9
    assert doc["phrasebank_test"]["rows"] == 485
    assert doc["phrasebank_allagree_test"]["rows"] == 226
    assert doc["twitter_valid"]["rows"] == 2388
    assert set(doc["risk_test"]["per_tag"]) >= {"credit", "cyber", "market_stress"}
    assert any("confusion (rows = gold" in line for line in out)
    assert "baseline" not in doc["phrasebank_test"] and not any("tfidf" in line for line in out)
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert "confusion_phrasebank_test_int8.png" in pngs
    assert "confusion_risk_test_int8.png" in pngs


def test_eval_refuses_unknown_variant(tiny_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "m"
    broken.mkdir()
    for p in tiny_dir.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    (broken / "model.onnx").write_bytes(b"not a graph")
    assert main(["eval", str(broken), "--no-baseline", "--no-png"]) == 1


def test_reports_match_hand_counts() -> None:
    y = np.array([0, 1, 2, 2, 1])
    pred = np.array([0, 1, 1, 2, 1])
    rep = sentiment_report(y, pred)
    assert rep["accuracy"] == pytest.approx(0.8)
    assert rep["confusion"] == [[1, 0, 0], [0, 2, 0], [0, 1, 1]]
    assert rep["per_class"]["positive"]["recall"] == pytest.approx(0.5)
    targets = np.zeros((3, 11))
    targets[0, 0] = targets[1, 7] = 1
    preds = np.zeros((3, 11), dtype=int)
    preds[0, 0] = preds[2, 7] = 1
    risk = risk_report(targets, preds)
    assert risk["accuracy"] == pytest.approx(1 / 3)
    assert risk["per_tag"]["credit"]["f1"] == 1.0
    assert risk["per_tag"]["cyber"]["confusion"] == [[1, 1], [1, 0]]


def test_temperature_scaling_reduces_ece_of_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 3000)
    logits = rng.normal(0, 1, (3000, 3))
    logits[np.arange(3000), labels] += 1.0
    hot = logits * 4  # overconfident
    t = fit_temperature(hot, labels)
    assert 3.0 < t < 5.0
    before = expected_calibration_error(softmax(hot), labels)
    after = expected_calibration_error(softmax(hot, t), labels)
    assert after < before / 4


def test_grouped_temperature_weighs_each_validation_set_equally() -> None:
    """A large set overconfident by 4x and a small one by 1.5x: pooled, the large set decides;
    grouped, the fit lands between the two."""
    rng = np.random.default_rng(1)

    def overconfident(n: int, factor: float) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 3, n)
        logits = rng.normal(0, 1, (n, 3))
        logits[np.arange(n), labels] += 1.0
        return logits * factor, labels

    big, big_y = overconfident(4000, 4.0)
    small, small_y = overconfident(400, 1.5)
    logits = np.concatenate([big, small])
    labels = np.concatenate([big_y, small_y])
    groups = np.concatenate([np.zeros(4000, int), np.ones(400, int)])
    pooled = fit_temperature(logits, labels)
    grouped = fit_temperature(logits, labels, groups)
    assert pooled > 3.0
    assert 1.5 < grouped < pooled - 0.5


def test_ece_sampling_floor_brackets_a_calibrated_sample_and_shrinks_with_rows() -> None:
    rng = np.random.default_rng(5)

    def calibrated(n: int) -> tuple[np.ndarray, np.ndarray]:
        conf = rng.uniform(0.4, 1.0, n)
        rest = (1 - conf) / 2
        probs = np.stack([conf, rest, rest], axis=1)
        labels = np.where(rng.random(n) < conf, 0, 1)  # correct exactly as often as confident
        return probs, labels

    probs, labels = calibrated(485)
    median, p90 = ece_sampling_floor(probs)
    assert 0.01 < median < p90 < 0.08
    # Calibrated samples of this size land under the 90th percentile about 9 times in 10.
    below = [expected_calibration_error(*calibrated(485)) <= p90 for _ in range(60)]
    assert 0.75 <= np.mean(below) <= 1.0
    # Overconfidence is well above the floor.
    assert expected_calibration_error(probs, np.ones(485, dtype=int)) > 5 * p90
    big_median, _ = ece_sampling_floor(np.tile(probs, (20, 1)))
    assert big_median < median / 3


def test_thresholds_maximise_validation_f1() -> None:
    probs = np.array([[0.9, 0.2], [0.35, 0.1], [0.3, 0.05], [0.1, 0.02]])
    targets = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
    thr = fit_thresholds(probs, targets, ("a", "b"))
    assert 0.3 < thr["a"] <= 0.35
    assert thr["b"] == 0.5  # no positives: default kept


def test_eval_against_another_model_gives_paired_differences(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = build_tiny_model_dir(tmp_path / "other", seed=1)
    argv = ["eval", str(tiny_dir), "--variant", "fp32", "--json", "--no-baseline", "--no-png"]
    assert main([*argv, "--against", str(other)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    doc = json.loads(out[-1])
    for name in SET_NAMES:
        cmp = doc[name]["against"]
        assert cmp["model_dir"] == str(other)
        for key in ("accuracy", "macro_f1"):
            assert cmp["delta"][key] == pytest.approx(doc[name][key] - cmp[key])
            low, high = cmp["delta_ci95"][key]
            assert low <= cmp["delta"][key] <= high
    assert sum(line.startswith(f"   minus {other} (paired): accuracy") for line in out) == 4
    # Against itself: no difference, and an interval of exactly zero.
    assert main([*argv, "--against", str(tiny_dir)]) == 0
    same = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert same["twitter_valid"]["against"]["delta_ci95"]["accuracy"] == [0.0, 0.0]
    assert same["risk_test"]["against"]["delta"]["macro_f1"] == 0.0


def test_eval_against_a_model_without_the_variant_is_refused(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = build_tiny_model_dir(tmp_path / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    del manifest["variants"]["fp16"]
    (other / "manifest.json").write_text(json.dumps(manifest))
    code = main(
        [
            "eval",
            str(tiny_dir),
            "--variant",
            "fp16",
            "--no-baseline",
            "--no-png",
            "--against",
            str(other),
        ]
    )
    assert code == 1
    assert "no 'fp16' variant" in capsys.readouterr().err


def _draw(n: int, temperature: float, bias: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from softmax(logits / temperature + bias)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, 3))
    z = logits / temperature + bias
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, labels


def test_fit_scaling_recovers_temperature_and_class_bias() -> None:
    bias = np.array([-0.4, 0.5, -0.1])  # centred
    logits, labels = _draw(20_000, 2.0, bias, seed=3)
    sc = fit_scaling(logits, labels)
    assert sc.temperature == pytest.approx(2.0, rel=0.06)
    assert np.allclose(sc.bias, bias, atol=0.06)
    assert sum(sc.bias) == pytest.approx(0.0, abs=1e-9)
    # Temperature alone cannot express the prior shift: its NLL is worse on fresh rows.
    fresh, fresh_y = _draw(20_000, 2.0, bias, seed=4)
    t_only = Scaling(fit_temperature(logits, labels), (0.0, 0.0, 0.0))
    assert scaled_nll(sc, fresh, fresh_y) < scaled_nll(t_only, fresh, fresh_y) - 0.005


def test_choose_scaling_takes_the_bias_only_when_held_out_rows_need_it() -> None:
    groups = np.repeat([0, 1], [1500, 3000])
    shifted = [_draw(1500, 1.5, np.array([-0.5, 0.6, -0.1]), 5), _draw(3000, 1.5, np.zeros(3), 6)]
    logits = np.concatenate([x for x, _ in shifted])
    labels = np.concatenate([y for _, y in shifted])
    sc, info = choose_scaling(logits, labels, groups)
    assert info["method"] == "temperature_bias"
    assert info["cv_nll"]["temperature_bias"] < info["cv_nll"]["temperature"]
    assert sc.bias[1] > 0.1 and sc.bias[0] < -0.1
    # Without any prior shift the bias has nothing to correct: whichever wins, it stays near 0.
    plain_x, plain_y = _draw(4500, 1.5, np.zeros(3), 7)
    sc, info = choose_scaling(plain_x, plain_y, groups)
    assert max(abs(b) for b in sc.bias) < 0.1
    assert sc.temperature == pytest.approx(1.5, rel=0.1)
