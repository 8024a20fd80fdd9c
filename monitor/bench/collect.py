"""`riskwire bench collect`: one full polling cycle over many local feeds, ours vs feedparser.

A threaded HTTP server on 127.0.0.1 (started here, in this process) serves ``--feeds`` RSS feeds:
a share of them answer a conditional GET with 304 (as after an earlier cycle), the others
return 200 with ``--entries`` new entries each. Then, each in a process of its own so that peak
RSS is its own:

- **ours**: the collector's real path (httpx fetch with conditional GET and the size cap, the
  XML guard, feedparser on the fetched bytes, normalisation, entity tagging, dedup and novelty,
  publishing to an embedded bus, the seen-set write), ``--concurrency`` feeds at a time;
- **baseline**: plain ``feedparser.parse(url, etag=...)`` over the same feeds with the same
  concurrency (the validators are given to it too, so both see the same 200/304 mix).

Each is run ``--repeat`` times, alternating; the table shows medians and ratios. ``--json``
prints one JSON object on the last line (``feeds_per_s``, ``peak_rss_mb``,
``baseline_feeds_per_s``, ...).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_COMPANIES = [
    "Bluefin Payments",
    "Helios Semiconductor",
    "Northwind Bancorp",
    "Pinecrest Pharma",
    "Meridian Energy",
    "Atlas Retail Group",
    "Vantage Air",
    "Quarry Mining",
    "Corvid Logistics",
    "Solano Foods",
]
_VOCAB_SEED = 1234


def _vocabulary(n: int = 3000) -> list[str]:
    rng = random.Random(_VOCAB_SEED)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(n)]


def feed_body(i: int, entries: int, vocab: list[str]) -> bytes:
    """Feed ``i``: ``entries`` items with headlines distinct from every other feed's."""
    rng = random.Random(i)
    base = 1_795_564_800  # 2026-11-25T00:00Z
    items = []
    for j in range(entries):
        company = _COMPANIES[(i + j) % len(_COMPANIES)]
        words = " ".join(rng.choice(vocab) for _ in range(7))
        title = f"{company} {words}"
        when = format_datetime(datetime.fromtimestamp(base - j * 600, UTC), usegmt=True)
        items.append(
            f"<item><title>{title}</title><link>https://bench.invalid/{i}/{j}?utm_source=rss"
            f"</link><guid>b-{i}-{j}</guid><description>&lt;p&gt;{words} {words}&lt;/p&gt;"
            f"</description><pubDate>{when}</pubDate></item>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Bench {i}'
        f"</title><link>https://bench.invalid/{i}</link><description>bench</description>"
        f"{''.join(items)}</channel></rss>"
    ).encode()


def is_304(i: int, share_304: float) -> bool:
    return random.Random(i * 7919).random() < share_304


def etag_for(i: int) -> str:
    return f'"v1-{i}"'


class _Server:
    def __init__(self, feeds: int, entries: int, share_304: float) -> None:
        vocab = _vocabulary()
        self.bodies = [feed_body(i, entries, vocab) for i in range(feeds)]
        self.cached = [is_304(i, share_304) for i in range(feeds)]
        self.counts = {"200": 0, "304": 0}
        lock = threading.Lock()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    i = int(self.path.rsplit("/", 1)[1])
                    body = srv.bodies[i]
                except (ValueError, IndexError):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if srv.cached[i] and self.headers.get("If-None-Match") == etag_for(i):
                    with lock:
                        srv.counts["304"] += 1
                    self.send_response(304)
                    self.send_header("ETag", etag_for(i))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with lock:
                    srv.counts["200"] += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                if srv.cached[i]:
                    self.send_header("ETag", etag_for(i))
                self.end_headers()
                self.wfile.write(body)

        ThreadingHTTPServer.request_queue_size = 256
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _usage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024.0


