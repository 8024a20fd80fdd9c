"""The replay driver: records in -> event-time order -> the worker's scoring path -> the rules.

Event time
    The alerter's engine keeps windows in event time (``published_at``) and drops an item older
    than its watermark minus ``allowed_lateness``. Live, records arrive roughly in event order;
    a replay must feed them in that order too, or it would count as late what was merely read
    out of order. So records pass through :class:`EventOrder` first: with ``capacity=None`` every
    record is held and sorted (the default for files, which are finite and read fast); with a
    capacity, a heap of that many records releases the oldest whenever it is full (the default
    for a bus range, whose partitions are each in rough event order). A record released after a
    newer one was already released is counted as ``out_of_order``; the engine still sees it, and
    it is late only if it is later than the rule allows, exactly as live.

Scoring
    The same code as the worker: ``monitor.score.model.load_model`` (tokenizer, verified ONNX
    Runtime session) and ``monitor.score.pipeline.ScoringPipeline`` (text prep, length-grouped
    micro-batching). The pipeline returns results in batch order, not submission order, so each
    record carries a sequence number and results are released in sequence (event) order.

Rules
    ``monitor.alerts.engine.Engine`` with no state store: nothing is loaded from or saved to the
    live outbox, no route, no receiver, no producer. Alerts go to the writer only; a replay
    cannot notify a desk.

Warm-up
    Windows and z-score baselines start empty, so a rule with a 7-day baseline cannot fire in
    the first week of a replay. With ``emit_from`` (``--warmup``), records before it are scored
    and fed to the rules, but neither they nor the alerts they raise are written.

Stopping
    ``stop`` (Ctrl-C) ends reading; the records already in the scoring pipeline are finished and
    written, those still waiting in the reorder buffer are counted as ``dropped_on_stop``, and
    the writers are flushed and closed.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from monitor.alerts.config import _AlertsDoc
from monitor.alerts.engine import Engine
from monitor.logs import get_logger
from monitor.records import Alert, NewsItem, ScoredItem, rfc3339
from monitor.replay.errors import ReplayError
from monitor.replay.readers import Read, Skipped
from monitor.replay.report import AlertKey, LaneReport, ReplayReport
from monitor.replay.writers import ReplayWriter
from monitor.score.config import ScoreConfig
from monitor.score.model import LoadedModel
from monitor.score.pipeline import ScoringPipeline
from monitor.score.text import UNSCORED_PREFIX

log = get_logger("replay.driver")
MAX_ERRORS_SHOWN = 5


class EventOrder:
    """Releases records in ``published_at`` order: fully sorted, or within a bounded heap."""

    def __init__(self, capacity: int | None) -> None:
        if capacity is not None and capacity < 1:
            raise ReplayError(f"reorder buffer must hold at least 1 record, got {capacity}")
        self.capacity = capacity
        self._heap: list[tuple[float, int, NewsItem]] = []
        self._seq = 0
        self._last = float("-inf")
        self.out_of_order = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: NewsItem) -> list[NewsItem]:
        heapq.heappush(self._heap, (item.published_at.timestamp(), self._seq, item))
        self._seq += 1
        if self.capacity is None or len(self._heap) <= self.capacity:
            return []
        return [self.pop()]

    def pop(self) -> NewsItem:
        """The oldest record held (at the end of the input, whatever the capacity)."""
        ts, _, item = heapq.heappop(self._heap)
        if ts < self._last:
            self.out_of_order += 1
        self._last = max(self._last, ts)
        return item


def every_tag(model: LoadedModel) -> tuple[LoadedModel, dict[str, float]]:
    """``model`` with a decoder that keeps every risk tag, and the model's real thresholds.

    The worker keeps only the tags at or above their calibrated threshold; an analyst wants the
    probability of every tag. Same session, same tokenizer: only the manifest the decoder reads
    has its thresholds at 0. :func:`as_live` then restores exactly what the worker would emit.
    """
    real = {t: model.manifest.threshold(t) for t in model.manifest.labels.risk}
    opened = model.manifest.model_copy(update={"thresholds": dict.fromkeys(real, 0.0)})
    return dataclasses.replace(model, manifest=opened), real


def as_live(rec: ScoredItem, thresholds: dict[str, float]) -> ScoredItem:
    """The record the worker would have produced: tags below their threshold removed."""
    kept = tuple(r for r in rec.risk if r.p >= thresholds.get(r.tag, 0.5))
    return rec if len(kept) == len(rec.risk) else rec.model_copy(update={"risk": kept})


class Scorer:
    """One model's scoring pipeline, with results handed back in submission order."""

    def __init__(self, model: LoadedModel, config: ScoreConfig) -> None:
        self.model = model
        view, self.thresholds = every_tag(model)
        self.pipeline = ScoringPipeline(view, config).start()
        self._done: dict[int, ScoredItem] = {}
        self._next = 0
        self._submitted = 0

    @property
    def in_flight(self) -> int:
        return self._submitted - self._next

    def submit(self, seq: int, item: NewsItem) -> None:
        self.pipeline.submit(item, seq)
        self._submitted += 1

    def ready(self, timeout: float = 0.0) -> list[tuple[int, ScoredItem]]:
        if self.pipeline.error is not None:
            raise ReplayError(f"scoring failed: {self.pipeline.error!r}") from self.pipeline.error
        for r in self.pipeline.collect(timeout):
            self._done[int(r.ref)] = r.record
        out = []
        while self._next in self._done:
            out.append((self._next, self._done.pop(self._next)))
            self._next += 1
        return out

    def finish(self, timeout: float) -> list[tuple[int, ScoredItem]]:
        self.pipeline.close(timeout)
        return self.ready()


