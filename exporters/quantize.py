"""int8 (CPU) and fp16 (CUDA) variants of the fp32 graph.

Default ``quantize_dynamic`` settings lose too much on this encoder, so several recipes are
measured against the fp32 graph on validation rows and the best one is kept (see
``choose_int8``). The measurements go into the manifest.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from exporters.smoothquant import Feed, activation_ranges, smooth_graph
from monitor.logs import get_logger
from monitor.score.text import calibrated_logits

log = get_logger("exporters.quantize")


@dataclass(frozen=True)
class Int8Recipe:
    name: str
    per_channel: bool = False
    reduce_range: bool = False
    op_types: tuple[str, ...] | None = None  # None = ORT's default set
    keep_heads_fp32: bool = False
    keep_layers_fp32: tuple[int, ...] = ()  # encoder layers left in fp32
    # Nodes whose name contains one of these stay fp32. "/output/dense/" is the FFN
    # down-projection: its input is the GELU output, whose outliers per-tensor dynamic
    # activation ranges handle worst.
    keep_fp32_if_name_has: tuple[str, ...] = ()
    # SmoothQuant strength on the projections that get quantized (None: off). Needs
    # calibration batches (see exporters/smoothquant.py).
    smooth_alpha: float | None = None
    smooth_alpha_for: tuple[tuple[str, float], ...] = ()  # (name part, alpha) overrides
    extra: dict[str, Any] = field(default_factory=dict)


# Measured on validation rows (sentiment argmax agreement with fp32), 3-epoch model / 6-epoch
# model: default 0.952 / 0.941, per_channel 0.983 / 0.972, + output projections fp32 0.986 / 0.985,
# + embeddings fp32 0.993 / 0.985, output projections + FFN up-projection fp32 - / 0.991 (1.3x
# slower than the output-projections recipe, 1.2x faster than fp32); keeping only the FFN
# up-projections of layers 0-1 (0-2) in fp32: 0.990 (0.993) at 0.9x (0.87x) the speed of the
# output-projections recipe; those of any single layer: 0.980-0.983. The longer-trained model
# has larger activation outliers; which recipe clears the bar is a property of the weights, so
# every build measures them all.
# SmoothQuant (exporters/smoothquant.py), on a 4-epoch model where per_channel reached 0.977 and
# output projections fp32 0.990: every projection int8 with alpha 0.5 / 0.65 / 0.8 / 0.9 / 0.95:
# 0.966 / 0.985 / 0.988 / 0.992 / 0.994 (the FFN down-projections read GELU outputs and need
# almost all of their range moved into the weights); output projections fp32 + alpha 0.5: 0.994;
# FFN down-projections alone fp32 + alpha 0.5: 0.994. A second model of the same recipe: 0.990 /
# 0.993 / 0.983 / 0.992 for every projection int8 at alpha 0.95, FFN down-projections fp32 + 0.5,
# output projections fp32 without / with SmoothQuant. A third (seed 7, trained to 75% of its
# schedule) cleared 99% with none of those (best 0.990 with output projections fp32 +
# SmoothQuant) but did with output projections and FFN up-projections fp32: 0.9935 (46.6 MB),
# kept as the fallback.
_OUTPUT_PROJECTIONS = ("/output/dense/",)
_FFN_DOWN = tuple(f"layer.{i}/output/dense/" for i in range(12))


def _ffn_up(*layers: int) -> tuple[str, ...]:
    """Name parts of the FFN up-projections of ``layers``: the lowest layers matter most."""
    return tuple(f"layer.{i}/intermediate/dense/" for i in layers)


# Argmax agreement with fp32 on validation rows that a recipe must reach to be preferred, and
# the most validation accuracy it may lose against fp32.
AGREEMENT_BAR = 0.99
ACCURACY_DROP_BAR = 0.005
RECIPES: tuple[Int8Recipe, ...] = (
    Int8Recipe("default"),
    Int8Recipe("per_channel", per_channel=True),
    Int8Recipe("per_channel_smooth90", per_channel=True, keep_heads_fp32=True, smooth_alpha=0.9),
    Int8Recipe("per_channel_smooth95", per_channel=True, keep_heads_fp32=True, smooth_alpha=0.95),
    # The lexical mixture (monitor/score/lexical.py) leaves more validation rows near a tie, where
    # small int8 errors flip the label: on the default weights with it, smooth90 fell from 0.9903
    # to 0.9864; keeping the FFN down-projections of any one layer fp32 gave 0.9858-0.9890, of
    # layers 0-1 0.9903 (26.4 MB), of layers 0-2 0.9903 (28.2 MB), of all six 0.9903 (33.5 MB).
    Int8Recipe(
        "per_channel_ffn_down_first2_fp32_smooth90",
        per_channel=True,
        keep_heads_fp32=True,
        keep_fp32_if_name_has=tuple(f"layer.{i}/output/dense/" for i in (0, 1)),
        smooth_alpha=0.9,
    ),
    Int8Recipe(
        "per_channel_ffn_down_fp32_smooth50",
        per_channel=True,
        keep_heads_fp32=True,
        keep_fp32_if_name_has=_FFN_DOWN,
        smooth_alpha=0.5,
    ),
    Int8Recipe(
        "per_channel_out_proj_fp32_smooth50",
        per_channel=True,
        keep_heads_fp32=True,
        keep_fp32_if_name_has=_OUTPUT_PROJECTIONS,
        smooth_alpha=0.5,
    ),
    Int8Recipe(
        "per_channel_out_proj_ffn_up_first2_fp32",
        per_channel=True,
        keep_heads_fp32=True,
        keep_fp32_if_name_has=(*_OUTPUT_PROJECTIONS, *_ffn_up(0, 1)),
    ),
    Int8Recipe(
        "per_channel_out_proj_ffn_fp32",
        per_channel=True,
        keep_heads_fp32=True,
        keep_fp32_if_name_has=(*_OUTPUT_PROJECTIONS, "/intermediate/dense/"),
    ),
)


# The nearest-neighbour memory (exporters/model.py NeighbourVote) ranks training rows by cosine
# similarity; int8 similarities (one scale for the whole key table) would reorder near
# neighbours, so it stays fp32 in the int8 variant. Its cost is one [batch x hidden] x
# [hidden x rows] product.
MEMORY_NODES = "/memory/"


def memory_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the memory's nodes (empty for a graph without one)."""
    return [n.name for n in model.graph.node if MEMORY_NODES in n.name]