def _worker_ours(args: argparse.Namespace) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from monitor.bus.embedded import EmbeddedBus
    from monitor.collect.collector import Collector
    from monitor.collect.config import CollectConfig, FeedConfig
    from monitor.collect.entities import EntityMatcher, WatchEntity, Watchlist
    from monitor.collect.metrics import CollectMetrics
    from monitor.collect.publish import Publisher
    from monitor.collect.role import build_fetcher
    from monitor.collect.state import FeedState, StateStore

    tmp = Path(args.state_dir)
    cfg = CollectConfig(concurrency=args.concurrency, per_host_concurrency=args.concurrency)
    feeds = [
        FeedConfig(id=f"bench-{i}", url=f"http://127.0.0.1:{args.port}/feed/{i}")
        for i in range(args.feeds)
    ]
    state = StateStore(tmp / "collector.sqlite")
    # The state an earlier cycle left: validators for the feeds that have not changed since.
    for i, f in enumerate(feeds):
        if is_304(i, args.share_304):
            state.save_feed(FeedState(f.id, location=f.location, etag=etag_for(i), status="ok"))
    bus = EmbeddedBus(tmp / "bus.sqlite", partitions=3)
    topic = "riskwire.news.raw"
    bus.ensure_topics([topic])
    producer = bus.producer()
    watch = Watchlist(
        entities=tuple(
            WatchEntity(id=f"E{k}", name=name, ticker=f"TK{k}") for k, name in enumerate(_COMPANIES)
        )
    )
    fetcher = build_fetcher(cfg)
    collector = Collector(
        cfg,
        state=state,
        fetcher=fetcher,
        publisher=Publisher(producer, topic),
        matcher=EntityMatcher(watch),
        metrics=CollectMetrics.create(CollectorRegistry()),
    )
    cpu0, _ = _usage()
    t0 = time.perf_counter()

    def poll(feed: FeedConfig) -> tuple[str, int]:
        # Keep only a summary, as the role does: reports are not held for the whole cycle.
        r = collector.poll(feed)
        return r.outcome, len(r.published)

    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(poll, feeds))
    wall = time.perf_counter() - t0
    cpu1, rss = _usage()
    outcomes: dict[str, int] = {}
    for outcome, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    published = sum(n for _, n in results)
    fetcher.close()
    producer.close()
    bus.close()
    state.close()
    return {
        "wall_s": wall,
        "cpu_s": cpu1 - cpu0,
        "peak_rss_mb": rss,
        "outcomes": outcomes,
        "items": published,
    }


def _worker_baseline(args: argparse.Namespace) -> dict[str, Any]:
    import feedparser

    def one(i: int) -> tuple[int, int]:
        url = f"http://127.0.0.1:{args.port}/feed/{i}"
        etag = etag_for(i) if is_304(i, args.share_304) else None
        doc = feedparser.parse(url, etag=etag)
        return int(doc.get("status", 0)), len(doc.get("entries", []))

    cpu0, _ = _usage()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(one, range(args.feeds)))
    wall = time.perf_counter() - t0
    cpu1, rss = _usage()
    outcomes: dict[str, int] = {}
    for status, _ in results:
        outcomes[str(status)] = outcomes.get(str(status), 0) + 1
    return {
        "wall_s": wall,
        "cpu_s": cpu1 - cpu0,
        "peak_rss_mb": rss,
        "outcomes": outcomes,
        "items": sum(n for _, n in results),
    }


