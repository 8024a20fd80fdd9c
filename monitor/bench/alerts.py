"""`riskwire bench alerts`: rule evaluation throughput and scored-record -> webhook latency.

Part 1 evaluates ``--rules`` rules (entity, watchlist, risk-tag, source, keyword and regex
rules; windowed and instant) over ``--records`` synthetic scored records in event time, with
out-of-order arrivals. Ours (the rule index: a record meets only the rules filed under its
entities, source, risk tags and label, plus the few that filter on none) beside the naive
baseline that checks every rule on every record, measured in the same run on a sample.

Part 2 runs the real alerter role on a real embedded bus in a temporary directory: a producer
offers ``--rate`` scored records per second for ``--duration`` seconds, each raising one alert,
and a real HTTP server on 127.0.0.1 receives the signed webhooks. Latency is from producing the
record to the receiver reading the POST.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.alerts.config import AlertsConfig
from monitor.alerts.engine import Engine
from monitor.alerts.rules import naive_matches
from monitor.records import EntityMatch, ModelInfo, RiskTag, ScoredItem, Sentiment, Timings
from monitor.score.manifest import RISK_TAGS

T0 = 1_780_000_000.0
SOURCES = [f"feed{i:02d}" for i in range(20)]
WORDS = ["bankruptcy", "probe", "recall", "downgrade", "lawsuit", "beats", "merger", "outage"]


def make_rules(n: int, entities: Sequence[str], rng: random.Random) -> dict[str, Any]:
    """A realistic mix: most rules watch entities, some tags, sources, words and regexes."""
    rules: list[dict[str, Any]] = []
    watchlists = {f"wl{i}": rng.sample(list(entities), 20) for i in range(max(1, n // 10))}
    for i in range(n):
        kind = i % 20
        name = f"r{i:04d}"
        if kind < 13:  # 65 %: one entity, a negative burst or a single strong negative item
            ent = entities[i % len(entities)]
            if i % 2:
                rules.append(
                    {
                        "name": name,
                        "match": {"entities": [ent], "sentiment": "negative"},
                        "window": {"size": "1h", "allowed_lateness": "10m"},
                        "condition": {"count": {"min": 4}, "share_negative": {"min": 0.5}},
                        "send_resolved": True,
                    }
                )
            else:
                rules.append(
                    {
                        "name": name,
                        "match": {
                            "entities": [ent],
                            "sentiment": "negative",
                            "min_probability": 0.97,
                        },
                    }
                )
        elif kind < 15:  # 10 %: watchlists, mean polarity over 2 h
            rules.append(
                {
                    "name": name,
                    "match": {"watchlists": [f"wl{i % len(watchlists)}"]},
                    "window": {"size": "2h", "allowed_lateness": "10m"},
                    "condition": {"count": {"min": 5}, "mean_polarity": {"max": -0.4}},
                }
            )
        elif kind < 18:  # 15 %: a risk tag with a high probability
            rules.append(
                {
                    "name": name,
                    "match": {
                        "risk": [
                            {"tag": RISK_TAGS[i % len(RISK_TAGS)], "min_p": 0.9 + (i % 9) / 100}
                        ]
                    },
                    "severity": "critical",
                }
            )
        elif kind < 19:  # 5 %: a source and a label, windowed
            rules.append(
                {
                    "name": name,
                    "match": {"sources": [SOURCES[i % len(SOURCES)]], "sentiment": "negative"},
                    "window": {"size": "30m", "allowed_lateness": "10m"},
                    "condition": {"count": {"min": 200}},
                }
            )
        elif i % 40 == 19:  # 2.5 %: a keyword on strongly negative items (indexed by label)
            rules.append(
                {
                    "name": name,
                    "match": {
                        "sentiment": "negative",
                        "min_probability": 0.95,
                        "keywords": [WORDS[i % len(WORDS)]],
                    },
                }
            )
        else:  # 2.5 %: a regex on the title; half also name a keyword (indexed), half do not
            match: dict[str, Any] = {
                "title_regex": rf"(?i)\b{WORDS[i % len(WORDS)]} of \d+ banks\b"
            }
            if i % 80 == 39:
                match["keywords"] = ["banks"]
            rules.append({"name": name, "match": match})
    return {"rules": rules, "watchlists": watchlists}


def make_record(
    i: int,
    ts: float,
    rng: random.Random,
    entities: Sequence[str],
    *,
    entity: str | None = None,
    source: str | None = None,
) -> ScoredItem:
    ent = (
        entity
        or entities[
            min(int(rng.paretovariate(1.1)) - 1, len(entities) - 1)
            if rng.random() < 0.3
            else rng.randrange(len(entities))
        ]
    )
    label = rng.choices(["negative", "neutral", "positive"], [0.3, 0.45, 0.25])[0]
    p = rng.uniform(0.5, 0.995)
    rest = (1 - p) / 2
    probs = {k: (p if k == label else rest) for k in ("negative", "neutral", "positive")}
    pol = {"negative": -p, "neutral": 0.0, "positive": p}[label]
    risk = tuple(RiskTag(tag=t, p=round(rng.random() ** 20, 3)) for t in rng.sample(RISK_TAGS, 3))
    when = datetime.fromtimestamp(ts, UTC)
    return ScoredItem(
        id=f"item{i:07d}",
        source=source or rng.choice(SOURCES),
        url=f"https://news.example/{i}",
        title=f"{ent} {rng.choice(WORDS)} update {i}",
        published_at=when,
        fetched_at=when,
        entities=(EntityMatch(id=ent, name=ent, matched=ent),),
        sentiment=Sentiment(label=label, probs=probs, polarity=pol),  # type: ignore[arg-type]
        risk=risk,
        model=ModelInfo(name="bench", version="0", sha256="0" * 64),
        timings=Timings(fetched_to_scored_ms=1.0, inference_ms=1.0),
    )


def make_records(n: int, entities: Sequence[str], rng: random.Random) -> list[ScoredItem]:
    out = []
    for i in range(n):
        ts = T0 + i * 0.2
        if rng.random() < 0.05:  # 5 % arrive up to 2 min late (within the 10 min lateness)
            ts -= rng.uniform(0, 120)
        out.append(make_record(i, ts, rng, entities))
    return out


def bench_eval(
    doc: dict[str, Any], records: list[ScoredItem], naive_sample: int, repeats: int
) -> dict[str, Any]:
    cfg = AlertsConfig.model_validate(doc)
    ours: list[float] = []
    ours_cpu: list[float] = []
    alerts = firing = 0
    engine = Engine(cfg.effective)
    for _ in range(repeats):
        engine = Engine(cfg.effective)
        t, c = time.perf_counter(), time.process_time()
        raised = [a for r in records for a in engine.process(r)]
        ours.append(len(records) / (time.perf_counter() - t))
        ours_cpu.append(len(records) / (time.process_time() - c))
        alerts = len(raised)
        firing = sum(1 for a in raised if a.status == "firing")
    late = sum(engine.stats.late.values())
    # Decoding is part of the role's path: measured once on the same records.
    blobs = [r.to_json() for r in records]
    engine = Engine(cfg.effective)
    t, c = time.perf_counter(), time.process_time()
    for b in blobs:
        engine.process(ScoredItem.from_json(b))
    with_decode = len(records) / (time.perf_counter() - t)
    with_decode_cpu = len(records) / (time.process_time() - c)
    # Baseline: every rule checked on every record (same windows and alerts after matching).
    sample = records[:naive_sample]
    naive_rates = []
    naive_cpu = []
    for _ in range(repeats):
        engine = Engine(cfg.effective)
        every = engine.rules

        def naive(item: ScoredItem, every: list[Any] = every) -> list[Any]:
            return naive_matches(every, item)

        engine.index.candidates = naive  # type: ignore[method-assign]
        t, c = time.perf_counter(), time.process_time()
        for r in sample:
            engine.process(r)
        naive_rates.append(len(sample) / (time.perf_counter() - t))
        naive_cpu.append(len(sample) / (time.process_time() - c))
    return {
        "ours": statistics.median(ours),
        "ours_cpu": statistics.median(ours_cpu),
        "ours_runs": ours,
        "with_decode": with_decode,
        "with_decode_cpu": with_decode_cpu,
        "naive": statistics.median(naive_rates),
        "naive_cpu": statistics.median(naive_cpu),
        "alerts": alerts,
        "firing": firing,
        "resolved": alerts - firing,
        "late": late,
        "naive_sample": len(sample),
    }


_SINK = r"""
import http.server, json, sys, time
out = open(sys.argv[1], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        now = time.time()
        for it in json.loads(body).get("items", []):
            out.write(f"{it['id']}\t{now}\n")
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
print(s.server_address[1], flush=True)
s.serve_forever()
"""


_PRODUCER = r"""
import random, sys, time
from pathlib import Path
from monitor.bench.alerts import make_record
from monitor.bus.embedded import EmbeddedBus
from monitor.records import Sentiment
path, topic, out = sys.argv[1], sys.argv[2], sys.argv[5]
rate, n = float(sys.argv[3]), int(sys.argv[4])
bus = EmbeddedBus(Path(path), partitions=3)
producer = bus.producer()
rng = random.Random(11)
probs = {"negative": 0.1, "neutral": 0.8, "positive": 0.1}
neutral = Sentiment(label="neutral", probs=probs, polarity=0.0)
producer.flush()  # the bus's first retention pass, before the clock starts
t_start = time.time() + 0.5
blobs = []
for i in range(n):
    rec = make_record(10_000_000 + i, t_start + i / rate, rng, [], entity=f"P{i:06d}")
    rec = rec.model_copy(update={"risk": (), "sentiment": neutral, "source": "probe"})
    blobs.append((rec.id, rec.key, rec.to_json()))
lines = []
start = time.monotonic() + max(0.0, t_start - time.time())
for i, (item_id, key, blob) in enumerate(blobs):
    wait = start + i / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    lines.append(f"{item_id}\t{time.time()}\n")
    producer.produce(topic, key, blob)
    producer.flush()
elapsed = time.monotonic() - start
producer.close()
bus.close()
Path(out).write_text("".join(lines))
print(elapsed)
"""


class _Sink:
    """A local webhook receiver in its own process: notes when each alert's POST arrived."""

    def __init__(self, log: Path) -> None:
        self.log = log
        log.touch()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SINK, str(log)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def arrived(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.log.read_text().splitlines():
            item_id, _, at = line.partition("\t")
            if at:
                out.setdefault(item_id, float(at))
        return out

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def bench_latency(doc: dict[str, Any], rate: float, duration: float, tmp: Path) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from monitor.alerts.role import AlerterRole
    from monitor.bus.embedded import EmbeddedBus
    from monitor.config import Config
    from monitor.roles import RoleContext

    sink = _Sink(tmp / "arrivals.tsv")
    os.environ.setdefault("RISKWIRE_BENCH_SECRET", "bench-secret")
    rules = [
        *doc["rules"],
        {"name": "probe", "match": {"sources": ["probe"]}, "severity": "info"},
    ]
    config = Config.model_validate(
        {
            "data_dir": str(tmp),
            "bus": {"partitions": 3, "embedded": {"poll_interval_ms": 5}},
            "alerts": {
                "rules": rules,
                "watchlists": doc["watchlists"],
                "receivers": [
                    {"type": "webhook", "name": "desk", "url": sink.url, "secret": "bench-secret"}
                ],
                "route": {"receiver": "desk"},
                "group_wait": 0,
                "group_interval": 0,
                "delivery": {"poll_interval": "100ms", "concurrency": 2, "timeout_s": 5},
            },
        }
    )
    bus = EmbeddedBus(config.embedded_path, partitions=3, poll_interval_ms=5)
    topics = config.bus.topics
    bus.ensure_topics([topics.scored, topics.alerts])
    ctx = RoleContext(config=config, bus=bus, registry=CollectorRegistry())
    role = AlerterRole(ctx, max_records=200)
    stop = threading.Event()
    runner = threading.Thread(target=role.run, args=(stop,), daemon=True)
    runner.start()
    deadline = time.monotonic() + 30
    while not role.ready() and time.monotonic() < deadline:
        stop.wait(0.01)
    # The offered load comes from another process, as the scoring worker's would.
    offered_log = tmp / "offered.tsv"
    n = int(rate * duration)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cpu0 = time.process_time()
    wall0 = time.monotonic()
    feeder = subprocess.run(
        [sys.executable, "-c", _PRODUCER, str(config.embedded_path), topics.scored,
         str(rate), str(n), str(offered_log)],
        env=env,
        capture_output=True,
        text=True,
        timeout=duration * 3 + 60,
        check=False,
    )  # fmt: skip
    if feeder.returncode != 0:
        raise RuntimeError(f"bench producer failed: {feeder.stderr[-2000:]}")
    offered_s = float(feeder.stdout.strip().splitlines()[-1])
    offered: dict[str, float] = {}
    for line in offered_log.read_text().splitlines():
        item_id, _, at = line.partition("\t")
        offered[item_id] = float(at)
    drain = time.monotonic() + 30
    while time.monotonic() < drain and len(sink.arrived()) < n:
        stop.wait(0.1)
    arrived = sink.arrived()
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    stop.set()
    runner.join(30)
    bus.close()
    sink.close()
    lat = sorted((arrived[k] - t) * 1000 for k, t in offered.items() if k in arrived)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    return {
        "offered": n,
        "offered_rate": n / offered_s,
        "delivered": len(lat),
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "max": lat[-1] if lat else float("nan"),
        "alerter_cpu_ms_per_alert": cpu / max(1, len(lat)) * 1000,
        "alerter_cpu_share": cpu / wall,
    }


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    entities = [f"E{i:04d}" for i in range(1000)]
    doc = make_rules(args.rules, entities, rng)
    t = time.perf_counter()
    records = make_records(args.records, entities, rng)
    gen_s = time.perf_counter() - t
    load0 = os.getloadavg()[0]
    ev = bench_eval(doc, records, args.naive_sample, args.repeats)
    # Part 1's 100k records would otherwise sit in this process during part 2, and every full
    # garbage collection would walk them, pausing the alerter's threads: drop them first.
    del records
    gc.collect()
    gc.freeze()  # what is left (rules, config) is long-lived: keep it out of later collections
    with tempfile.TemporaryDirectory(prefix="riskwire-bench-alerts-") as tmp:
        lt = bench_latency(doc, args.rate, args.duration, Path(tmp))
    load1 = os.getloadavg()[0]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"riskwire bench alerts: {args.rules} rules, {args.records:,} scored records, "
        f"{cpus} CPUs, load average {load0:.1f} -> {load1:.1f} (records made in {gen_s:.1f}s)"
    )
    print()
    head = ("rule evaluation (event time)", "records/s", "us/record", "ratio", "rec/CPU-s")
    print("{:<44} {:>11} {:>10} {:>7} {:>10}".format(*head))
    rows = [
        (f"naive: every rule on every record ({ev['naive_sample']:,})", "naive"),
        (f"ours: rule index, median of {args.repeats}", "ours"),
        ("ours + JSON decode (the role's path)", "with_decode"),
    ]
    for name, key in rows:
        rate = ev[key]
        print(
            f"{name:<44} {rate:>11,.0f} {1e6 / rate:>10.1f} {rate / ev['naive']:>6.1f}x"
            f" {ev[key + '_cpu']:>10,.0f}"
        )
    print(
        f"alerts raised per run: {ev['alerts']:,} (firing {ev['firing']:,}, resolved "
        f"{ev['resolved']:,}); late items dropped: {ev['late']:,}"
    )
    print()
    print(
        "scored record -> signed webhook read by a local receiver (another process), through "
        f"the embedded bus and the alerter role: {lt['offered_rate']:.0f} records/s offered "
        f"for {args.duration:.0f}s by a producer process"
    )
    print(
        f"{'delivered':>12} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f" {'alerter CPU ms/alert':>21} {'CPU share':>10}"
    )
    print(
        f"{lt['delivered']:>6}/{lt['offered']:<5} {lt['p50']:>8.1f} {lt['p90']:>8.1f} "
        f"{lt['p99']:>8.1f} {lt['max']:>8.1f} {lt['alerter_cpu_ms_per_alert']:>21.2f}"
        f" {lt['alerter_cpu_share']:>9.0%}"
    )
    ok_rate = ev["ours"] >= 5000
    ok_p99 = lt["p99"] <= 100 and lt["delivered"] == lt["offered"]
    print()
    print(
        f"targets: >= 5,000 records/s with {args.rules} rules: {'PASS' if ok_rate else 'FAIL'}; "
        f"p99 <= 100 ms: {'PASS' if ok_p99 else 'FAIL'}"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "alerts",
                    "rules": args.rules,
                    "records": args.records,
                    "cpus": cpus,
                    "records_per_s": round(ev["ours"], 1),
                    "records_per_s_runs": [round(x, 1) for x in ev["ours_runs"]],
                    "records_per_cpu_s": round(ev["ours_cpu"], 1),
                    "records_per_s_with_decode": round(ev["with_decode"], 1),
                    "naive_records_per_s": round(ev["naive"], 1),
                    "speedup_vs_naive": round(ev["ours"] / ev["naive"], 2),
                    "alerts": ev["alerts"],
                    "offered_per_s": round(lt["offered_rate"], 1),
                    "delivered": lt["delivered"],
                    "offered": lt["offered"],
                    "p50_ms": round(lt["p50"], 2),
                    "p90_ms": round(lt["p90"], 2),
                    "p99_ms": round(lt["p99"], 2),
                    "max_ms": round(lt["max"], 2),
                    "alerter_cpu_ms_per_alert": round(lt["alerter_cpu_ms_per_alert"], 3),
                    "load_average": [round(load0, 2), round(load1, 2)],
                }
            )
        )
    return 0 if ok_rate and ok_p99 else 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "alerts",
        help="rule evaluation and webhook latency",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--rules", type=int, default=1000)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--naive-sample", type=int, default=2000, help="records for the baseline")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rate", type=float, default=200.0, help="records/s offered for latency")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of offered load")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="one JSON object as the last line")
    p.set_defaults(func=run)
