"""A real tiny run: train, export, parity check, quantize, score the int8 graph in ORT."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from exporters.quantize import RECIPES  # noqa: E402

pytestmark = pytest.mark.train
CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from exporters.recipe import TrainConfig
    from exporters.train import save_checkpoint, train

    cfg = TrainConfig(
        layers=2,
        limit_per_source=80,
        epochs=1,
        max_length=24,
        batch_size=16,
        risk_repeat=1,
        evals_per_epoch=1,
        threads=1,
        rdrop_weight=1.0,  # the second dropout pass goes through the real loop
    )
    result = train(cfg, progress=False)
    ckpt = save_checkpoint(result, tmp_path_factory.mktemp("ckpt"))
    return result, ckpt


def test_tiny_run_trains_exports_quantizes_and_scores(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from exporters.pipeline import build_model_dir
    from exporters.verify import verify_model_dir

    result, _ = trained
    assert result.counts["phrasebank_train"] == 80
    assert result.history and result.best["selection"] > 0
    lines: list[str] = []
    out = tmp_path / "model"
    manifest = build_model_dir(
        result,
        out,
        slow_check=True,
        int8_recipes=[RECIPES[0], RECIPES[3]],
        threads=1,
        report=lines.append,
    )
    text = "\n".join(lines)
    assert "-[✓] all values close" in text  # parity checklist, raw and optimized graphs
    assert text.count("-[✓] all values close") == 2
    assert "int8 default" in text and f"int8 {RECIPES[3].name}" in text
    assert set(manifest.variants) == {"fp32", "int8", "fp16"}
    assert manifest.max_length == 24 and manifest.temperature > 0
    assert set(manifest.thresholds) == set(manifest.labels.risk)
    assert manifest.data_fingerprint.startswith("sha256:")
    assert manifest.training["export"]["int8"]["chosen"] in {r.name for r in RECIPES}
    assert "calibration" in manifest.metrics
    verify_model_dir(out)

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    enc = tok.encode_batch(
        ["Moody's cuts Acme to junk", "Acme beats profit forecasts, lifts outlook"]
    )
    width = max(len(e.ids) for e in enc)
    ids = np.array([e.ids + [0] * (width - len(e.ids)) for e in enc], dtype=np.int64)
    mask = np.array([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in enc], dtype=np.int64)
    session = ort.InferenceSession(str(out / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} == {"input_ids", "attention_mask"}
    sent, risk = session.run(
        ["sentiment_logits", "risk_logits"], {"input_ids": ids, "attention_mask": mask}
    )
    assert sent.shape == (2, 3) and risk.shape == (2, 11)
    assert np.isfinite(sent).all() and np.isfinite(risk).all()
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["files"]["model.int8.onnx"]

    # The lexical model, on by default: fitted on the 80 + 80 sentiment rows trained on, hashed,
    # and mixed into what `riskwire eval` and the daemon score (log-probabilities).
    assert manifest.lexical is not None and manifest.lexical.weight == 0.25
    assert doc["files"]["lexical.npz"]
    info = manifest.training["lexical"]
    assert info["rows"] == 160 and sum(info["label_counts"].values()) == 160
    assert info["word_features"] > 0 and info["char_features"] > 0
    from exporters.scoring import variant_scorer

    texts = ["Moody's cuts Acme to junk", "Acme beats profit forecasts, lifts outlook"]
    mixed = variant_scorer(out, manifest, "fp32", threads=1).logits(texts)[0]
    np.testing.assert_allclose(np.exp(mixed).sum(axis=1), 1.0, atol=1e-5)


def test_memory_is_in_every_variant_and_stays_fp32_in_int8(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import onnx
    import onnxruntime as ort

    from exporters.export import sample_inputs
    from exporters.pipeline import build_model_dir
    from exporters.quantize import memory_nodes

    result, _ = trained
    assert result.config.memory_weight == 0  # off by default: the plain graph above
    on = dataclasses.replace(result, config=result.config.model_copy(update={"memory_weight": 0.5}))
    out = tmp_path / "model"
    manifest = build_model_dir(
        on, out, slow_check=False, int8_recipes=[RECIPES[1]], threads=1, report=lambda _l: None
    )
    assert result.model.memory is None  # the trained model is left as training left it
    memory = manifest.training["memory"]
    # the 80 PhraseBank training rows the tiny run trained on, each once
    assert memory["rows"] == 80 and memory["sources"] == ["phrasebank"]
    assert sum(memory["labels"].values()) == 80
    assert set(memory["validation"]) == {"phrasebank", "twitter"}
    for variant in ("model.onnx", "model.int8.onnx", "model.fp16.onnx"):
        proto = onnx.load(str(out / variant))
        names = set(memory_nodes(proto))
        ops = {n.op_type for n in proto.graph.node if n.name in names}
        assert {"TopK", "Gather", "Log"} <= ops, variant
    int8 = onnx.load(str(out / "model.int8.onnx")).graph
    mem = [n for n in int8.node if "/memory/" in n.name]
    assert any(n.op_type == "MatMul" for n in mem)  # the similarity product stays fp32
    assert not any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in mem)
    assert any(n.op_type == "MatMulInteger" for n in int8.node)  # while the encoder is int8

    plain = tmp_path / "plain"
    manifest = build_model_dir(
        result, plain, slow_check=False, int8=False, fp16=False, threads=1, report=lambda _l: None
    )
    assert manifest.training["memory"] is None
    assert not memory_nodes(onnx.load(str(plain / "model.onnx")))
    # Same encoder and heads: the risk output is the same, the sentiment output is the mixture.
    feed = sample_inputs(4, 12, seed=3, vocab=30522)
    with_mem = ort.InferenceSession(str(out / "model.onnx"), providers=CPU).run(None, feed)
    without = ort.InferenceSession(str(plain / "model.onnx"), providers=CPU).run(None, feed)
    np.testing.assert_allclose(with_mem[1], without[1], atol=1e-5)
    assert np.abs(with_mem[0] - without[0]).max() > 1e-3
    np.testing.assert_allclose(np.exp(with_mem[0]).sum(axis=1), 1.0, atol=1e-5)


def test_export_set_adds_the_memory_to_a_trained_checkpoint(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import argparse

    from exporters import commands
    from monitor.score.manifest import load_manifest

    _, ckpt = trained
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "model"
    args = parser.parse_args(
        ["export", "--out", str(out), "--checkpoint", str(ckpt), "--fast-check", "--no-int8"]
        + ["--no-fp16", "--set", "memory_weight=0.4", "--set", "memory_k=5"]
    )
    assert args.func(args) == 0
    manifest = load_manifest(out)
    assert manifest.training["memory"]["weight"] == 0.4
    assert manifest.training["memory"]["k"] == 5
    assert manifest.training["recipe"]["memory_weight"] == 0.4
    assert manifest.training["recipe"]["patience"] == 4  # the checkpoint's own recipe otherwise
    assert manifest.lexical is not None  # the default recipe's lexical model

    bare = tmp_path / "bare"
    args = parser.parse_args(
        ["export", "--out", str(bare), "--checkpoint", str(ckpt), "--fast-check", "--no-int8"]
        + ["--no-fp16", "--set", "lexical_weight=0"]
    )
    assert args.func(args) == 0
    manifest = load_manifest(bare)
    assert manifest.lexical is None and manifest.training["lexical"] is None
    assert "lexical.npz" not in manifest.files


def test_parity_failures_are_listed_with_typed_errors(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from exporters.export import (
        AtolError,
        ExportSpec,
        ShapeError,
        export_onnx,
        torch_reference,
        validate_outputs,
    )

    result, _ = trained
    path = export_onnx(result.model, tmp_path / "m.onnx")
    reference = torch_reference(result.model)

    def nudged(feed):  # type: ignore[no-untyped-def]
        s, r = reference(feed)
        return [s + 1e-2, r]

    with pytest.raises(AtolError) as info:
        validate_outputs(nudged, path, max_length=24, report=lambda _l: None)
    # one failure per fast shape, each naming output, shape and difference
    assert len(info.value.failures) == 2
    assert all("sentiment_logits" in f and "max abs diff" in f for f in info.value.failures)

    def narrow(feed):  # type: ignore[no-untyped-def]
        s, r = reference(feed)
        return [s[:, :2], r]

    with pytest.raises(ShapeError, match=r"sentiment_logits at \(1,8\)"):
        validate_outputs(narrow, path, max_length=24, report=lambda _l: None)

    spec = ExportSpec(outputs=("sentiment_logits", "risk_scores"))
    with pytest.raises(ShapeError, match="risk_scores"):
        validate_outputs(reference, path, spec, max_length=24, report=lambda _l: None)
    assert torch.get_num_threads() >= 1


def test_checkpoint_round_trip_exports_same_logits(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from exporters.export import sample_inputs, torch_reference
    from exporters.train import load_checkpoint

    result, ckpt = trained
    again = load_checkpoint(ckpt)
    feed = sample_inputs(3, 12, seed=1, vocab=30522)
    a = torch_reference(result.model)(feed)
    b = torch_reference(again.model)(feed)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)
