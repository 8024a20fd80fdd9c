"""Export the classifier to ONNX and check the graph against PyTorch, as data.

:class:`ExportSpec` declares inputs, outputs, dynamic axes, opset, tolerance and the shape sets
to check. :func:`validate_outputs` checks names, then shapes, then values on every shape,
collects every failure and raises one typed error (:class:`ShapeError` if any shape or name was
wrong, else :class:`AtolError`). Its log reads like a checklist.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from monitor.errors import ModelError
from monitor.logs import get_logger
from monitor.score.manifest import RISK_OUTPUT, RISK_TAGS, SENTIMENT_LABELS, SENTIMENT_OUTPUT

log = get_logger("exporters.export")


class ExportValidationError(ModelError):
    """The exported graph does not reproduce the PyTorch model. ``failures`` lists each one."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = list(failures)
        super().__init__(
            "ONNX export check failed:\n" + "\n".join(f"  - {f}" for f in self.failures)
        )


class ShapeError(ExportValidationError):
    """Output names or shapes differ from the reference."""


class AtolError(ExportValidationError):
    """Output values differ from the reference by more than the tolerance."""


@dataclass(frozen=True)
class ExportSpec:
    """What the graph must look like and how it is checked."""

    opset: int = 17
    inputs: tuple[str, ...] = ("input_ids", "attention_mask")
    outputs: tuple[str, ...] = (SENTIMENT_OUTPUT, RISK_OUTPUT)
    output_widths: tuple[int, ...] = (len(SENTIMENT_LABELS), len(RISK_TAGS))
    dynamic_axes: dict[str, dict[int, str]] = field(
        default_factory=lambda: {
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            SENTIMENT_OUTPUT: {0: "batch"},
            RISK_OUTPUT: {0: "batch"},
        }
    )
    atol: float = 1e-4
    # (batch, sequence) pairs; the slow set covers long rows and large batches.
    fast_shapes: tuple[tuple[int, int], ...] = ((1, 8), (3, 17))
    slow_shapes: tuple[tuple[int, int], ...] = ((8, 64), (32, 64), (2, 128))
    vocab_size: int = 30522

    def shapes(self, *, slow: bool, max_length: int) -> list[tuple[int, int]]:
        chosen = list(self.fast_shapes) + (list(self.slow_shapes) if slow else [])
        return [(b, min(s, max_length)) for b, s in chosen]


