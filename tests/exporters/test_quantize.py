"""Which int8 recipe ships: the smallest that clears the agreement bar, else the most faithful."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from exporters.quantize import Int8Recipe, at_decisions, choose_int8, compare
from exporters.tiny import build_tiny_model_dir

ROWS = 200
REF = np.tile(np.eye(3)[[0, 1, 2, 1]], (ROWS // 4, 1)).astype(np.float32)


def _fake_scorer(agreement: dict[str, float]) -> Any:
    """Scores the real quantized file's *name*: the recipe decides how many rows flip."""

    def score(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        sent = REF.copy()
        flips = round((1.0 - agreement.get(path.stem, 1.0)) * ROWS)
        sent[:flips] = np.roll(sent[:flips], 1, axis=1)
        return sent, np.zeros((ROWS, 11), dtype=np.float32)

    return score


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model") / "model.onnx"


RECIPES = (
    Int8Recipe("default"),
    Int8Recipe("per_channel", per_channel=True),
    # MatMuls only: the embedding table stays fp32, by far the largest file here.
    Int8Recipe("matmul_only", per_channel=True, op_types=("MatMul",)),
)


def test_smallest_recipe_at_the_bar_wins_over_a_more_faithful_larger_one(
    fp32: Path, tmp_path: Path
) -> None:
    score = _fake_scorer({"default": 0.95, "per_channel": 0.99, "matmul_only": 1.0})
    got = choose_int8(fp32, tmp_path / "int8.onnx", score, recipes=RECIPES, report=lambda _: None)
    sizes = {r["recipe"]: r["size_bytes"] for r in got["candidates"]}
    assert sizes["matmul_only"] > sizes["per_channel"]
    assert got["chosen"] == "per_channel"
    assert got["bar"] == 0.99
    assert (tmp_path / "int8.onnx").is_file()


def test_below_the_bar_the_most_faithful_recipe_wins(fp32: Path, tmp_path: Path) -> None:
    score = _fake_scorer({"default": 0.90, "per_channel": 0.97, "matmul_only": 0.95})
    got = choose_int8(fp32, tmp_path / "int8.onnx", score, recipes=RECIPES, report=lambda _: None)
    assert got["chosen"] == "per_channel"
    agreements = {r["recipe"]: r["sentiment_argmax_agreement"] for r in got["candidates"]}
    assert agreements == pytest.approx({"default": 0.90, "per_channel": 0.97, "matmul_only": 0.95})


def test_a_recipe_losing_more_than_half_a_point_of_validation_accuracy_is_passed_over(
    fp32: Path, tmp_path: Path
) -> None:
    # Every flipped row was right in fp32: 99% agreement here costs a full point of accuracy.
    score = _fake_scorer({"default": 0.95, "per_channel": 0.99, "matmul_only": 1.0})
    labels = REF.argmax(axis=1)
    got = choose_int8(
        fp32, tmp_path / "int8.onnx", score, labels, recipes=RECIPES, report=lambda _: None
    )
    rows = {r["recipe"]: r for r in got["candidates"]}
    assert rows["per_channel"]["fp32_accuracy"] - rows["per_channel"]["accuracy"] > 0.005
    assert got["chosen"] == "matmul_only"
    assert got["accuracy_drop_bar"] == 0.005


def test_agreement_is_counted_at_the_shipped_decisions_not_the_raw_logits() -> None:
    """Raw argmax and raw risk signs agree; after the calibration bias and a 0.55 threshold
    (what the daemon applies), the two graphs give different labels and tags."""
    outputs = {
        Path("ref"): (np.array([[1.0, 0.9, 0.0]]), np.array([[0.1]])),
        Path("got"): (np.array([[1.0, 0.7, 0.0]]), np.array([[0.3]])),
    }
    raw = compare(outputs[Path("ref")], outputs[Path("got")])
    assert raw["sentiment_argmax_agreement"] == 1.0 and raw["risk_decision_agreement"] == 1.0
    shipped = at_decisions(outputs.__getitem__, 1.0, [0.0, 0.2, 0.0], [0.55])
    moved = compare(shipped(Path("ref")), shipped(Path("got")))
    assert moved["sentiment_argmax_agreement"] == 0.0  # neutral (1.1 > 1.0) against negative
    assert moved["risk_decision_agreement"] == 0.0  # 0.1 < logit(0.55) = 0.2 < 0.3
