"""``riskwire replay``: history through the worker's scoring and the alerter's rules, in event time.

Examples::

    # a week of the configured bus's raw topic (embedded log or Kafka)
    riskwire replay --config riskwire.yaml --from 2026-11-01T00:00Z --to 2026-11-08T00:00Z \\
        --out var/replay/week45

    # archived raw items (JSONL, .gz too), a candidate model and rule file, Parquet output
    riskwire replay --archive archive/2026-11/ --model models/candidate --rules rules.new.yaml \\
        --format parquet --out var/replay/candidate

    # a folder of saved RSS/Atom files, and two models side by side
    riskwire replay --feeds saved-feeds/ --model models/v2 --compare-model models/v1 --out out/

Replay writes only under ``--out``: it never produces to the bus, never touches the alerter's
outbox or the collector's seen-set, and has no receivers, so it cannot notify a desk.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from monitor.errors import RiskwireError
from monitor.logs import setup_logging
from monitor.replay.errors import ReplayError
from monitor.replay.readers import Read, Skipped

DEFAULT_REORDER = 10_000


def parse_time(text: str) -> datetime:
    """RFC 3339 / ISO 8601 (``2026-11-01T00:00Z``, ``2026-11-01``); no zone means UTC."""
    value = text.strip()
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        ts = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError as exc:
        raise ReplayError(
            f"not a time: {text!r} (use RFC 3339, e.g. 2026-11-01T00:00Z or 2026-11-01)"
        ) from exc
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "replay",
        help="replay history through scoring and rules",
        description=(
            "Replay historical news through the same scoring path and rules as the daemon, in "
            "event time, and write scored items and alerts for pandas / DuckDB. Sources: the "
            "bus's raw topic by --from/--to, --archive JSONL files, or --feeds saved feed files. "
            "Nothing is produced to the bus and no alert is delivered."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="daemon config (bus, score.model_dir, alerts rules)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--archive",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="riskwire.news/1 JSONL files or folders (.jsonl, .json, .gz)",
    )
    src.add_argument(
        "--feeds",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="saved RSS/Atom/JSON Feed files or folders, parsed like the collector does",
    )
    p.add_argument(
        "--from",
        dest="from_",
        metavar="TIME",
        help="start of the range (inclusive), in published_at time; the bus too is read by it",
    )
    p.add_argument("--to", metavar="TIME", help="end of the range (exclusive)")
    p.add_argument(
        "--warmup",
        metavar="DURATION",
        help="also read this long before --from (e.g. 7d) to fill rule windows and z-score "
        "baselines; those records and their alerts are not written",
    )
    p.add_argument("--topic", help="bus topic to read (default: bus.topics.raw)")
    p.add_argument("--feed-source", help="feed id for --feeds items (default: each file's stem)")
    p.add_argument("--model", type=Path, help="model directory (default: score.model_dir)")
    p.add_argument("--compare-model", type=Path, metavar="DIR", help="second model to compare")
    p.add_argument("--rules", type=Path, help="rules file (default: the config's alerts rules)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl")
    p.add_argument(
        "--order",
        choices=("auto", "full", "buffer"),
        default="auto",
        help="event-time order: full sort, or a bounded reorder buffer (auto: full for files, "
        "buffer for the bus)",
    )
    p.add_argument(
        "--reorder-buffer",
        type=int,
        default=DEFAULT_REORDER,
        metavar="N",
        help=f"records held to restore event order with --order buffer (default {DEFAULT_REORDER})",
    )
    p.add_argument(
        "--threads", type=int, help="ONNX Runtime threads (default: score.intra_op_threads)"
    )
    p.add_argument(
        "--progress-every",
        type=int,
        default=10_000,
        metavar="N",
        help="a progress line on stderr every N records (and every 10 s)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--json", action="store_true", help="also print the report as one JSON line")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


class _Range:
    def __init__(self, from_: datetime | None, to: datetime | None) -> None:
        if from_ and to and to <= from_:
            raise ReplayError(f"--to ({to.isoformat()}) must be after --from ({from_.isoformat()})")
        self.from_ = from_
        self.to = to
        self.outside = 0

    def filter(self, records: Iterable[Read]) -> Iterator[Read]:
        for rec in records:
            if not isinstance(rec, Skipped) and (
                (self.from_ is not None and rec.published_at < self.from_)
                or (self.to is not None and rec.published_at >= self.to)
            ):
                self.outside += 1
                continue
            yield rec


class _Stopper:
    """First Ctrl-C (or SIGTERM): stop reading and finish cleanly. Second Ctrl-C: abort."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        print(
            "replay: stopping — finishing the items in hand (Ctrl-C again aborts)", file=sys.stderr
        )
        self.event.set()

    def __enter__(self) -> _Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        return _run(args)
    except RiskwireError as exc:
        print(f"riskwire replay: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from monitor.alerts.config import load_rules_file, parse_duration
    from monitor.config import load_config
    from monitor.replay.driver import Replay, output_dirs
    from monitor.replay.readers import RangeStats, read_bus, read_feeds, read_jsonl
    from monitor.replay.report import progress_line, render
    from monitor.replay.writers import ReplayWriter, check_format
    from monitor.score.model import load_model

    check_format(args.format)
    config = load_config(args.config)
    window = _Range(
        parse_time(args.from_) if args.from_ else None, parse_time(args.to) if args.to else None
    )
    emit_from = window.from_
    if args.warmup:
        if window.from_ is None:
            raise ReplayError("--warmup needs --from (it reads that long before it)")
        try:
            warmup_s = parse_duration(args.warmup)
        except ValueError as exc:
            raise ReplayError(f"--warmup: {exc}") from exc
        window = _Range(window.from_ - timedelta(seconds=warmup_s), window.to)
    from_bus = not args.archive and not args.feeds
    if from_bus and window.from_ is None:
        raise ReplayError(
            "replaying the bus needs --from (and usually --to); or give --archive/--feeds"
        )
    rules = load_rules_file(args.rules) if args.rules else config.alerts.effective
    score_cfg = config.score
    if args.threads:
        score_cfg = score_cfg.model_copy(update={"intra_op_threads": args.threads})
    model_dirs = [args.model or score_cfg.model_dir]
    if args.compare_model:
        model_dirs.append(args.compare_model)
    models = [load_model(d, score_cfg) for d in model_dirs]
    writers = [
        ReplayWriter(d, args.format) for d in output_dirs(args.out, bool(args.compare_model))
    ]

    order = args.order if args.order != "auto" else ("buffer" if from_bus else "full")
    bus = None
    bus_stats = RangeStats()
    records: Iterator[Read]
    if args.archive:
        source = "archive " + " ".join(str(p) for p in args.archive)
        records = window.filter(read_jsonl(args.archive))
    elif args.feeds:
        source = "feeds " + " ".join(str(p) for p in args.feeds)
        watchlist = config.collect.watchlist
        records = window.filter(
            read_feeds(
                args.feeds,
                watchlist=watchlist,
                source=args.feed_source,
                title_max_chars=config.collect.title_max_chars,
                summary_max_chars=config.collect.summary_max_chars,
                future_tolerance_s=config.collect.future_tolerance_s,
            )
        )
    else:
        bus = _open_bus_for_reading(config)
        topic = args.topic or config.bus.topics.raw
        source = f"{bus.kind} bus {topic} [{args.from_} .. {args.to or 'end'})"
        assert window.from_ is not None
        records = read_bus(
            bus,
            topic,
            from_ms=int(window.from_.timestamp() * 1000),
            to_ms=int(window.to.timestamp() * 1000) if window.to else None,
            stats=bus_stats,
            future_tolerance_s=config.collect.future_tolerance_s,
        )

    def progress(rep: Any) -> None:
        print(progress_line(rep), file=sys.stderr, flush=True)

    replay = Replay(
        models,
        writers,
        rules,
        score_cfg,
        reorder_capacity=None if order == "full" else args.reorder_buffer,
        source=source,
        emit_from=emit_from if args.warmup else None,
        progress=None if args.quiet else progress,
        progress_every_items=max(1, args.progress_every),
    )
    try:
        with _Stopper() as stopper:
            report = replay.run(records, stopper.event)
    finally:
        close = getattr(records, "close", None)
        if callable(close):
            close()  # ends the bus reader: its consumer leaves the throw-away group
        if bus is not None:
            bus.close()
    report.out_of_range = window.outside + bus_stats.before_range + bus_stats.after_range
    print(render(report))
    if args.json:
        print(json.dumps(report.to_dict(), default=str, separators=(",", ":")))
    return 130 if report.interrupted else 0


def _open_bus_for_reading(config: Any) -> Any:
    from monitor.bus import open_bus

    if config.bus.kind != "kafka" and not Path(config.embedded_path).exists():
        # Opening would create an empty log: say so instead.
        raise ReplayError(f"no embedded bus log at {config.embedded_path}; nothing to replay")
    return open_bus(config)