class _ExportWrapper(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out: tuple[torch.Tensor, torch.Tensor] = self.model(input_ids, attention_mask)
        return out


def export_onnx(model: nn.Module, path: Path, spec: ExportSpec = ExportSpec()) -> Path:
    """Trace ``model`` (eval mode) to ``path`` with dynamic batch and sequence axes."""
    model.eval()
    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter: stable for BERT encoders and needs no onnxscript. It warns that
    # it is legacy and about traced shape checks and indexing in transformers; the parity check
    # that follows is what decides whether the graph is right.
    # Eager attention exports the MatMul/Softmax pattern that ORT's optimizer fuses into its
    # Attention op; SDPA exports a pattern it does not recognise. Same maths, checked below.
    encoder: Any = getattr(model, "encoder", None)
    previous = getattr(getattr(encoder, "config", None), "_attn_implementation", None)
    switch = previous not in (None, "eager") and hasattr(encoder, "set_attn_implementation")
    if switch:
        encoder.set_attn_implementation("eager")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _export(model, ids, mask, path, spec)
    finally:
        if switch:
            encoder.set_attn_implementation(previous)
    return path


def _export(
    model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, path: Path, spec: ExportSpec
) -> None:
    torch.onnx.export(
        _ExportWrapper(model),
        (ids, mask),
        str(path),
        input_names=list(spec.inputs),
        output_names=list(spec.outputs),
        dynamic_axes=spec.dynamic_axes,
        opset_version=spec.opset,
        do_constant_folding=True,
        dynamo=False,
    )


def sample_inputs(batch: int, seq: int, seed: int, vocab: int) -> dict[str, np.ndarray[Any, Any]]:
    """Random ids with [CLS]/[SEP] and ragged padding (row i keeps seq - i tokens, at least 2)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    ids[:, 0] = 101
    for i in range(batch):
        keep = max(2, seq - i)
        ids[i, keep - 1] = 102
        ids[i, keep:] = 0
        mask[i, keep:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def cpu_session(path: Path, threads: int = 2, *, optimize: bool = True) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def torch_reference(model: nn.Module) -> Callable[[dict[str, np.ndarray[Any, Any]]], list[Any]]:
    def run(feed: dict[str, np.ndarray[Any, Any]]) -> list[Any]:
        model.eval()
        with torch.no_grad():
            outs = model(
                torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"])
            )
        return [o.numpy() for o in outs]

    return run


def validate_outputs(
    reference: Callable[[dict[str, np.ndarray[Any, Any]]], Sequence[np.ndarray[Any, Any]]],
    onnx_path: Path,
    spec: ExportSpec = ExportSpec(),
    *,
    max_length: int = 64,
    slow: bool = False,
    atol: float | None = None,
    report: Callable[[str], None] | None = None,
) -> list[str]:
    """Compare ``onnx_path`` with ``reference`` on the spec's shape sets; return the checklist.

    Raises :class:`ShapeError` or :class:`AtolError` listing every failure.
    """
    tol = spec.atol if atol is None else atol
    say = report or (lambda line: log.info(line))
    lines: list[str] = []

    def note(line: str) -> None:
        lines.append(line)
        say(line)

    session = cpu_session(onnx_path)
    shape_failures: list[str] = []
    value_failures: list[str] = []
    got_inputs = [i.name for i in session.get_inputs()]
    got_outputs = [o.name for o in session.get_outputs()]
    note(f"Validating ONNX model {onnx_path.name} (atol {tol:g}, {'slow' if slow else 'fast'})")
    if set(got_inputs) != set(spec.inputs):
        shape_failures.append(f"inputs {got_inputs} != expected {list(spec.inputs)}")
        note(f"\t-[x] inputs {got_inputs} do not match {list(spec.inputs)}")
    else:
        note(f"\t-[✓] inputs match ({', '.join(got_inputs)})")
    if set(got_outputs) != set(spec.outputs):
        shape_failures.append(f"outputs {got_outputs} != expected {list(spec.outputs)}")
        note(f"\t-[x] outputs {got_outputs} do not match {list(spec.outputs)}")
        raise ShapeError(shape_failures)
    note(f"\t-[✓] outputs match ({', '.join(got_outputs)})")
    for k, (batch, seq) in enumerate(spec.shapes(slow=slow, max_length=max_length)):
        feed = sample_inputs(batch, seq, seed=k, vocab=spec.vocab_size)
        ref = reference(feed)
        outs = session.run(list(spec.outputs), feed)
        note(f"\t- shape set batch={batch} sequence={seq}")
        for name, width, r, o in zip(spec.outputs, spec.output_widths, ref, outs, strict=True):
            want = (batch, width)
            if tuple(o.shape) != want or tuple(r.shape) != want:
                shape_failures.append(
                    f"{name} at ({batch},{seq}): onnx {tuple(o.shape)}, torch {tuple(r.shape)}, "
                    f"want {want}"
                )
                note(f"\t\t-[x] {name} shape {tuple(o.shape)} != {want}")
                continue
            diff = float(np.max(np.abs(o.astype(np.float64) - r.astype(np.float64))))
            if diff > tol:
                value_failures.append(
                    f"{name} at ({batch},{seq}): max abs diff {diff:.2e} > atol {tol:g}"
                )
                note(f"\t\t-[x] {name} values differ: max diff {diff:.2e} > {tol:g}")
            else:
                note(f"\t\t-[✓] {name} shape {want}, max diff {diff:.2e}")
    if shape_failures:
        raise ShapeError(shape_failures + value_failures)
    if value_failures:
        raise AtolError(value_failures)
    note("\t-[✓] all values close")
    return lines


def optimize_graph(src: Path, dst: Path, *, num_heads: int, hidden_size: int) -> dict[str, Any]:
    """Fuse attention / layer norm / GELU with ORT's transformer optimizer (CPU-portable level).

    Falls back to ORT's session-level optimisation written out with ``optimized_model_filepath``
    when the transformer optimizer is unavailable. Returns what was done, for the manifest.
    """
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError:  # pragma: no cover - ships with onnxruntime
        optimize_model = None
    if optimize_model is not None:
        quiet = logging.getLogger("onnxruntime.transformers")
        previous = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            opt = optimize_model(
                str(src),
                model_type="bert",
                num_heads=num_heads,
                hidden_size=hidden_size,
                opt_level=1,
                use_gpu=False,
            )
        finally:
            quiet.setLevel(previous)
        opt.save_model_to_file(str(dst))
        return {
            "optimizer": "onnxruntime.transformers bert",
            "fused": opt.get_fused_operator_statistics(),
        }
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    return {"optimizer": "onnxruntime session ORT_ENABLE_EXTENDED"}
