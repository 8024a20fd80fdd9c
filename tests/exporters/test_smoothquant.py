"""SmoothQuant: same function in fp32, closer int8 when one activation channel is an outlier."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from tokenizers import Tokenizer

from exporters.quantize import Int8Recipe, choose_int8, quantize_int8
from exporters.smoothquant import activation_ranges, calibration_feeds, smooth_graph
from exporters.tiny import _WORDS, build_tiny_model_dir
from monitor.score.manifest import RISK_OUTPUT, SENTIMENT_OUTPUT

OUTLIER_CHANNEL = 3
OUTLIER_GAIN = 40.0


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=rng.randint(3, 14))) for _ in range(n)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model", layers=2)


@pytest.fixture(scope="module")
def planted(model_dir: Path) -> Path:
    """The tiny graph with one embedding channel x40 and the weight row that reads it /40.

    The function is unchanged; the first projection's input now has an outlier channel, as this
    encoder's hidden states do.
    """
    model = onnx.load(str(model_dir / "model.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    emb = numpy_helper.to_array(inits["embeddings"]).copy()
    w0 = numpy_helper.to_array(inits["w0"]).copy()
    emb[:, OUTLIER_CHANNEL] *= OUTLIER_GAIN
    w0[OUTLIER_CHANNEL, :] /= OUTLIER_GAIN
    inits["embeddings"].CopyFrom(numpy_helper.from_array(emb, "embeddings"))
    inits["w0"].CopyFrom(numpy_helper.from_array(w0, "w0"))
    path = model_dir / "planted.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


def _run(path: Path, feeds: list[dict[str, Any]]) -> np.ndarray[Any, Any]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = [np.concatenate(session.run([SENTIMENT_OUTPUT, RISK_OUTPUT], f), axis=1) for f in feeds]
    return np.concatenate(outs)


def test_smoothing_keeps_the_function_and_adds_one_mul_per_input(
    planted: Path, tokenizer: Tokenizer, tmp_path: Path
) -> None:
    feeds = calibration_feeds(tokenizer, _texts(64, seed=1))
    out = tmp_path / "smoothed.onnx"
    summary = smooth_graph(planted, out, activation_ranges(planted, feeds), alpha=0.5)
    held_out = calibration_feeds(tokenizer, _texts(40, seed=2), batch_size=8)
    assert np.max(np.abs(_run(planted, held_out) - _run(out, held_out))) <= 1e-4
    muls = [n for n in onnx.load(str(out)).graph.node if n.name.endswith("/smooth")]
    # Two layer projections, and the two heads that read the same pooled vector share one.
    assert len(muls) == 3
    assert summary["projections"] == 4
    assert summary["activation_spread_median_after"] < summary["activation_spread_median_before"]


def test_smoothing_brings_int8_closer_to_fp32_under_an_outlier_channel(
    planted: Path, tokenizer: Tokenizer, tmp_path: Path
) -> None:
    ranges = activation_ranges(planted, calibration_feeds(tokenizer, _texts(64, seed=1)))
    held_out = calibration_feeds(tokenizer, _texts(40, seed=3), batch_size=8)
    plain = Int8Recipe("plain", per_channel=True, op_types=("MatMul",))
    smooth = Int8Recipe("smooth", per_channel=True, op_types=("MatMul",), smooth_alpha=0.5)
    ref = _run(planted, held_out)
    err_plain = np.abs(
        _run(quantize_int8(planted, tmp_path / "plain.onnx", plain), held_out) - ref
    ).mean()
    err_smooth = np.abs(
        _run(quantize_int8(planted, tmp_path / "s.onnx", smooth, ranges), held_out) - ref
    ).mean()
    assert err_smooth < 0.5 * err_plain


def test_a_smoothing_recipe_needs_calibration(planted: Path, tmp_path: Path) -> None:
    recipe = Int8Recipe("needs_data", per_channel=True, smooth_alpha=0.5)
    with pytest.raises(ValueError, match="needs_data needs calibration"):
        quantize_int8(planted, tmp_path / "x.onnx", recipe)
    lines: list[str] = []

    def score(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        return np.eye(3)[[0, 1, 2]].astype(np.float32), np.zeros((3, 11), dtype=np.float32)

    got = choose_int8(
        planted,
        tmp_path / "int8.onnx",
        score,
        recipes=(Int8Recipe("plain", per_channel=True), recipe),
        report=lines.append,
    )
    assert [r["recipe"] for r in got["candidates"]] == ["plain"]
    assert any("needs_data" in line and "no calibration" in line for line in lines)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5])
def test_alpha_outside_the_open_unit_interval_is_refused(
    planted: Path, tokenizer: Tokenizer, tmp_path: Path, alpha: float
) -> None:
    feeds = calibration_feeds(tokenizer, _texts(4, seed=1))
    with pytest.raises(ValueError, match=f"got {alpha}"):
        smooth_graph(planted, tmp_path / "x.onnx", activation_ranges(planted, feeds), alpha=alpha)