@dataclass
class Lane:
    """One model's path: scorer -> engine -> writer, with what it counted."""

    scorer: Scorer
    engine: Engine
    writer: ReplayWriter
    labels: Counter[str] = field(default_factory=Counter)
    unscored: Counter[str] = field(default_factory=Counter)
    alerts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    firing: dict[AlertKey, str] = field(default_factory=dict)
    scored: int = 0
    emit_from: datetime | None = None
    warmup: int = 0
    warmup_alerts: int = 0

    def handle(self, rec: ScoredItem) -> list[Alert]:
        live = as_live(rec, self.scorer.thresholds)
        if self.emit_from is not None and rec.published_at < self.emit_from:
            # Warm-up: the rules' windows and baselines fill, nothing is written or counted.
            self.warmup += 1
            self.warmup_alerts += len(self.engine.process(live))
            return []
        reason = next((f for f in rec.flags if f.startswith(UNSCORED_PREFIX)), None)
        if reason is None:
            self.scored += 1
            self.labels[rec.sentiment.label] += 1
        else:
            self.unscored[reason[len(UNSCORED_PREFIX) :].split(":")[0]] += 1
        self.writer.item(rec, live)
        alerts = self.engine.process(live)
        for a in alerts:
            self.writer.alert(a)
            self.alerts[(a.rule, a.severity, a.status)] += 1
            if a.status == "firing":
                key = a.entity or str(a.explain.get("group_key") or a.fingerprint)
                self.firing.setdefault(AlertKey(a.rule, key), rfc3339(a.starts_at))
        return alerts

    def report(self) -> LaneReport:
        m = self.scorer.model
        return LaneReport(
            model=f"{m.info.name}@{m.info.version}",
            model_path=str(m.path),
            variant=m.plan.variant,
            provider=m.provider,
            scored=self.scored,
            unscored=dict(self.unscored),
            labels=dict(self.labels),
            alerts=dict(self.alerts),
            late=dict(self.engine.stats.late),
            outputs=[str(p) for p in self.writer.paths],
            firing=dict(self.firing),
            warmup=self.warmup,
            warmup_alerts=self.warmup_alerts,
        )


Progress = Callable[[ReplayReport], None]


