"""Model directory loading: verification, refusal of broken directories, provider selection."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from monitor.errors import ModelError
from monitor.score.config import ScoreConfig
from monitor.score.manifest import MANIFEST_NAME, RISK_TAGS
from monitor.score.model import load_model
from monitor.score.runtime import CPU, CUDA, select_runtime, thread_plan
from monitor.score.text import decode_outputs

from .kit import copy_model, rewrite_manifest

CFG = ScoreConfig(intra_op_threads=1)


def test_loads_verified_model_and_names_variant_sha(tiny_model: Path) -> None:
    model = load_model(tiny_model, CFG, available_providers=[CPU])
    manifest = json.loads((tiny_model / MANIFEST_NAME).read_text())
    assert model.plan.variant == "int8"
    assert model.provider == CPU
    assert model.info.version == "1.0.0"
    assert model.info.sha256 == manifest["files"]["model.int8.onnx"]
    ids = np.asarray([model.tokenizer.encode("Shares fall").ids], dtype=np.int64)
    sent, risk = model.infer(ids, np.ones_like(ids))
    assert sent.shape == (1, 3) and risk.shape == (1, len(RISK_TAGS))


def test_tokenizer_pads_per_batch_and_truncates_to_max_length(tiny_model: Path) -> None:
    model = load_model(tiny_model, CFG)
    assert len(model.tokenizer.encode("up").ids) < 8  # no fixed padding to 128
    assert len(model.tokenizer.encode("word " * 500).ids) == model.max_length


def test_symlinked_dir_resolves_to_its_target(tiny_model: Path, tmp_path: Path) -> None:
    link = tmp_path / "current"
    link.symlink_to(tiny_model)
    assert load_model(link, CFG).path == tiny_model.resolve()


def test_refuses_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope", CFG)


def test_refuses_missing_variant_file(tiny_model: Path, tmp_path: Path) -> None:
    broken = copy_model(tiny_model, tmp_path / "m")
    (broken / "model.int8.onnx").unlink()
    with pytest.raises(ModelError, match=r"model\.int8\.onnx: missing"):
        load_model(broken, CFG)


def test_refuses_bad_sha(tiny_model: Path, tmp_path: Path) -> None:
    broken = copy_model(tiny_model, tmp_path / "m")
    with (broken / "model.int8.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="sha256 mismatch"):
        load_model(broken, CFG)


def test_refuses_labels_that_disagree_with_graph_outputs(tiny_model: Path, tmp_path: Path) -> None:
    broken = copy_model(tiny_model, tmp_path / "m")
    rewrite_manifest(
        broken,
        labels={"sentiment": ["negative", "neutral", "positive"], "risk": list(RISK_TAGS[:-1])},
        thresholds={},
    )
    with pytest.raises(ModelError, match=r"'risk_logits' has shape \[2, 11\].*lists 10 labels"):
        load_model(broken, CFG)


def test_refuses_foreign_sentiment_labels(tiny_model: Path, tmp_path: Path) -> None:
    broken = copy_model(tiny_model, tmp_path / "m")
    rewrite_manifest(broken, labels={"sentiment": ["bad", "meh", "good"], "risk": list(RISK_TAGS)})
    with pytest.raises(ModelError, match="labels.sentiment"):
        load_model(broken, CFG)


def test_refuses_graph_that_is_not_onnx(tiny_model: Path, tmp_path: Path) -> None:
    broken = copy_model(tiny_model, tmp_path / "m")
    (broken / "model.int8.onnx").write_bytes(b"not a graph")
    rewrite_manifest(broken)  # hashes now agree: the graph itself must be refused
    with pytest.raises(ModelError, match="ONNX Runtime cannot load it"):
        load_model(broken, CFG)


# --- provider / variant selection (no GPU in CI: the available list is injected) ---------------

VARIANTS = ["fp32", "int8", "fp16"]


def test_cuda_present_picks_cuda_then_cpu_with_fp16() -> None:
    plan = select_runtime(variant="auto", providers=None, available=[CUDA, CPU], variants=VARIANTS)
    assert plan.providers == (CUDA, CPU) and plan.variant == "fp16" and plan.device == "cuda"


def test_cpu_only_picks_int8() -> None:
    plan = select_runtime(variant="auto", providers=None, available=[CPU], variants=VARIANTS)
    assert plan.providers == (CPU,) and plan.variant == "int8"


def test_cuda_without_fp16_variant_falls_back_to_fp32() -> None:
    plan = select_runtime(
        variant="auto", providers=None, available=[CUDA, CPU], variants=["fp32", "int8"]
    )
    assert plan.variant == "fp32" and plan.device == "cuda"


def test_configured_providers_are_filtered_and_cpu_appended() -> None:
    plan = select_runtime(
        variant="auto", providers=[CUDA], available=[CUDA, CPU], variants=VARIANTS
    )
    assert plan.providers == (CUDA, CPU)
    plan = select_runtime(variant="auto", providers=[CUDA, CPU], available=[CPU], variants=VARIANTS)
    assert plan.providers == (CPU,) and plan.variant == "int8"


def test_impossible_choices_say_why() -> None:
    with pytest.raises(ModelError, match="none of the configured providers"):
        select_runtime(variant="auto", providers=[CUDA], available=[CPU], variants=VARIANTS)
    with pytest.raises(ModelError, match="needs the CUDA provider"):
        select_runtime(variant="fp16", providers=None, available=[CPU], variants=VARIANTS)
    with pytest.raises(ModelError, match="lists only"):
        select_runtime(variant="int8", providers=None, available=[CPU], variants=["fp32"])


def test_cuda_requested_but_session_on_cpu_is_refused(tiny_model: Path) -> None:
    # onnxruntime-gpu without working CUDA libraries silently falls back to CPU: refuse that,
    # rather than serve the fp16 graph on CPU at a fraction of the speed.
    asked: list[list[str]] = []

    def fallback_session(
        path: str, opts: ort.SessionOptions, providers: Sequence[str]
    ) -> ort.InferenceSession:
        asked.append(list(providers))
        return ort.InferenceSession(path, opts, providers=[CPU])

    with pytest.raises(ModelError, match="CUDA provider was asked for"):
        load_model(
            tiny_model, CFG, available_providers=[CUDA, CPU], session_factory=fallback_session
        )
    assert asked == [[CUDA, CPU]]


def test_cuda_missing_from_this_onnxruntime_is_refused(tiny_model: Path) -> None:
    with pytest.raises(ModelError, match="CUDAExecutionProvider"):
        load_model(tiny_model, CFG, available_providers=[CUDA, CPU])


def test_thread_plan_splits_cores_between_two_inferences_on_cpu() -> None:
    assert thread_plan(inference_threads=0, intra_op_threads=0, cpu_count=2, device="cpu") == (2, 1)
    assert thread_plan(inference_threads=0, intra_op_threads=0, cpu_count=16, device="cpu") == (
        2,
        8,
    )
    assert thread_plan(inference_threads=0, intra_op_threads=0, cpu_count=1, device="cpu") == (1, 1)
    assert thread_plan(inference_threads=0, intra_op_threads=0, cpu_count=16, device="cuda") == (
        1,
        16,
    )
    assert thread_plan(inference_threads=3, intra_op_threads=2, cpu_count=2, device="cpu") == (3, 2)


def test_auto_batch_size_by_device() -> None:
    assert ScoreConfig().batch_size_for("cpu") == 8
    assert ScoreConfig().batch_size_for("cuda") == 64
    assert ScoreConfig(max_batch=32).batch_size_for("cpu") == 32


def test_io_binding_path_gives_the_same_logits(tiny_model: Path) -> None:
    # The CUDA path runs through IO binding; on CPU the same code runs with outputs bound to cpu.
    model = load_model(tiny_model, CFG)
    ids = np.asarray([model.tokenizer.encode("Bank fined over fraud").ids] * 3, dtype=np.int64)
    plain = model.infer(ids, np.ones_like(ids))
    model.io_binding_device = "cpu"
    bound = model.infer(ids, np.ones_like(ids))
    for a, b in zip(plain, bound, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_refuses_a_sentiment_bias_for_an_unknown_label(tiny_model: Path, tmp_path: Path) -> None:
    broken = copy_model(tiny_model, tmp_path / "m")
    doc = json.loads((broken / MANIFEST_NAME).read_text())
    doc["sentiment_bias"] = {"neutral": 0.2, "bullish": 0.3}  # the manifest is not hashed
    (broken / MANIFEST_NAME).write_text(json.dumps(doc))
    with pytest.raises(
        ModelError, match=r"sentiment_bias for unknown sentiment labels: \['bullish'\]"
    ):
        load_model(broken, CFG)


def test_the_calibration_bias_moves_the_label_the_daemon_gives(
    tiny_model: Path, tmp_path: Path
) -> None:
    """softmax(logits / T + b): what decode_outputs labels with, for every scored item."""
    biased = copy_model(tiny_model, tmp_path / "m")
    rewrite_manifest(biased, temperature=2.0, sentiment_bias={"negative": -0.2, "neutral": 0.3})
    model = load_model(biased, CFG)
    assert model.manifest.bias() == (-0.2, 0.3, 0.0)
    logits = np.array([[1.0, 0.8, 0.0], [0.0, 0.0, 3.0]])
    rows = decode_outputs(logits, np.zeros((2, len(RISK_TAGS))), model.manifest)
    z = logits / 2.0 + np.array([-0.2, 0.3, 0.0])
    want = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert [s.label for s, _ in rows] == ["neutral", "positive"]  # argmax of raw row 0: negative
    for (s, _), p in zip(rows, want, strict=True):
        assert [s.probs[k] for k in ("negative", "neutral", "positive")] == pytest.approx(
            p, abs=1e-6
        )
    # The same manifest without the bias gives the raw argmax back.
    plain = decode_outputs(
        logits, np.zeros((2, len(RISK_TAGS))), load_model(tiny_model, CFG).manifest
    )
    assert plain[0][0].label == "negative"
