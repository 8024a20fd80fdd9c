"""Score texts with an exported graph in ONNX Runtime (what the daemon ships), no torch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from monitor.errors import ModelError
from monitor.score.lexical import LexicalModel, load_lexical, mix_logits
from monitor.score.manifest import RISK_OUTPUT, SENTIMENT_OUTPUT, Manifest

Logits = np.ndarray[Any, Any]


def pad_ids(seqs: Sequence[Sequence[int]]) -> tuple[Logits, Logits]:
    """(input_ids, attention_mask) int64 arrays, padded with 0 to the longest row."""
    width = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), width), dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = s
        mask[row, : len(s)] = 1
    return ids, mask


class OnnxScorer:
    """Tokenize, pad per batch (rows sorted by length), run, and return logits in input order.

    With ``lexical`` (a model and its weight), the sentiment logits are the graph's mixed with
    the lexical model's probabilities, as the daemon mixes them (monitor.score.lexical).
    """

    def __init__(
        self,
        graph: Path,
        tokenizer: Tokenizer,
        *,
        threads: int = 2,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        lexical: tuple[LexicalModel, float] | None = None,
    ) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(graph), opts, providers=list(providers))
        self.tokenizer = tokenizer
        self.path = graph
        self.lexical = lexical

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> tuple[Logits, Logits]:
        seqs = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        sent: Logits | None = None
        risk: Logits | None = None
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = pad_ids([seqs[i] for i in idx])
            s, r = self.session.run(
                [SENTIMENT_OUTPUT, RISK_OUTPUT], {"input_ids": ids, "attention_mask": mask}
            )
            if sent is None or risk is None:
                sent = np.zeros((len(seqs), s.shape[1]), dtype=np.float32)
                risk = np.zeros((len(seqs), r.shape[1]), dtype=np.float32)
            sent[idx] = s.astype(np.float32)
            risk[idx] = r.astype(np.float32)
        if sent is None or risk is None:
            raise ValueError("no texts to score")
        if self.lexical is not None:
            model, weight = self.lexical
            sent = mix_logits(sent, model.probs(texts), weight)
        return sent, risk


def variant_scorer(
    model_dir: Path,
    manifest: Manifest,
    variant: str,
    *,
    threads: int = 2,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> OnnxScorer:
    """A scorer for ``variant`` of ``model_dir`` (whose ``manifest`` the caller has verified),
    with the directory's own tokenizer (truncation at its max_length is saved in it)."""
    if variant not in manifest.variants:
        raise ModelError(
            f"{model_dir}: no {variant!r} variant (has {', '.join(sorted(manifest.variants))})"
        )
    tok = Tokenizer.from_file(str(model_dir / manifest.tokenizer))
    graph = model_dir / manifest.variants[variant]
    spec = manifest.lexical
    lexical = (
        None
        if spec is None
        else (load_lexical(model_dir / spec.file, manifest.labels.sentiment), spec.weight)
    )
    return OnnxScorer(graph, tok, threads=threads, providers=providers, lexical=lexical)