def _spawn(kind: str, args: argparse.Namespace, port: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="riskwire-bench-collect-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "monitor.bench.collect",
            "--_worker",
            kind,
            "--_port",
            str(port),
            "--_state-dir",
            tmp,
            "--feeds",
            str(args.feeds),
            "--entries",
            str(args.entries),
            "--share-304",
            str(args.share_304),
            "--concurrency",
            str(args.concurrency),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"bench worker {kind} failed:\n{proc.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result


def run(args: argparse.Namespace) -> int:
    server = _Server(args.feeds, args.entries, args.share_304)
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
    try:
        for _ in range(args.repeat):
            for kind in ("ours", "baseline"):
                runs[kind].append(_spawn(kind, args, server.port))
    finally:
        server.close()

    def med(kind: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[kind]))

    rows = {}
    for kind in ("ours", "baseline"):
        wall = med(kind, "wall_s")
        rows[kind] = {
            "feeds_per_s": args.feeds / wall,
            "wall_s": wall,
            "cpu_s_per_feed": med(kind, "cpu_s") / args.feeds,
            "peak_rss_mb": med(kind, "peak_rss_mb"),
            "items": runs[kind][-1]["items"],
            "outcomes": runs[kind][-1]["outcomes"],
        }
    ours, base = rows["ours"], rows["baseline"]
    n304 = sum(1 for i in range(args.feeds) if is_304(i, args.share_304))
    print(
        f"riskwire bench collect: {args.feeds} local feeds ({args.feeds - n304} x 200 with "
        f"{args.entries} entries, {n304} x 304), one polling cycle, concurrency "
        f"{args.concurrency}, median of {args.repeat}"
    )
    print(f"{'':<28}{'ours':>12}{'feedparser':>14}{'ratio':>9}")
    for label, key, fmt in (
        ("feeds/s", "feeds_per_s", "{:.1f}"),
        ("cycle wall s", "wall_s", "{:.2f}"),
        ("CPU ms/feed", "cpu_s_per_feed", "{:.2f}"),
        ("peak RSS MB", "peak_rss_mb", "{:.1f}"),
    ):
        a, b = ours[key], base[key]
        if key == "cpu_s_per_feed":
            a, b = a * 1000, b * 1000
        ratio = a / b if b else float("nan")
        print(f"{label:<28}{fmt.format(a):>12}{fmt.format(b):>14}{ratio:>8.2f}x")
    print(f"{'items published / parsed':<28}{ours['items']:>12}{base['items']:>14}")
    print(f"outcomes: ours {ours['outcomes']}  feedparser {base['outcomes']}")
    print(
        "ours = fetch + XML guard + parse + normalise + entities + dedup/novelty + publish to "
        "the embedded bus + seen-set; feedparser = fetch + parse only"
    )
    print(
        "targets: >= 50 feeds/s: "
        + ("ok" if ours["feeds_per_s"] >= 50 else "MISSED")
        + f"; peak RSS < 300 MB: {'ok' if ours['peak_rss_mb'] < 300 else 'MISSED'}"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "collect",
                    "feeds": args.feeds,
                    "entries": args.entries,
                    "feeds_304": n304,
                    "concurrency": args.concurrency,
                    "repeat": args.repeat,
                    "feeds_per_s": round(ours["feeds_per_s"], 2),
                    "cpu_s_per_feed": round(ours["cpu_s_per_feed"], 6),
                    "peak_rss_mb": round(ours["peak_rss_mb"], 1),
                    "items_published": ours["items"],
                    "baseline_feeds_per_s": round(base["feeds_per_s"], 2),
                    "baseline_cpu_s_per_feed": round(base["cpu_s_per_feed"], 6),
                    "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1),
                    "speedup": round(ours["feeds_per_s"] / base["feeds_per_s"], 3),
                }
            )
        )
    return 0


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--feeds", type=int, default=2000, help="feeds served (default 2000)")
    p.add_argument("--entries", type=int, default=20, help="entries per 200 response")
    p.add_argument("--share-304", type=float, default=0.5, help="share of feeds answering 304")
    p.add_argument("--concurrency", type=int, default=16, help="fetches in flight")
    p.add_argument("--repeat", type=int, default=3, help="runs of each side (median)")
    p.add_argument("--json", action="store_true", help="JSON summary as the last line")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "collect",
        help="feed polling vs plain feedparser.parse",
        description=(__doc__ or "").split("\n\n")[0],
    )
    _add_options(p)
    p.set_defaults(func=run)


def _worker_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    _add_options(p)
    p.add_argument("--_worker", choices=["ours", "baseline"], required=True)
    p.add_argument("--_port", type=int, required=True, dest="port")
    p.add_argument("--_state-dir", required=True, dest="state_dir")
    args = p.parse_args(argv)
    result = _worker_ours(args) if args._worker == "ours" else _worker_baseline(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
