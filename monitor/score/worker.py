"""The worker loop: raw topic -> scoring pipeline -> scored topic, committing only what is done.

This thread alone touches the consumer and the producer (kafka-python's consumer is not
thread-safe). Each turn it

1. applies a reload that finished loading (swapped in by the pipeline between batches),
2. pauses the consumer when ``queue_size`` items are in hand, resumes it below the low-water mark,
3. polls, decodes (undecodable records go to the DLQ) and submits to the pipeline,
4. produces finished records to the scored topic,
5. every ``commit_interval_ms``: flushes the producer, then commits, per partition, the offset
   below which every record is produced (monitor.score.offsets) — commit is last, always.

On stop it stops polling, finishes the items in hand (bounded by ``drain_timeout_s``), produces,
flushes and commits, then closes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monitor.bus.base import Consumer, Message, Producer, TopicPartition, checkpoint
from monitor.bus.dlq import decode_or_dead_letter
from monitor.errors import BusError, ModelError
from monitor.lag import LagReporter
from monitor.logs import get_logger
from monitor.metrics import CoreMetrics
from monitor.records import NewsItem
from monitor.roles import RoleContext
from monitor.score.config import ScoreConfig
from monitor.score.metrics import ScoreMetrics
from monitor.score.model import LoadedModel, load_model
from monitor.score.offsets import OffsetTracker
from monitor.score.pipeline import Result, ScoringPipeline
from monitor.score.reload import BackgroundLoader, ReloadTrigger

log = get_logger("score.worker")
STAGE = "score"


@dataclass(frozen=True)
class Ref:
    """Where a record came from: what to mark done, and its event time."""

    tp: TopicPartition
    offset: int
    timestamp_ms: int


class Worker:
    name = "worker"

    def __init__(
        self,
        ctx: RoleContext,
        *,
        loader: Callable[[Path], LoadedModel] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.config: ScoreConfig = ctx.config.score
        self.topics = ctx.config.bus.topics
        self.core: CoreMetrics = ctx.metrics
        self.metrics = ScoreMetrics.create(ctx.registry)
        self.clock = clock
        self._load: Callable[[Path], LoadedModel] = loader or (
            lambda path: load_model(path, self.config)
        )
        self._ready = threading.Event()
        self._paused = False
        self._tracker = OffsetTracker()
        self._last_commit = clock()
        self._uncommitted = False
        # Relative to the working directory, like every path of the config.
        self.model_dir = self.config.model_dir
        self._trigger = ReloadTrigger(
            self.model_dir,
            ctx.reload,
            watch_symlink=self.config.watch_symlink,
            interval_s=self.config.watch_interval_s,
            clock=clock,
        )
        self._loader = BackgroundLoader(self._load)

    def ready(self) -> bool:
        return self._ready.is_set()

    # --- lifecycle -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        model = self._initial_model(stop)
        if model is None:
            return
        bus = self.ctx.bus
        consumer = bus.consumer(self.config.group, [self.topics.raw])
        producer = bus.producer()
        pipeline = ScoringPipeline(
            model, self.config, metrics=self.metrics, on_swap=self._swapped
        ).start()
        lag = LagReporter(self.core.consumer_lag, self.config.group, consumer)
        self._ready.set()
        log.info(
            "worker started",
            extra={"group": self.config.group, "topic": self.topics.raw, **self._describe(model)},
        )
        try:
            while not stop.is_set():
                self._check(pipeline)
                self._maybe_reload(pipeline)
                self._backpressure(consumer, pipeline)
                busy = pipeline.in_flight > 0
                msgs = consumer.poll(max_records=self._room(pipeline), timeout=0.0 if busy else 0.1)
                self._accept(msgs, pipeline, producer)
                self._produce(pipeline.collect(timeout=0.005 if busy else 0.0), producer)
                self._maybe_commit(producer, consumer)
                lag.maybe_report()
            self._drain(pipeline, producer, consumer)
        finally:
            self._ready.clear()
            pipeline.close(timeout=1.0)
            self._loader.join(timeout=1.0)
            consumer.close()
            producer.close()
            log.info("worker stopped")

    def _initial_model(self, stop: threading.Event) -> LoadedModel | None:
        last_error = ""
        while not stop.is_set():
            try:
                model = self._load(self.model_dir)
            except ModelError as exc:
                if str(exc) != last_error:
                    log.error(
                        "no usable model yet; not consuming (retrying; SIGHUP retries now)",
                        extra={"path": str(self.model_dir), "error": str(exc)},
                    )
                    last_error = str(exc)
                self.metrics.reloads.labels(outcome="refused").inc()
                deadline = self.clock() + self.config.watch_interval_s
                while not stop.is_set() and self.clock() < deadline:
                    if self.ctx.reload.wait(0.1):
                        self.ctx.reload.clear()
                        break
                continue
            self._serving(model)
            return model
        return None

    def _drain(self, pipeline: ScoringPipeline, producer: Producer, consumer: Consumer) -> None:
        finished = pipeline.close(timeout=self.config.drain_timeout_s)
        self._produce(pipeline.collect(), producer)
        left = pipeline.in_flight
        if not finished or left:
            log.warning(
                "stopping with items unscored; they are not committed and will be re-delivered",
                extra={"items": left},
            )
        self._commit(producer, consumer)

    # --- steps ---------------------------------------------------------------------------------

    def _check(self, pipeline: ScoringPipeline) -> None:
        if pipeline.error is not None:
            raise RuntimeError("a scoring thread crashed") from pipeline.error

    def _room(self, pipeline: ScoringPipeline) -> int:
        return max(
            1, min(self.config.poll_max_records, self.config.queue_size - pipeline.in_flight)
        )

    def _backpressure(self, consumer: Consumer, pipeline: ScoringPipeline) -> None:
        depth = pipeline.in_flight
        self.metrics.queue_depth.set(depth)
        if not self._paused and depth >= self.config.queue_size:
            consumer.pause()
            self._paused = True
            self.metrics.pauses.inc()
            self.metrics.consumer_paused.set(1)
            log.debug("consumer paused: scoring is behind", extra={"queue": depth})
        elif self._paused and depth <= self.config.queue_size * self.config.resume_fraction:
            consumer.resume()
            self._paused = False
            self.metrics.consumer_paused.set(0)

    def _accept(self, msgs: list[Message], pipeline: ScoringPipeline, producer: Producer) -> None:
        for msg in msgs:
            self._tracker.started(msg.tp, msg.offset)
            item = decode_or_dead_letter(
                msg, NewsItem.from_json, producer, STAGE, self.core.dead_letters
            )
            if item is None:
                self._tracker.done(msg.tp, msg.offset)
                self._uncommitted = True
                continue
            pipeline.submit(item, Ref(msg.tp, msg.offset, msg.timestamp_ms))

    def _produce(self, results: list[Result], producer: Producer) -> None:
        for r in results:
            ref: Ref = r.ref
            record = r.record
            producer.produce(self.topics.scored, record.key, record.to_json(), ref.timestamp_ms)
            self._tracker.done(ref.tp, ref.offset)
            self.core.items.labels(stage=STAGE).inc()
            self.core.e2e_latency.labels(to_stage="scored").observe(
                max(0.0, record.timings.fetched_to_scored_ms / 1000.0)
            )
        if results:
            self._uncommitted = True

    def _maybe_commit(self, producer: Producer, consumer: Consumer) -> None:
        if not self._uncommitted:
            return
        if (self.clock() - self._last_commit) * 1000.0 < self.config.commit_interval_ms:
            return
        self._commit(producer, consumer)

    def _commit(self, producer: Producer, consumer: Consumer) -> None:
        offsets = self._tracker.committable()
        owned = consumer.assignment()
        for tp in self._tracker.forget(owned):
            log.info(
                "partition revoked; its uncommitted records go to its new owner",
                extra={"topic": tp.topic, "partition": tp.partition},
            )
        offsets = {tp: off for tp, off in offsets.items() if tp in owned}
        self._last_commit = self.clock()
        self._uncommitted = False
        try:
            if offsets:
                checkpoint(producer, consumer, offsets)
            else:
                producer.flush()
        except BusError as exc:
            self.metrics.commit_errors.inc()
            # Tell a failed flush (records may be lost: stop, be re-delivered) from a failed
            # commit (records are safe, only re-delivery duplicates them: carry on).
            producer.flush()
            log.warning("commit failed; records will be re-delivered", extra={"error": str(exc)})
            return
        self._tracker.mark_committed(offsets)

    # --- reload --------------------------------------------------------------------------------

    def _maybe_reload(self, pipeline: ScoringPipeline) -> None:
        outcome = self._loader.outcome()
        if isinstance(outcome, ModelError):
            self.metrics.reloads.labels(outcome="refused").inc()
            log.error(
                "new model refused; the old one keeps serving",
                extra={"error": str(outcome), **self._describe(pipeline.model)},
            )
        elif outcome is not None:
            if outcome.info == pipeline.model.info and outcome.path == pipeline.model.path:
                self.metrics.reloads.labels(outcome="unchanged").inc()
                log.info("reload: same model, nothing to swap", extra=self._describe(outcome))
            else:
                pipeline.request_swap(outcome)
            self._trigger.serving = outcome.path
        reason = self._trigger.due()
        if reason is not None and self._loader.start(self.model_dir):
            log.info("reloading model", extra={"reason": reason, "path": str(self.model_dir)})
            if reason == "symlink":
                # Do not retry a refused target on every check; wait for the next change.
                self._trigger.serving = self._loader.attempted

    def _swapped(self, old: LoadedModel, new: LoadedModel) -> None:
        self.metrics.reloads.labels(outcome="swapped").inc()
        self._serving(new)

    def _serving(self, model: LoadedModel) -> None:
        self._trigger.serving = model.path
        self.metrics.model_info.info({k: str(v) for k, v in self._describe(model).items()})

    @staticmethod
    def _describe(model: LoadedModel) -> dict[str, str]:
        return {
            "model": model.info.name,
            "version": model.info.version,
            "sha256": model.info.sha256,
            "variant": model.plan.variant,
            "provider": model.provider,
            "path": str(model.path),
        }
