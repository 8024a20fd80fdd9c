"""The scoring worker's metrics, registered on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class ScoreMetrics:
    inference_seconds: Histogram
    batch_size: Histogram
    padding_ratio: Histogram
    queue_depth: Gauge
    consumer_paused: Gauge
    pauses: Counter
    scored: Counter
    skipped: Counter
    flagged: Counter
    inference_errors: Counter
    reloads: Counter
    model_info: Info
    commit_errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ScoreMetrics:
        return cls(
            inference_seconds=Histogram(
                "riskwire_inference_seconds",
                "Wall time of one ONNX Runtime inference (one batch)",
                buckets=INFERENCE_BUCKETS,
                registry=registry,
            ),
            batch_size=Histogram(
                "riskwire_inference_batch_size",
                "Items per inference batch",
                buckets=BATCH_BUCKETS,
                registry=registry,
            ),
            padding_ratio=Histogram(
                "riskwire_score_padding_ratio",
                "Share of a batch's token slots that are padding",
                buckets=RATIO_BUCKETS,
                registry=registry,
            ),
            queue_depth=Gauge(
                "riskwire_score_queue_depth",
                "Items consumed but not yet scored and produced",
                registry=registry,
            ),
            consumer_paused=Gauge(
                "riskwire_score_consumer_paused",
                "1 while the worker's consumer is paused because scoring is behind",
                registry=registry,
            ),
            pauses=Counter(
                "riskwire_score_backpressure_pauses_total",
                "Times the consumer was paused because the queue was full",
                registry=registry,
            ),
            scored=Counter(
                "riskwire_score_items_total",
                "Items scored, by sentiment label (rate() gives items/s by label)",
                ["label"],
                registry=registry,
            ),
            skipped=Counter(
                "riskwire_score_skipped_total",
                "Items produced unscored (flag unscored:<reason>), by reason",
                ["reason"],
                registry=registry,
            ),
            flagged=Counter(
                "riskwire_score_flagged_total",
                "Items scored with a caveat flag (truncated, lang_unsupported), by flag",
                ["flag"],
                registry=registry,
            ),
            inference_errors=Counter(
                "riskwire_score_inference_errors_total",
                "Batches whose inference failed (items retried one by one)",
                registry=registry,
            ),
            reloads=Counter(
                "riskwire_score_model_reloads_total",
                "Model reload attempts, by outcome (swapped, refused, unchanged)",
                ["outcome"],
                registry=registry,
            ),
            model_info=Info(
                "riskwire_score_model",
                "The model serving now: name, version, sha256, variant, provider",
                registry=registry,
            ),
            commit_errors=Counter(
                "riskwire_score_commit_errors_total",
                "Flush or commit failures (the batch is re-delivered)",
                registry=registry,
            ),
        )
