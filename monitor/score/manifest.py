"""The model directory contract: ``manifest.json`` written by exporters/, verified by the worker.

A model directory holds ONNX graphs (variants), the tokenizer file and ``manifest.json``. The
daemon loads nothing that the manifest does not list with its sha256, and refuses a directory
whose files, hashes or labels disagree with it (:class:`ModelError` naming the problem).

Layout::

    models/default/
      manifest.json
      model.onnx          fp32, the reference graph
      model.int8.onnx     CPU variant (dynamic int8)
      model.fp16.onnx     CUDA variant
      tokenizer.json      Hugging Face `tokenizers` file
      lexical.npz         optional: bag-of-words sentiment model mixed in (monitor.score.lexical)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitor.errors import ModelError

MANIFEST_FORMAT: Final = "riskwire.model/1"
MANIFEST_NAME = "manifest.json"
SENTIMENT_LABELS = ("negative", "neutral", "positive")
RISK_TAGS = (
    "credit",
    "legal_regulatory",
    "fraud_misconduct",
    "earnings_guidance",
    "corporate_action",
    "management_change",
    "operational",
    "cyber",
    "macro_policy",
    "geopolitical",
    "market_stress",
)
SENTIMENT_OUTPUT = "sentiment_logits"
RISK_OUTPUT = "risk_logits"
Variant = Literal["fp32", "int8", "fp16"]


class Labels(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    sentiment: tuple[str, ...] = SENTIMENT_LABELS
    risk: tuple[str, ...] = RISK_TAGS


class LexicalSpec(BaseModel):
    """A bag-of-words sentiment model whose probabilities are mixed into the graph's."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    file: str = "lexical.npz"
    weight: float = Field(gt=0, lt=1, description="its share of the sentiment probabilities")


class Manifest(BaseModel):
    """``manifest.json``. Paths are relative to the model directory."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())
    format: Literal["riskwire.model/1"] = MANIFEST_FORMAT
    name: str
    version: str
    created_at: str
    base_model: str
    max_length: int = Field(ge=8, le=512)
    labels: Labels = Labels()
    temperature: float = Field(default=1.0, gt=0)
    sentiment_bias: dict[str, float] = Field(
        default_factory=dict,
        description="per sentiment label, added to logits / temperature (missing labels: 0)",
    )
    thresholds: dict[str, float] = Field(default_factory=dict, description="per risk tag")
    inputs: tuple[str, ...] = ("input_ids", "attention_mask")
    outputs: tuple[str, ...] = (SENTIMENT_OUTPUT, RISK_OUTPUT)
    variants: dict[str, str] = Field(description="variant name -> ONNX file")
    tokenizer: str = "tokenizer.json"
    lexical: LexicalSpec | None = None
    files: dict[str, str] = Field(description="every file of the directory -> sha256 hex")
    metrics: dict[str, Any] = Field(default_factory=dict)
    data_fingerprint: str = ""
    packages: dict[str, str] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _listed(self) -> Manifest:
        used = [*self.variants.values(), self.tokenizer]
        for path in used + ([self.lexical.file] if self.lexical else []):
            if path not in self.files:
                raise ValueError(f"{path!r} is used but not listed in 'files' with its sha256")
        unknown = set(self.thresholds) - set(self.labels.risk)
        if unknown:
            raise ValueError(f"thresholds for unknown risk tags: {sorted(unknown)}")
        unknown = set(self.sentiment_bias) - set(self.labels.sentiment)
        if unknown:
            raise ValueError(f"sentiment_bias for unknown sentiment labels: {sorted(unknown)}")
        return self

    def threshold(self, tag: str) -> float:
        return self.thresholds.get(tag, 0.5)

    def bias(self) -> tuple[float, ...]:
        """The sentiment bias in label order (0 for a label it does not name)."""
        return tuple(self.sentiment_bias.get(label, 0.0) for label in self.labels.sentiment)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(model_dir: Path) -> Manifest:
    """Parse ``manifest.json`` (no file checks)."""
    path = model_dir / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{model_dir}: no {MANIFEST_NAME}: not a model directory") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable: {exc}") from exc
    try:
        return Manifest.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ModelError(f"{path}: {problems}") from exc


def verify_files(model_dir: Path, manifest: Manifest) -> None:
    """Check that every listed file exists with its sha256; list every problem, then raise."""
    problems: list[str] = []
    for rel, want in sorted(manifest.files.items()):
        path = model_dir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        got = sha256_file(path)
        if got != want:
            problems.append(f"{rel}: sha256 mismatch (manifest {want[:12]}…, file {got[:12]}…)")
    if problems:
        raise ModelError(f"{model_dir}: model directory is corrupt: " + "; ".join(problems))


def load_manifest(model_dir: str | Path, *, verify: bool = True) -> Manifest:
    """Read and (by default) verify a model directory's manifest and files."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if verify:
        verify_files(model_dir, manifest)
    return manifest


def write_manifest(model_dir: Path, manifest_fields: dict[str, Any]) -> Manifest:
    """Hash every file in ``model_dir`` (except the manifest), validate, and write manifest.json."""
    files = {
        p.relative_to(model_dir).as_posix(): sha256_file(p)
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }
    manifest = Manifest.model_validate({**manifest_fields, "files": files})
    (model_dir / MANIFEST_NAME).write_text(
        json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
    )
    return manifest
