"""Self-distillation: the teacher is a verified model directory scored in ONNX Runtime with its
calibrated temperature, and its probabilities are mixed into the sentiment targets only."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from exporters.distill import mix_targets, teacher_probabilities
from exporters.tiny import build_tiny_model_dir
from monitor.errors import ModelError
from monitor.score.manifest import MANIFEST_NAME

TEXTS = ["Bank cuts rates", "Profit warning at Acme", "Shares rise after upgrade", "Q3 in line"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("teacher") / "model", layers=2)


def test_teacher_probabilities_are_distributions_and_name_the_graph(teacher: Path) -> None:
    probs, sha = teacher_probabilities(teacher, TEXTS, threads=1)
    assert probs.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert sha == hashlib.sha256((teacher / "model.onnx").read_bytes()).hexdigest()
    # Each text is scored on its own merits, whatever else is in the batch.
    alone, _ = teacher_probabilities(teacher, TEXTS[2:3], threads=1)
    np.testing.assert_allclose(alone[0], probs[2], atol=1e-5)


def test_teacher_temperature_from_the_manifest_is_applied(teacher: Path, tmp_path: Path) -> None:
    hot = shutil.copytree(teacher, tmp_path / "hot")
    manifest = json.loads((hot / MANIFEST_NAME).read_text())
    manifest["temperature"] = 2.0
    (hot / MANIFEST_NAME).write_text(json.dumps(manifest))
    t1 = json.loads((teacher / MANIFEST_NAME).read_text())["temperature"]
    assert t1 != 2.0
    base, _ = teacher_probabilities(teacher, TEXTS, threads=1)
    soft, _ = teacher_probabilities(hot, TEXTS, threads=1)
    # log p at T=2 is log p at t1 times t1/2, up to a per-row constant.
    want = np.log(base) * t1 / 2.0
    want = np.exp(want - want.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(soft, want, atol=1e-6)


def test_a_tampered_teacher_is_refused(teacher: Path, tmp_path: Path) -> None:
    bad = shutil.copytree(teacher, tmp_path / "bad")
    with (bad / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="model.onnx"):
        teacher_probabilities(bad, TEXTS, threads=1)


def test_mix_targets_blends_sentiment_targets_and_keeps_missing_ones() -> None:
    targets: list[list[float] | None] = [[1.0, 0.0, 0.0], None, [0.0, 0.5, 0.5]]
    probs = np.array([[0.2, 0.6, 0.2], [0.3, 0.3, 0.4], [0.0, 0.0, 1.0]])
    mixed = mix_targets(targets, probs, 0.25)
    assert mixed[1] is None
    np.testing.assert_allclose(mixed[0], [0.8, 0.15, 0.05])  # type: ignore[arg-type]
    np.testing.assert_allclose(mixed[2], [0.0, 0.375, 0.625])  # type: ignore[arg-type]
    assert mix_targets(targets, probs, 0.0) == targets
    np.testing.assert_allclose(mix_targets(targets, probs, 1.0)[2], probs[2])  # type: ignore[arg-type]


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_mix_targets_rejects_alpha_outside_0_1(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        mix_targets([[1.0, 0.0, 0.0]], np.ones((1, 3)) / 3, alpha)


def test_mix_targets_needs_one_teacher_row_per_target() -> None:
    with pytest.raises(ValueError, match="2 teacher rows for 1 targets"):
        mix_targets([[1.0, 0.0, 0.0]], np.ones((2, 3)) / 3, 0.5)
