"""SmoothQuant for dynamic int8: move activation outliers into the weights before quantizing.

Dynamic quantization gives each activation tensor one int8 scale for the whole batch. A few
channels of this encoder's hidden states carry values far larger than the rest, so that one
scale leaves the ordinary channels a handful of int8 steps. Dividing channel ``j`` of the input
by ``s_j`` and multiplying row ``j`` of the weight by ``s_j`` computes the same product in exact
arithmetic, while the activation's range shrinks and the weight (quantized per output channel,
and known ahead of time) absorbs it. ``s_j = max|x_j|**alpha / max|w_j|**(1 - alpha)``, with
``max|x_j|`` measured on calibration rows (Xiao et al., "SmoothQuant", ICML 2023).

The encoder is post-LayerNorm: the tensor feeding a projection also feeds a residual branch, so
the division cannot be folded into the LayerNorm before it. It is an explicit ``Mul`` on the
projection's branch only; its cost is an elementwise pass over the activation.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from tokenizers import Tokenizer

from exporters.scoring import pad_ids

Feed = Mapping[str, np.ndarray[Any, Any]]
# The projections SmoothQuant applies to: a 2-D weight initializer as the second input.
SMOOTHABLE_OPS = ("MatMul", "Attention")


def calibration_feeds(
    tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 32
) -> list[dict[str, np.ndarray[Any, Any]]]:
    """The graph's inputs for ``texts``, padded per batch like the daemon pads them."""
    seqs = [e.ids for e in tokenizer.encode_batch(list(texts))]
    feeds = []
    for start in range(0, len(seqs), batch_size):
        ids, mask = pad_ids(seqs[start : start + batch_size])
        feeds.append({"input_ids": ids, "attention_mask": mask})
    return feeds


def smoothable_nodes(
    model: onnx.ModelProto, keep: Callable[[onnx.NodeProto], bool] = lambda _: True
) -> list[onnx.NodeProto]:
    """Projection nodes with a constant 2-D weight that ``keep`` accepts, in graph order."""
    weights = {i.name: i for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type not in SMOOTHABLE_OPS or len(node.input) < 2:
            continue
        w = weights.get(node.input[1])
        if w is not None and len(w.dims) == 2 and keep(node):
            out.append(node)
    return out


def channel_max(graph: Path, tensors: list[str], feeds: Iterable[Feed]) -> dict[str, np.ndarray]:
    """max |x_j| over every position of every calibration batch, for each tensor in ``tensors``."""
    model = onnx.load(str(graph))
    present = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in present:
            model.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="riskwire-smooth-") as tmp:
        probe = Path(tmp) / "probe.onnx"
        onnx.save(model, str(probe))
        opts = ort.SessionOptions()
        # The probed tensors must exist as they are in the file, not fused away.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(probe), opts, providers=["CPUExecutionProvider"])
        for feed in feeds:
            values = session.run(tensors, dict(feed))
            for name, v in zip(tensors, values, strict=True):
                m = np.abs(v.reshape(-1, v.shape[-1])).max(axis=0)
                out[name] = m if name not in out else np.maximum(out[name], m)
    if not out:
        raise ValueError("SmoothQuant needs at least one calibration batch")
    return out


def activation_ranges(graph: Path, feeds: Iterable[Feed]) -> dict[str, np.ndarray]:
    """``channel_max`` of the input of every smoothable projection of ``graph``, in one pass.

    Measured once per graph and shared by every recipe: which projections a recipe smooths only
    selects from this table.
    """
    tensors = list(dict.fromkeys(n.input[0] for n in smoothable_nodes(onnx.load(str(graph)))))
    return channel_max(graph, tensors, feeds)


def smooth_graph(
    src: Path,
    dst: Path,
    ranges: Mapping[str, np.ndarray],
    *,
    alpha: float = 0.5,
    alpha_for: Mapping[str, float] | None = None,
    keep: Callable[[onnx.NodeProto], bool] = lambda _: True,
) -> dict[str, Any]:
    """Write ``src`` with SmoothQuant scales on the projections ``keep`` accepts to ``dst``.

    ``ranges``: per input tensor, max |x_j| on calibration rows (``activation_ranges``).

    The graph computes the same function (up to float rounding). Projections that read the same
    tensor share one scale, from the largest weight row among them. ``alpha_for`` maps a part of
    a node's name to the alpha for that node (the first match wins), e.g. a stronger migration
    for the FFN down-projections, whose GELU inputs have the widest outliers. Returns a summary
    for the manifest: how many projections were smoothed and how much the activation range shrank.
    """
    alpha_for = dict(alpha_for or {})
    for value in (alpha, *alpha_for.values()):
        if not 0.0 < value < 1.0:
            raise ValueError(f"SmoothQuant alpha must be in (0, 1), got {value}")
    model = onnx.load(str(src))
    nodes = smoothable_nodes(model, keep)
    by_input: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        by_input.setdefault(node.input[0], []).append(node)
    if not by_input:
        onnx.save(model, str(dst))
        return {"alpha": alpha, "alpha_for": alpha_for, "projections": 0}
    missing = [t for t in by_input if t not in ranges]
    if missing:
        raise ValueError(f"SmoothQuant: no activation range measured for {missing}")
    weights = {i.name: i for i in model.graph.initializer}
    order = {id(n): k for k, n in enumerate(model.graph.node)}
    inserts: list[tuple[int, onnx.NodeProto]] = []
    spread_before, spread_after = [], []
    for tensor, consumers in by_input.items():
        mats = [numpy_helper.to_array(weights[n.input[1]]) for n in consumers]
        wmax = np.max([np.abs(w).max(axis=1) for w in mats], axis=0)
        a = np.maximum(ranges[tensor], 1e-5)
        strength = next((v for k, v in alpha_for.items() if k in consumers[0].name), alpha)
        scale = (a**strength / np.maximum(wmax, 1e-5) ** (1.0 - alpha)).astype(np.float32)
        scale = np.maximum(scale, 1e-5)
        spread_before.append(float(a.max() / np.median(a)))
        smoothed = a / scale
        spread_after.append(float(smoothed.max() / np.median(smoothed)))
        inv_name = f"{tensor}_smooth_inv"
        out_name = f"{tensor}_smoothed"
        model.graph.initializer.append(numpy_helper.from_array(1.0 / scale, inv_name))
        for node, w in zip(consumers, mats, strict=True):
            new_w = f"{node.input[1]}_smoothed"
            model.graph.initializer.append(
                numpy_helper.from_array((w * scale[:, None]).astype(np.float32), new_w)
            )
            node.input[0] = out_name
            node.input[1] = new_w
        first = min(consumers, key=lambda n: order[id(n)])
        mul = onnx.helper.make_node(
            "Mul", [tensor, inv_name], [out_name], name=f"{first.name}/smooth"
        )
        inserts.append((order[id(first)], mul))
    graph_nodes = list(model.graph.node)
    for index, mul in sorted(inserts, key=lambda t: -t[0]):
        graph_nodes.insert(index, mul)
    del model.graph.node[:]
    model.graph.node.extend(graph_nodes)
    _drop_unused_initializers(model)
    onnx.save(model, str(dst))
    return {
        "alpha": alpha,
        "alpha_for": alpha_for,
        "projections": len(nodes),
        "activation_spread_median_before": round(float(np.median(spread_before)), 1),
        "activation_spread_median_after": round(float(np.median(spread_after)), 1),
    }


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
