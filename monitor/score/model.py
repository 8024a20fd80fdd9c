"""A loaded, verified model: manifest, tokenizer and one ONNX Runtime session.

Loading checks everything the worker relies on before the model may serve: the manifest and the
sha256 of every file (monitor.score.manifest), the sentiment labels the records need, the graph's
inputs and outputs against the manifest, and one probe inference whose output widths must match
the label counts. Any failure is a :class:`ModelError` naming the directory and the problem, so a
broken new model is refused while the old one keeps serving.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from monitor.errors import ModelError
from monitor.records import ModelInfo
from monitor.score.config import ScoreConfig
from monitor.score.lexical import LexicalModel, load_lexical, mix_logits
from monitor.score.manifest import (
    RISK_OUTPUT,
    SENTIMENT_LABELS,
    SENTIMENT_OUTPUT,
    Manifest,
    load_manifest,
)
from monitor.score.runtime import CUDA, RuntimePlan, select_runtime, thread_plan

PROBE_TEXT = "Probe headline: shares rise after results."
SessionFactory = Callable[[str, ort.SessionOptions, Sequence[str]], ort.InferenceSession]


def _default_session(
    path: str, options: ort.SessionOptions, providers: Sequence[str]
) -> ort.InferenceSession:
    return ort.InferenceSession(path, options, providers=list(providers))


def session_options(
    config: ScoreConfig, cpu_count: int | None = None, device: str = "cpu"
) -> ort.SessionOptions:
    """Options measured to be fastest for short-text batches (see `riskwire bench score`)."""
    _, intra = thread_plan(
        inference_threads=config.inference_threads,
        intra_op_threads=config.intra_op_threads,
        cpu_count=cpu_count or os.cpu_count() or 1,
        device=device,
    )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = intra
    opts.inter_op_num_threads = 1
    # Spinning workers burn CPU between batches; tokenization and the bus need it more.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.spin else "0")
    opts.log_severity_level = 3
    return opts


def make_tokenizer(path: Path, max_length: int) -> Tokenizer:
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises plain Exceptions
        raise ModelError(f"{path}: not a tokenizers file: {exc}") from exc
    # Pad per batch (to its longest row), never to a fixed width; cut at the model's length.
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


@dataclass
class LoadedModel:
    """One model ready to serve. ``info`` is what every record it scores carries."""

    path: Path
    manifest: Manifest
    plan: RuntimePlan
    session: ort.InferenceSession
    tokenizer: Tokenizer
    info: ModelInfo
    pad_id: int = 0
    inference_threads: int = 1
    #: Run through IO binding with outputs left on this device (set for CUDA: "cuda").
    io_binding_device: str | None = None
    #: The bag-of-words sentiment model of the manifest's ``lexical`` entry, if it has one.
    lexical: LexicalModel | None = None

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    def infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[Any, Any]:
        """Sentiment and risk logits (float32) for one padded batch."""
        feeds: dict[str, np.ndarray] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.manifest.inputs:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        if self.io_binding_device is not None:
            sent, risk = self._infer_bound(feeds, self.io_binding_device)
        else:
            sent, risk = self.session.run([SENTIMENT_OUTPUT, RISK_OUTPUT], feeds)
        return np.asarray(sent, dtype=np.float32), np.asarray(risk, dtype=np.float32)

    def lexical_probs(self, texts: Sequence[str]) -> np.ndarray | None:
        """The lexical model's probabilities for ``texts`` (None when the model has none)."""
        return None if self.lexical is None else self.lexical.probs(texts)

    def sentiment_logits(self, sent: np.ndarray, lexical: np.ndarray | None) -> np.ndarray:
        """The graph's sentiment logits with the lexical probabilities mixed in, as the
        calibration was fitted (unchanged when the model has no lexical part)."""
        spec = self.manifest.lexical
        if spec is None:
            return sent
        if lexical is None:
            raise ValueError("this model mixes in lexical probabilities; none were given")
        return mix_logits(sent, lexical, spec.weight)

    def _infer_bound(self, feeds: dict[str, np.ndarray], device: str) -> tuple[Any, Any]:
        # IO binding: inputs copied to the GPU once, outputs allocated there by ORT and copied
        # back once, instead of ORT staging every tensor through its own host buffers.
        binding = self.session.io_binding()
        for name, arr in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(arr))
        binding.bind_output(SENTIMENT_OUTPUT, device)
        binding.bind_output(RISK_OUTPUT, device)
        self.session.run_with_iobinding(binding)
        sent, risk = binding.copy_outputs_to_cpu()
        return sent, risk


