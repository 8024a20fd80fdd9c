"""`riskwire feeds check URL` and `riskwire feeds list`.

``check`` fetches once, exactly as the collector would (same fetcher, parser, normaliser,
watchlist and, when a config is given, the same seen-set), and prints what would be published
and why anything would be dropped. It publishes nothing and changes no state.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.collect.collector import Collector, PollReport
from monitor.collect.config import FeedConfig, resolve_feeds
from monitor.collect.role import build_fetcher, build_matcher, state_path
from monitor.collect.state import StateStore
from monitor.config import Config, load_config
from monitor.errors import RiskwireError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    feeds = subparsers.add_parser("feeds", help="inspect and test feeds")
    sub = feeds.add_subparsers(dest="feeds_command", metavar="SUBCOMMAND")
    check = sub.add_parser(
        "check",
        help="fetch a feed once; print what would be published and why anything is dropped",
    )
    check.add_argument("url", help="http(s) URL, a local file or directory, or a feed id")
    check.add_argument("--config", "-c", help="config file (watchlist, limits, seen-set)")
    check.add_argument(
        "--kind",
        choices=["auto", "rss", "atom", "jsonfeed", "json", "file", "directory"],
        default="auto",
    )
    check.add_argument("--watchlist", help="watchlist file (overrides the config's)")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    check.set_defaults(func=cmd_check)
    lst = sub.add_parser("list", help="configured feeds with their state")
    lst.add_argument("--config", "-c", help="config file")
    lst.add_argument("--json", action="store_true", help="one JSON object per feed")
    lst.set_defaults(func=cmd_list)
    feeds.set_defaults(func=lambda args: (feeds.print_help(), 2)[1])


def _load(path: str | None) -> Config:
    return load_config(path) if path else Config()


def _feed_for(target: str, kind: str, config: Config) -> FeedConfig:
    for feed in resolve_feeds(config.collect):
        if feed.id == target:
            return feed
    if target.startswith(("http://", "https://")):
        chosen = "rss" if kind in ("auto", "file", "directory") else kind
        return FeedConfig.model_validate({"id": "check", "url": target, "kind": chosen})
    path = Path(target)
    if kind == "auto":
        kind = "directory" if path.is_dir() else "file"
    return FeedConfig.model_validate({"id": "check", "path": path, "kind": kind})


def _age(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    s = now - ts
    if s < 0:
        return f"in {-s:.0f}s"
    if s < 120:
        return f"{s:.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _report_doc(report: PollReport) -> dict[str, Any]:
    return {
        "feed": report.feed_id,
        "outcome": report.outcome,
        "error": report.error,
        "entries": report.entries,
        "problems": report.problems,
        "next_poll_s": round(report.next_delay_s, 1),
        "publish": [json.loads(i.to_json()) for i in report.published],
        "drop": [
            {
                "title": d.title,
                "url": d.url,
                "reason": d.reason,
                "duplicate_of": d.duplicate_of,
                "similarity": d.similarity,
                "novelty": d.novelty,
            }
            for d in report.dropped
        ],
    }


def _print_report(report: PollReport, feed: FeedConfig) -> None:
    out = sys.stdout
    print(f"feed {feed.id} ({feed.kind}) {feed.location}", file=out)
    print(f"outcome: {report.outcome}" + (f" - {report.error}" if report.error else ""), file=out)
    for p in report.problems:
        print(f"problem: {p}", file=out)
    if report.outcome in ("200", "304"):
        print(f"entries: {report.entries}", file=out)
    print(f"would publish {len(report.published)}:", file=out)
    for item in report.published:
        ents = ", ".join(
            f"{e.id} '{e.matched}' rel {e.relevance:.1f} nov {_num(e.novelty)}"
            for e in item.entities
        )
        flags = f" [{', '.join(item.flags)}]" if item.flags else ""
        when = item.published_at.strftime("%Y-%m-%d %H:%M")
        print(f"  + {when}  {item.title}{flags}", file=out)
        print(f"      {item.url}  id {item.id}" + (f"  entities: {ents}" if ents else ""), file=out)
    if report.dropped:
        print(f"would drop {len(report.dropped)}:", file=out)
        for d in report.dropped:
            why = d.reason
            if d.duplicate_of:
                why += f" of {d.duplicate_of}"
            if d.similarity is not None:
                why += f" (jaccard {d.similarity:.2f})"
            print(f"  - {why}: {d.title or '(no title)'}", file=out)
    print(f"next poll in {report.next_delay_s:.0f}s", file=out)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
        cfg = config.collect
        if args.watchlist:
            cfg = cfg.model_copy(update={"watchlist": Path(args.watchlist)})
        feed = _feed_for(args.url, args.kind, config)
        matcher = build_matcher(cfg)
    except (RiskwireError, ValueError) as exc:
        print(f"riskwire feeds check: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="riskwire-check-") as tmp:
        existing = state_path(config)
        # With a config, judge against the real seen-set (read only: a dry run writes nothing).
        store = StateStore(existing if args.config and existing.exists() else Path(tmp) / "s.db")
        fetcher = build_fetcher(cfg)
        try:
            collector = Collector(
                cfg, state=store, fetcher=fetcher, publisher=None, matcher=matcher
            )
            collector.load_seen()
            report = collector.poll(feed, dry_run=True)
        finally:
            fetcher.close()
            store.close()
    if args.json:
        print(json.dumps(_report_doc(report), ensure_ascii=False))
    else:
        _print_report(report, feed)
    return 0 if report.outcome in ("200", "304") else 1


def cmd_list(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
        feeds = resolve_feeds(config.collect)
    except RiskwireError as exc:
        print(f"riskwire feeds list: {exc}", file=sys.stderr)
        return 2
    path = state_path(config)
    states = {}
    if path.exists():
        store = StateStore(path)
        try:
            states = {s.feed_id: s for s in store.feeds()}
        finally:
            store.close()
    now = time.time()
    rows: list[dict[str, Any]] = []
    for f in feeds:
        s = states.get(f.id)
        rows.append(
            {
                "id": f.id,
                "kind": f.kind,
                "location": f.location,
                "status": s.status if s else "new",
                "failures": s.failures if s else 0,
                "last_success": _iso(s.last_success) if s else None,
                "last_error": s.last_error if s else None,
                "next_due": _iso(s.next_due) if s else None,
                "_last_success": s.last_success if s else None,
                "_next_due": s.next_due if s else None,
            }
        )
    if args.json:
        for r in rows:
            print(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}))
        return 0
    if not rows:
        print("no feeds configured (collect.feeds / collect.feeds_file)")
        return 0
    width = max(len(r["id"]) for r in rows)
    print(f"{'FEED':<{width}}  {'KIND':<9}  {'STATUS':<11}  FAILS  LAST OK     NEXT        ERROR")
    for r in rows:
        print(
            f"{r['id']:<{width}}  {r['kind']:<9}  {r['status']:<11}  {r['failures']:>5}  "
            f"{_age(r['_last_success'], now):<10}  {_age(r['_next_due'], now):<10}  "
            f"{(r['last_error'] or '')[:80]}"
        )
    return 0


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
