"""Self-distillation ("born-again" training, Furlanello et al. 2018): a finished model's
sentiment probabilities on the training rows are mixed into the targets of the next run.

The teacher is a model directory this project built; it is verified the way the daemon checks
one and scored with its fp32 graph in ONNX Runtime, so no teacher weights are loaded in torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from exporters.scoring import variant_scorer
from exporters.verify import verify_model_dir
from monitor.score.text import sentiment_probs


def teacher_probabilities(
    model_dir: Path, texts: Sequence[str], *, threads: int = 2
) -> tuple[NDArray[np.float64], str]:
    """Calibrated sentiment probabilities of ``texts`` under the teacher, and its fingerprint.

    The fingerprint is the sha256 of the teacher's fp32 graph, recorded in the student's
    manifest so that a distilled model names what it learnt from.
    """
    manifest = verify_model_dir(model_dir)
    scorer = variant_scorer(model_dir, manifest, "fp32", threads=threads)
    logits, _ = scorer.logits(list(texts))
    sha = manifest.files[manifest.variants["fp32"]]
    return sentiment_probs(logits, manifest), sha


def mix_targets(
    targets: Sequence[Sequence[float] | None], probs: NDArray[np.floating], alpha: float
) -> list[list[float] | None]:
    """Each sentiment target becomes ``(1 - alpha) * target + alpha * teacher``; None stays None.

    ``probs`` holds one teacher row per target, in the same order.
    """
    if len(probs) != len(targets):
        raise ValueError(f"{len(probs)} teacher rows for {len(targets)} targets")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], not {alpha}")
    return [
        None
        if t is None
        else [(1 - alpha) * a + alpha * float(b) for a, b in zip(t, p, strict=True)]
        for t, p in zip(targets, probs, strict=True)
    ]