def _check_graph(
    model_dir: Path, variant_file: str, manifest: Manifest, model: LoadedModel
) -> None:
    where = f"{model_dir / variant_file}"
    inputs = {i.name for i in model.session.get_inputs()}
    missing_in = set(manifest.inputs) - inputs
    extra_in = inputs - set(manifest.inputs)
    if missing_in or extra_in or not {"input_ids", "attention_mask"} <= inputs:
        raise ModelError(
            f"{where}: graph inputs {sorted(inputs)} do not match manifest inputs "
            f"{sorted(manifest.inputs)}"
        )
    outputs = {o.name for o in model.session.get_outputs()}
    for name in (SENTIMENT_OUTPUT, RISK_OUTPUT):
        if name not in outputs:
            raise ModelError(f"{where}: graph has no output {name!r} (outputs: {sorted(outputs)})")
    probe = model.tokenizer.encode(PROBE_TEXT).ids
    ids = np.asarray([probe, probe], dtype=np.int64)
    try:
        sent, risk = model.infer(ids, np.ones_like(ids))
    except Exception as exc:  # ORT's errors are untyped; any failure here refuses the model
        raise ModelError(f"{where}: probe inference failed: {exc}") from exc
    if manifest.lexical is not None:
        lexical = model.lexical_probs([PROBE_TEXT] * 2)
        sent = model.sentiment_logits(sent, lexical)
    want = {
        SENTIMENT_OUTPUT: (sent, len(manifest.labels.sentiment), "labels.sentiment"),
        RISK_OUTPUT: (risk, len(manifest.labels.risk), "labels.risk"),
    }
    for name, (arr, count, key) in want.items():
        if arr.ndim != 2 or arr.shape != (2, count):
            raise ModelError(
                f"{where}: output {name!r} has shape {list(arr.shape)} for a batch of 2, but the "
                f"manifest's {key} lists {count} labels"
            )
        if not np.all(np.isfinite(arr)):
            raise ModelError(f"{where}: output {name!r} is not finite on a probe input")


def load_model(
    model_dir: str | Path,
    config: ScoreConfig,
    *,
    available_providers: Sequence[str] | None = None,
    session_factory: SessionFactory = _default_session,
    cpu_count: int | None = None,
) -> LoadedModel:
    """Load and verify ``model_dir`` (symlinks resolved: the record names the real directory)."""
    given = Path(model_dir)
    try:
        resolved = given.resolve(strict=True)
    except (FileNotFoundError, RuntimeError) as exc:
        raise ModelError(f"{given}: model directory does not exist") from exc
    manifest = load_manifest(resolved, verify=True)
    if set(manifest.labels.sentiment) != set(SENTIMENT_LABELS):
        raise ModelError(
            f"{resolved}: manifest labels.sentiment {list(manifest.labels.sentiment)} must be "
            f"{list(SENTIMENT_LABELS)} in some order"
        )
    available = (
        ort.get_available_providers() if available_providers is None else available_providers
    )
    plan = select_runtime(
        variant=config.variant,
        providers=config.providers,
        available=available,
        variants=list(manifest.variants),
    )
    variant_file = manifest.variants[plan.variant]
    options = session_options(config, cpu_count, plan.device)
    try:
        session = session_factory(str(resolved / variant_file), options, plan.providers)
    except Exception as exc:  # ORT raises untyped errors for unreadable graphs
        raise ModelError(f"{resolved / variant_file}: ONNX Runtime cannot load it: {exc}") from exc
    if plan.providers[0] == CUDA and session.get_providers()[0] != CUDA:
        raise ModelError(
            f"{resolved / variant_file}: the CUDA provider was asked for but the session runs on "
            f"{session.get_providers()[0]} (CUDA libraries missing?)"
        )
    tokenizer = make_tokenizer(resolved / manifest.tokenizer, manifest.max_length)
    pad = tokenizer.token_to_id("[PAD]")
    lexical = (
        None
        if manifest.lexical is None
        else load_lexical(resolved / manifest.lexical.file, manifest.labels.sentiment)
    )
    model = LoadedModel(
        path=resolved,
        manifest=manifest,
        plan=plan,
        session=session,
        tokenizer=tokenizer,
        info=ModelInfo(
            name=manifest.name, version=manifest.version, sha256=manifest.files[variant_file]
        ),
        pad_id=0 if pad is None else pad,
        inference_threads=thread_plan(
            inference_threads=config.inference_threads,
            intra_op_threads=config.intra_op_threads,
            cpu_count=cpu_count or os.cpu_count() or 1,
            device=plan.device,
        )[0],
        io_binding_device="cuda" if plan.device == "cuda" else None,
        lexical=lexical,
    )
    _check_graph(resolved, variant_file, manifest, model)
    return model