class Replay:
    """Drives one replay. ``lanes[0]`` is the model under test, ``lanes[1]`` the comparison."""

    def __init__(
        self,
        models: list[LoadedModel],
        writers: list[ReplayWriter],
        rules: _AlertsDoc,
        score_config: ScoreConfig,
        *,
        reorder_capacity: int | None,
        source: str,
        emit_from: datetime | None = None,
        progress: Progress | None = None,
        progress_every_items: int = 10_000,
        progress_every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= len(models) <= 2 or len(models) != len(writers):
            raise ReplayError("a replay runs one model, or two to compare")
        self.lanes = [
            Lane(Scorer(m, score_config), Engine(rules), w, emit_from=emit_from)
            for m, w in zip(models, writers, strict=True)
        ]
        self.emit_from = emit_from
        self.order = EventOrder(reorder_capacity)
        self.cap = max(score_config.queue_size, 4 * score_config.max_batch)
        self.progress = progress
        self.progress_every_items = progress_every_items
        self.progress_every_s = progress_every_s
        self.clock = clock
        self.report = ReplayReport(source=source)
        self._seq = 0
        self._seen: set[str] = set()
        self._labels: dict[int, str] = {}
        self._agree = 0
        self._compared = 0
        self._t0 = clock()
        self._last_progress = self._t0
        self._last_progress_n = 0

    # --- the loop ----------------------------------------------------------------------------

    def run(self, records: Iterable[Read], stop: threading.Event) -> ReplayReport:
        rep = self.report
        try:
            for rec in records:
                if stop.is_set():
                    rep.interrupted = True
                    break
                if isinstance(rec, Skipped):
                    rep.bad += 1
                    if len(rep.errors) < MAX_ERRORS_SHOWN:
                        rep.errors.append(f"{rec.where}: {rec.reason}")
                    continue
                rep.read += 1
                if rec.id in self._seen:
                    # Archives overlap and the bus is at-least-once; the collector would have
                    # dropped a second copy, so the replay does too.
                    rep.duplicates += 1
                    continue
                self._seen.add(rec.id)
                for item in self.order.push(rec):
                    self._feed(item)
                self._maybe_progress()
            if not rep.interrupted:
                # A full sort scores everything here, so Ctrl-C must be honoured here too.
                while len(self.order) and not stop.is_set():
                    self._feed(self.order.pop())
                    self._maybe_progress()
                rep.interrupted = len(self.order) > 0
            rep.dropped_on_stop = len(self.order)
        finally:
            self._finish()
        return rep

    def _feed(self, item: NewsItem) -> None:
        seq = self._seq
        self._seq += 1
        for lane in self.lanes:
            lane.scorer.submit(seq, item)
        while max(lane.scorer.in_flight for lane in self.lanes) >= self.cap:
            self._collect(0.05)
        self._collect(0.0)

    def _collect(self, timeout: float) -> None:
        for i, lane in enumerate(self.lanes):
            for seq, rec in lane.scorer.ready(timeout if i == 0 else 0.0):
                lane.handle(rec)
                self._note(seq, rec)
                self._track(i, seq, rec)

    def _note(self, seq: int, rec: ScoredItem) -> None:
        rep = self.report
        if seq < rep.processed:
            return  # the second lane's copy of a record already counted
        rep.processed = seq + 1
        ts = rec.published_at
        if self.emit_from is not None and ts < self.emit_from:
            return  # warm-up: not part of the written span
        if rep.first_event is None or ts < rep.first_event:
            rep.first_event = ts
        if rep.last_event is None or ts > rep.last_event:
            rep.last_event = ts

    def _track(self, lane: int, seq: int, rec: ScoredItem) -> None:
        if len(self.lanes) < 2:
            return
        unscored = any(f.startswith(UNSCORED_PREFIX) for f in rec.flags)
        label = "unscored" if unscored else rec.sentiment.label
        other = self._labels.pop(seq, None)
        if other is None:
            self._labels[seq] = label
            return
        self._compared += 1
        if other == label:
            self._agree += 1

    def _maybe_progress(self) -> None:
        if self.progress is None:
            return
        now = self.clock()
        n = self.report.read + self._seq
        if (
            n - self._last_progress_n >= self.progress_every_items
            or now - self._last_progress >= self.progress_every_s
        ):
            self._last_progress = now
            self._last_progress_n = n
            self._fill(now)
            self.progress(self.report)

    def _finish(self) -> None:
        try:
            for i, lane in enumerate(self.lanes):
                for seq, rec in lane.scorer.finish(timeout=60.0):
                    lane.handle(rec)
                    self._note(seq, rec)
                    self._track(i, seq, rec)
        finally:
            for lane in self.lanes:
                lane.writer.close()
            self._fill(self.clock())

    def _fill(self, now: float) -> None:
        rep = self.report
        rep.wall_s = now - self._t0
        rep.out_of_order = self.order.out_of_order
        rep.lanes = [lane.report() for lane in self.lanes]
        if len(self.lanes) == 2:
            a, b = rep.lanes
            rep.compare = {
                "items": self._compared,
                "label_agreement": round(self._agree / self._compared, 4)
                if self._compared
                else None,
                "only_first": sorted(
                    (
                        {"rule": k.rule, "key": k.key, "starts_at": v}
                        for k, v in a.firing.items()
                        if k not in b.firing
                    ),
                    key=lambda d: d["starts_at"],
                ),
                "only_second": sorted(
                    (
                        {"rule": k.rule, "key": k.key, "starts_at": v}
                        for k, v in b.firing.items()
                        if k not in a.firing
                    ),
                    key=lambda d: d["starts_at"],
                ),
            }


def output_dirs(out: Path, compare: bool) -> list[Path]:
    """``out`` for the model under test; ``out/compare`` for the second model."""
    return [out, out / "compare"] if compare else [out]
