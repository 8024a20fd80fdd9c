"""Config section `score:` of the daemon's YAML file: the model, the runtime and the batcher.

Example::

    score:
      model_dir: models/current      # a symlink: retarget it to hot-swap the model
      watch_symlink: true
      variant: auto                  # fp16 on CUDA, int8 on CPU
      max_batch: 0                   # auto: 8 on CPU, 64 on CUDA
      max_wait_ms: 2
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ProviderName = Literal["CUDAExecutionProvider", "CPUExecutionProvider"]


class ScoreConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model_dir: Path = Field(
        default=Path("models/default"),
        description="model directory (manifest.json + ONNX variants); may be a symlink",
    )
    variant: Literal["auto", "fp32", "int8", "fp16"] = Field(
        default="auto", description="auto: fp16 with the CUDA provider, int8 on CPU, else fp32"
    )
    providers: list[ProviderName] | None = Field(
        default=None,
        description="ONNX Runtime providers in order of preference; default: CUDA when "
        "onnxruntime offers it, then CPU",
    )
    inference_threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="batches scored at once, each by its own thread on one shared session; "
        "0 = auto (2 on a multi-core CPU, 1 on CUDA)",
    )
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="ONNX Runtime threads per inference; 0 = CPU cores / inference_threads",
    )
    spin: bool = Field(
        default=False,
        description="let ORT threads spin between batches (lower latency on a dedicated "
        "machine, stolen CPU on a shared one)",
    )
    max_batch: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="most items per inference batch; 0 = auto: 8 on CPU (the least CPU per "
        "item for headlines, as measured), 64 on CUDA",
    )
    max_wait_ms: float = Field(
        default=2.0,
        ge=0.0,
        le=10_000,
        description="longest an item waits for its batch to fill before it is scored anyway "
        "(under load batches fill while the inference threads are busy, so a short wait costs "
        "no throughput; at 100 items/s on 2 cores p50 was 11 ms at 5 ms, 5 ms at 0)",
    )
    queue_size: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="items held between the consumer and the model; above it the consumer "
        "pauses (backpressure)",
    )
    resume_fraction: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="the consumer resumes below this share of queue"
    )
    group: str = Field(default="riskwire-worker", min_length=1, description="consumer group")
    poll_max_records: int = Field(default=500, ge=1, le=10_000)
    commit_interval_ms: float = Field(
        default=200.0,
        ge=0.0,
        le=60_000,
        description="flush + commit at most this often (0: after every batch)",
    )
    watch_symlink: bool = Field(
        default=True, description="reload when model_dir is a symlink and its target changes"
    )
    watch_interval_s: float = Field(default=2.0, gt=0.0, le=3600)
    max_chars: int = Field(
        default=4096,
        ge=64,
        le=1_000_000,
        description="text beyond this is cut before tokenizing (the model sees max_length "
        "tokens anyway); the record is flagged `truncated`",
    )
    min_chars: int = Field(
        default=3, ge=0, description="shorter text (after trimming) is skipped: empty_text"
    )
    max_junk_ratio: float = Field(
        default=0.1,
        gt=0.0,
        le=1.0,
        description="skip text whose share of control/replacement/private-use characters "
        "is above this: binary",
    )
    languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="languages the model was trained on; others get flag `lang_unsupported`",
    )
    other_languages: Literal["score", "skip"] = Field(
        default="score", description="score other languages (flagged) or skip them"
    )
    drain_timeout_s: float = Field(
        default=10.0, gt=0.0, le=600, description="on stop, wait this long for batches in hand"
    )

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> ScoreConfig:
        if self.max_batch and self.queue_size < self.max_batch:
            raise ValueError(
                f"queue_size ({self.queue_size}) must be at least max_batch ({self.max_batch})"
            )
        return self

    def batch_size_for(self, device: str) -> int:
        """``max_batch``, or its automatic value for ``device`` (cpu or cuda)."""
        if self.max_batch:
            return self.max_batch
        return min(self.queue_size, 64 if device == "cuda" else 8)
