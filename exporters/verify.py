"""Check a model directory the way the daemon will: files, hashes, and labels against graphs.

Uses ONNX Runtime only, so it runs without the train extra.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from monitor.errors import ModelError
from monitor.score.lexical import load_lexical
from monitor.score.manifest import RISK_OUTPUT, SENTIMENT_OUTPUT, Manifest, load_manifest


def _graph_problems(path: Path, variant: str, manifest: Manifest) -> list[str]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own untyped errors for unreadable graphs
        return [f"{variant} ({path.name}): ONNX Runtime cannot load it: {exc}"]
    problems: list[str] = []
    inputs = {i.name for i in session.get_inputs()}
    if inputs != set(manifest.inputs):
        problems.append(
            f"{variant} ({path.name}): graph inputs {sorted(inputs)} != manifest inputs "
            f"{sorted(manifest.inputs)}"
        )
    outputs = {o.name: o.shape for o in session.get_outputs()}
    want = {
        SENTIMENT_OUTPUT: ("labels.sentiment", len(manifest.labels.sentiment)),
        RISK_OUTPUT: ("labels.risk", len(manifest.labels.risk)),
    }
    for name in manifest.outputs:
        if name not in outputs:
            problems.append(f"{variant} ({path.name}): output {name!r} missing from the graph")
    for name, (label_key, count) in want.items():
        shape = outputs.get(name)
        if shape is None:
            continue
        width = shape[-1] if shape else None
        if width != count:
            problems.append(
                f"{variant} ({path.name}): output {name!r} has width {width} but manifest "
                f"{label_key} lists {count} labels"
            )
    return problems


def verify_model_dir(model_dir: str | Path) -> Manifest:
    """Load and fully check ``model_dir``; raise :class:`ModelError` listing every problem."""
    model_dir = Path(model_dir)
    manifest = load_manifest(model_dir, verify=True)
    problems: list[str] = []
    for variant, rel in sorted(manifest.variants.items()):
        problems.extend(_graph_problems(model_dir / rel, variant, manifest))
    if manifest.lexical is not None:
        try:
            load_lexical(model_dir / manifest.lexical.file, manifest.labels.sentiment)
        except ModelError as exc:
            problems.append(str(exc))
    if problems:
        raise ModelError(f"{model_dir}: model directory is inconsistent: " + "; ".join(problems))
    return manifest