def _excluded_nodes(model: onnx.ModelProto, recipe: Int8Recipe) -> list[str]:
    out = memory_nodes(model)
    for node in model.graph.node:
        text = node.name + " " + " ".join(node.input)
        if recipe.keep_heads_fp32 and ("sentiment_head" in text or "risk_head" in text):
            out.append(node.name)
        if any(part in node.name for part in recipe.keep_fp32_if_name_has):
            out.append(node.name)
        for layer in recipe.keep_layers_fp32:
            if f"layer.{layer}/" in text or f"layer.{layer}." in text:
                out.append(node.name)
    return sorted(set(out))


def quantize_int8(
    src: Path,
    dst: Path,
    recipe: Int8Recipe,
    ranges: Mapping[str, np.ndarray[Any, Any]] | None = None,
) -> Path:
    """``ranges``: activation ranges of ``src`` (``activation_ranges``), for SmoothQuant recipes."""
    model = onnx.load(str(src))
    exclude = _excluded_nodes(model, recipe)
    with tempfile.TemporaryDirectory(prefix="riskwire-int8-") as tmp:
        if recipe.smooth_alpha is not None:
            if not ranges:
                raise ValueError(f"int8 recipe {recipe.name} needs calibration (activation ranges)")
            smoothed = Path(tmp) / "smoothed.onnx"
            smooth_graph(
                src,
                smoothed,
                ranges,
                alpha=recipe.smooth_alpha,
                alpha_for=dict(recipe.smooth_alpha_for),
                keep=lambda n: (
                    n.name not in exclude
                    and (recipe.op_types is None or n.op_type in recipe.op_types)
                ),
            )
            src = smoothed
        _quantize_dynamic(src, dst, recipe, exclude)
    return dst


def _quantize_dynamic(src: Path, dst: Path, recipe: Int8Recipe, exclude: list[str]) -> None:
    # ORT logs a pre-processing hint at WARNING for every call; it does not apply to dynamic
    # quantization of an already optimized graph.
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude or None,
            # Fused contrib ops (FastGelu, SkipLayerNormalization) defeat ONNX shape inference;
            # their tensors are float32.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, **recipe.extra},
        )
    finally:
        root.setLevel(previous)


Scorer = Callable[[Path], tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]


