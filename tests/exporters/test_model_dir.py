"""Model directories: the tiny builder's output passes verification; broken ones are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from exporters.tiny import build_tiny_model_dir
from exporters.verify import verify_model_dir
from monitor.errors import ModelError
from monitor.score.manifest import MANIFEST_NAME, RISK_TAGS, SENTIMENT_LABELS


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model", layers=2)


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_tiny_model_dir_verifies_and_scores_every_variant(tiny_dir: Path) -> None:
    manifest = verify_model_dir(tiny_dir)
    assert set(manifest.variants) == {"fp32", "int8", "fp16"}
    assert manifest.labels.sentiment == SENTIMENT_LABELS
    assert manifest.labels.risk == RISK_TAGS
    tok = Tokenizer.from_file(str(tiny_dir / manifest.tokenizer))
    texts = ["Bank cuts rates", "Oil prices fall " * 40]
    enc = tok.encode_batch(texts)
    assert max(len(e.ids) for e in enc) == manifest.max_length  # truncation configured
    width = max(len(e.ids) for e in enc)
    ids = np.array([e.ids + [0] * (width - len(e.ids)) for e in enc], dtype=np.int64)
    mask = np.array([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in enc], dtype=np.int64)
    outs = {}
    for variant, rel in manifest.variants.items():
        session = ort.InferenceSession(str(tiny_dir / rel), providers=["CPUExecutionProvider"])
        sent, risk = session.run(
            ["sentiment_logits", "risk_logits"], {"input_ids": ids, "attention_mask": mask}
        )
        assert sent.shape == (2, 3) and risk.shape == (2, 11)
        assert sent.dtype == np.float32 and risk.dtype == np.float32
        outs[variant] = sent
    assert not np.allclose(outs["fp32"][0], outs["fp32"][1])  # depends on the text
    np.testing.assert_allclose(outs["int8"], outs["fp32"], atol=0.1)
    np.testing.assert_allclose(outs["fp16"], outs["fp32"], atol=0.01)


def test_missing_file_is_named(tiny_dir: Path, tmp_path: Path) -> None:
    broken = _copy(tiny_dir, tmp_path / "m")
    (broken / "model.int8.onnx").unlink()
    with pytest.raises(ModelError, match=r"model\.int8\.onnx: missing"):
        verify_model_dir(broken)


def test_wrong_sha256_is_named(tiny_dir: Path, tmp_path: Path) -> None:
    broken = _copy(tiny_dir, tmp_path / "m")
    with (broken / "tokenizer.json").open("ab") as fh:
        fh.write(b" ")
    with pytest.raises(ModelError, match=r"tokenizer\.json: sha256 mismatch"):
        verify_model_dir(broken)


def test_labels_disagreeing_with_graph_outputs_are_named(tiny_dir: Path, tmp_path: Path) -> None:
    broken = _copy(tiny_dir, tmp_path / "m")
    doc = json.loads((broken / MANIFEST_NAME).read_text())
    doc["labels"]["risk"] = doc["labels"]["risk"][:-1]
    doc["thresholds"].pop("market_stress")
    (broken / MANIFEST_NAME).write_text(json.dumps(doc))
    with pytest.raises(ModelError) as info:
        verify_model_dir(broken)
    message = str(info.value)
    assert "'risk_logits' has width 11" in message and "labels.risk lists 10" in message
    for variant in ("fp32", "int8", "fp16"):  # every failing variant is listed
        assert f"{variant} (" in message


def test_renamed_output_is_named(tiny_dir: Path, tmp_path: Path) -> None:
    broken = _copy(tiny_dir, tmp_path / "m")
    doc = json.loads((broken / MANIFEST_NAME).read_text())
    doc["outputs"] = ["sentiment_logits", "risk_scores"]
    (broken / MANIFEST_NAME).write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"output 'risk_scores' missing from the graph"):
        verify_model_dir(broken)
