"""The scoring path without the bus: text prep -> tokenize -> micro-batch -> infer -> records.

Threads, so that tokenization of the next items overlaps inference of the current batch
(ONNX Runtime and the Rust tokenizer both release the GIL):

- *prep* takes submitted items, decides what text the model sees (monitor.score.text), tokenizes
  them in one ``encode_batch`` call and hands them to the :class:`MicroBatcher`; skipped items go
  straight to the results, flagged ``unscored:<reason>``.
- *infer* (``inference_threads`` of them, on one shared session) takes due batches, pads each
  to its longest row, runs the session and builds the :class:`ScoredItem` records.

Model swaps happen only in an infer thread, between two of its batches: the model of a batch is read
once, so a batch is scored wholly by one model and every record names that model. Items
tokenized by an older model's tokenizer are re-tokenized by the serving model first.

The caller owns bounding: :attr:`in_flight` counts items submitted and not yet collected.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from monitor.logs import get_logger
from monitor.records import NewsItem, ScoredItem, Timings, utc_now
from monitor.score.batcher import MicroBatcher
from monitor.score.config import ScoreConfig
from monitor.score.metrics import ScoreMetrics
from monitor.score.model import LoadedModel
from monitor.score.text import (
    UNSCORED_PREFIX,
    Prepared,
    decode_outputs,
    prepare,
    unscored_sentiment,
)

log = get_logger("score.pipeline")


@dataclass
class Job:
    item: NewsItem
    ref: Any
    prepared: Prepared
    ids: list[int] = field(default_factory=list)
    #: The model's lexical sentiment probabilities for this text, when it mixes them in.
    lexical: np.ndarray | None = None
    tokenized_by: LoadedModel | None = None


@dataclass(frozen=True)
class Result:
    ref: Any
    record: ScoredItem
    skipped: str | None


class ScoringPipeline:
    def __init__(
        self,
        model: LoadedModel,
        config: ScoreConfig,
        *,
        metrics: ScoreMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utc_now,
        on_swap: Callable[[LoadedModel, LoadedModel], None] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.wall = wall
        self.on_swap = on_swap
        self._model = model
        self._next_model: LoadedModel | None = None
        # Fixed at start: a swapped-in model serves on as many threads as the first.
        self.inference_threads = max(1, model.inference_threads)
        self._batcher: MicroBatcher[Job] = MicroBatcher(
            config.batch_size_for(model.plan.device), config.max_wait_ms / 1000.0, clock=clock
        )
        self._inbox: deque[Job] = deque()
        self._inbox_cond = threading.Condition()
        self._results: deque[Result] = deque()
        self._results_cond = threading.Condition()
        self._lock = threading.Lock()
        self._submitted = 0
        self._collected = 0
        self._closing = threading.Event()
        self._prep_done = threading.Event()
        self._threads: list[threading.Thread] = []
        self.error: BaseException | None = None

    # --- control ------------------------------------------------------------------------------

    @property
    def model(self) -> LoadedModel:
        return self._model

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._submitted - self._collected

    def start(self) -> ScoringPipeline:
        loops = [("score-prep", self._prep_loop)]
        loops += [(f"score-infer-{i}", self._infer_loop) for i in range(self.inference_threads)]
        for name, target in loops:
            t = threading.Thread(target=self._guard(target), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                self.error = exc
                log.exception("scoring thread crashed", extra={"thread": target.__name__})
                self._closing.set()
                with self._results_cond:
                    self._results_cond.notify_all()

        return run

    def request_swap(self, model: LoadedModel) -> None:
        """Serve ``model`` from the next batch on (the current batch finishes on the old one)."""
        with self._lock:
            self._next_model = model

    @property
    def swap_pending(self) -> bool:
        with self._lock:
            return self._next_model is not None

    def submit(self, item: NewsItem, ref: Any) -> None:
        if self._closing.is_set():
            raise RuntimeError("submit on a closing pipeline")
        with self._lock:
            self._submitted += 1
        with self._inbox_cond:
            self._inbox.append(Job(item, ref, Prepared("")))
            self._inbox_cond.notify()

    def collect(self, timeout: float = 0.0) -> list[Result]:
        """Finished results (waiting up to ``timeout`` for the first one)."""
        with self._results_cond:
            if not self._results and timeout > 0:
                self._results_cond.wait(timeout)
            out = list(self._results)
            self._results.clear()
        with self._lock:
            self._collected += len(out)
        return out

    def close(self, timeout: float = 10.0) -> bool:
        """Finish everything submitted, then stop the threads. True when all finished in time."""
        self._closing.set()
        with self._inbox_cond:
            self._inbox_cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # --- prep thread --------------------------------------------------------------------------

    def _prep_loop(self) -> None:
        while True:
            with self._inbox_cond:
                while not self._inbox and not self._closing.is_set():
                    self._inbox_cond.wait(0.5)
                jobs = list(self._inbox)
                self._inbox.clear()
            if not jobs and self._closing.is_set():
                break
            self._prepare(jobs)
        self._prep_done.set()
        self._batcher.close()

    def _prepare(self, jobs: list[Job]) -> None:
        model = self._model
        todo: list[Job] = []
        for job in jobs:
            try:
                job.prepared = prepare(job.item, self.config)
            except Exception as exc:  # a bug in prep must not lose the item: produce it unscored
                log.exception("text preparation failed", extra={"item_id": job.item.id})
                job.prepared = Prepared("", (), f"prep_error:{type(exc).__name__}")
            if job.prepared.skip is not None:
                self._emit_unscored(job, model, job.prepared.skip)
            else:
                todo.append(job)
        if not todo:
            return
        self._tokenize(todo, model)
        for job in todo:
            self._batcher.add(job, len(job.ids))

    def _tokenize(self, jobs: list[Job], model: LoadedModel) -> None:
        texts = [j.prepared.text for j in jobs]
        encodings = model.tokenizer.encode_batch(texts)
        # Beside tokenization, on the prep thread: the infer thread only runs the graph.
        lexical = model.lexical_probs(texts)
        for row, (job, enc) in enumerate(zip(jobs, encodings, strict=True)):
            job.ids = enc.ids
            job.lexical = None if lexical is None else lexical[row]
            job.tokenized_by = model

    # --- infer thread -------------------------------------------------------------------------

    def _infer_loop(self) -> None:
        while True:
            self._apply_swap()
            batch = self._batcher.wait_batch(0.05)
            if not batch:
                if self._prep_done.is_set() and len(self._batcher) == 0:
                    break
                continue
            self._score_batch(batch)

    def _apply_swap(self) -> None:
        with self._lock:
            new, self._next_model = self._next_model, None
        if new is None:
            return
        old, self._model = self._model, new
        log.info(
            "model swapped in",
            extra={
                "old": f"{old.info.name}@{old.info.version}",
                "new": f"{new.info.name}@{new.info.version}",
                "path": str(new.path),
            },
        )
        if self.on_swap is not None:
            self.on_swap(old, new)

    def _score_batch(self, batch: list[Job]) -> None:
        model = self._model  # read once: the whole batch is scored by this model
        stale = [j for j in batch if j.tokenized_by is not model]
        if stale:
            self._tokenize(stale, model)
        try:
            self._run(batch, model)
        except Exception:
            # One bad row must not take the batch down with it: retry rows alone.
            log.exception("batch inference failed; retrying items one by one")
            if self.metrics is not None:
                self.metrics.inference_errors.inc()
            for job in batch:
                try:
                    self._run([job], model)
                except Exception as exc:
                    log.exception("item inference failed", extra={"item_id": job.item.id})
                    self._emit_unscored(job, model, f"inference_error:{type(exc).__name__}")

    def _run(self, batch: list[Job], model: LoadedModel) -> None:
        lengths = [max(1, len(j.ids)) for j in batch]
        width = max(lengths)
        ids = np.full((len(batch), width), model.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, job in enumerate(batch):
            n = len(job.ids)
            ids[row, :n] = job.ids
            mask[row, :n] = 1
        t0 = time.perf_counter()
        sent, risk = model.infer(ids, mask)
        seconds = time.perf_counter() - t0
        if model.lexical is not None:
            rows = [j.lexical for j in batch if j.lexical is not None]
            # A row without lexical probabilities makes sentiment_logits raise: the batch is then
            # retried row by row, and that row alone goes out unscored.
            sent = model.sentiment_logits(sent, np.stack(rows) if len(rows) == len(batch) else None)
        decoded = decode_outputs(sent, risk, model.manifest)
        now = self.wall()
        out: list[Result] = []
        for job, (sentiment, tags) in zip(batch, decoded, strict=True):
            record = ScoredItem.from_news(
                self._with_flags(job.item, job.prepared.flags),
                sentiment=sentiment,
                risk=tags,
                model=model.info,
                timings=self._timings(job.item, now, seconds),
            )
            out.append(Result(job.ref, record, None))
        if self.metrics is not None:
            m = self.metrics
            m.inference_seconds.observe(seconds)
            m.batch_size.observe(len(batch))
            m.padding_ratio.observe(1.0 - sum(lengths) / (width * len(batch)))
            for r in out:
                m.scored.labels(label=r.record.sentiment.label).inc()
            for job in batch:
                for flag in job.prepared.flags:
                    m.flagged.labels(flag=flag).inc()
        self._push(out)

    def _emit_unscored(self, job: Job, model: LoadedModel, reason: str) -> None:
        record = ScoredItem.from_news(
            self._with_flags(job.item, (*job.prepared.flags, f"{UNSCORED_PREFIX}{reason}")),
            sentiment=unscored_sentiment(),
            risk=(),
            model=model.info,
            timings=self._timings(job.item, self.wall(), 0.0),
        )
        if self.metrics is not None:
            self.metrics.skipped.labels(reason=reason.split(":")[0]).inc()
        self._push([Result(job.ref, record, reason)])

    @staticmethod
    def _with_flags(item: NewsItem, flags: tuple[str, ...]) -> NewsItem:
        if not flags:
            return item
        merged = tuple(dict.fromkeys((*item.flags, *flags)))
        return item.model_copy(update={"flags": merged})

    @staticmethod
    def _timings(item: NewsItem, now: datetime, seconds: float) -> Timings:
        fetched_ms = (now - item.fetched_at).total_seconds() * 1000.0
        return Timings(
            fetched_to_scored_ms=round(fetched_ms, 3), inference_ms=round(seconds * 1e3, 3)
        )

    def _push(self, results: list[Result]) -> None:
        with self._results_cond:
            self._results.extend(results)
            self._results_cond.notify_all()