def at_decisions(
    score: Scorer, temperature: float, bias: Sequence[float], thresholds: Sequence[float]
) -> Scorer:
    """``score`` moved to where the daemon decides, so that agreement counts shipped labels.

    Sentiment logits become ``logits / temperature + bias`` (a class bias moves the argmax
    boundary); risk logits have each tag's threshold logit subtracted (a tag is on above 0).
    """
    t = np.asarray(thresholds, dtype=np.float64)  # fit_thresholds keeps them in [0.05, 0.95]
    cut = np.log(t / (1.0 - t))

    def scored(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        s, r = score(path)
        return calibrated_logits(s, temperature, bias), r - cut

    return scored


def compare(
    ref: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    got: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    labels: np.ndarray[Any, Any] | None = None,
) -> dict[str, float]:
    s_ref, r_ref = ref
    s_got, r_got = got
    out = {
        "sentiment_argmax_agreement": float(np.mean(s_ref.argmax(1) == s_got.argmax(1))),
        "risk_decision_agreement": float(np.mean((r_ref > 0) == (r_got > 0))),
        "sentiment_max_abs_diff": float(np.max(np.abs(s_ref - s_got))),
    }
    if labels is not None:
        known = labels >= 0  # rows without a sentiment label are marked -1
        out["accuracy"] = float(np.mean(s_got.argmax(1)[known] == labels[known]))
        out["fp32_accuracy"] = float(np.mean(s_ref.argmax(1)[known] == labels[known]))
    return out


def choose_int8(
    src: Path,
    dst: Path,
    score: Scorer,
    labels: np.ndarray[Any, Any] | None = None,
    recipes: Sequence[Int8Recipe] = RECIPES,
    report: Callable[[str], None] = print,
    bar: float = AGREEMENT_BAR,
    calibration: Sequence[Feed] | None = None,
    accuracy_drop_bar: float = ACCURACY_DROP_BAR,
) -> dict[str, Any]:
    """Quantize with each recipe, score validation rows, keep the best at ``dst``.

    Best = the smallest graph (a proxy for the fastest: fewer fp32 MatMuls; sizes within 0.1 MB
    count as equal, and then the more faithful wins) whose sentiment argmax agreement with fp32
    reaches ``bar`` and, given ``labels``, whose accuracy is at most ``accuracy_drop_bar`` below
    fp32's; when none passes, the highest agreement, then risk decision agreement, then the
    smaller file. Returns the table of measurements and the choice.
    """
    ref = score(src)
    smoothing = any(r.smooth_alpha is not None for r in recipes)
    ranges = activation_ranges(src, calibration) if smoothing and calibration else None
    table: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="riskwire-int8-") as tmp:
        for recipe in recipes:
            if recipe.smooth_alpha is not None and not ranges:
                report(f"  int8 {recipe.name:40s} skipped: no calibration batches")
                continue
            path = Path(tmp) / f"{recipe.name}.onnx"
            t0 = time.monotonic()
            quantize_int8(src, path, recipe, ranges)
            got = score(path)
            row = {
                "recipe": recipe.name,
                **compare(ref, got, labels),
                "size_mb": round(path.stat().st_size / 1e6, 1),
                "size_bytes": path.stat().st_size,
                "seconds": round(time.monotonic() - t0, 1),
            }
            table.append(row)
            report(
                f"  int8 {recipe.name:42s} agree={row['sentiment_argmax_agreement']:.4f} "
                f"risk_agree={row['risk_decision_agreement']:.4f} "
                + (
                    f"acc={row['accuracy']:.4f} (fp32 {row['fp32_accuracy']:.4f}) "
                    if labels is not None
                    else ""
                )
                + f"size={row['size_mb']}MB"
            )
        passing = [
            r
            for r in table
            if r["sentiment_argmax_agreement"] >= bar
            and r.get("fp32_accuracy", 0.0) - r.get("accuracy", 0.0) <= accuracy_drop_bar
        ]
        if passing:
            best = min(passing, key=lambda r: (r["size_mb"], -r["sentiment_argmax_agreement"]))
        else:
            best = max(
                table,
                key=lambda r: (
                    round(r["sentiment_argmax_agreement"], 4),
                    round(r["risk_decision_agreement"], 4),
                    -r["size_bytes"],
                ),
            )
        (Path(tmp) / f"{best['recipe']}.onnx").replace(dst)
    log.info("int8 recipe chosen", extra={"recipe": best["recipe"]})
    return {
        "chosen": best["recipe"],
        "bar": bar,
        "accuracy_drop_bar": accuracy_drop_bar,
        "candidates": table,
    }


def convert_fp16(src: Path, dst: Path) -> Path:
    """fp16 weights and compute for the CUDA provider; inputs and logits stay int64 / fp32."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    # The memory's nodes convert too: fp16 keeps cosine similarities to about 5e-4, and its
    # node_block_list writes duplicate Cast nodes for a tensor two blocked nodes read.
    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(dst))
    return dst
