"""``riskwire silence ...`` and ``riskwire alerts ...``: operate on the alerter's outbox store.

Both find the store through ``--config FILE`` (``alerts.outbox_path``, else
``<data_dir>/alerts.sqlite``); a running alerter sees changes at once (silences apply at send
time, redelivered rows are picked up by its workers).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from monitor.alerts.config import parse_duration
from monitor.alerts.store import AlertStore
from monitor.config import Config, load_config
from monitor.errors import ConfigError


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _store(args: argparse.Namespace) -> AlertStore:
    cfg = _config(args)
    return AlertStore(cfg.alerts.outbox(cfg.data_dir))


Command = Callable[[argparse.Namespace], int]


def _guard(fn: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = fn(args)
            return code
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2

    return run


# --- silence ---------------------------------------------------------------------------------


def _silence_add(args: argparse.Namespace) -> int:
    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        print(f"riskwire silence add: --for: {exc}", file=sys.stderr)
        return 2
    if duration <= 0:
        print("riskwire silence add: --for must be > 0", file=sys.stderr)
        return 2
    store = _store(args)
    s = store.add_silence(
        args.entity, args.rule, now=time.time(), duration_s=duration, reason=args.reason
    )
    store.close()
    print(f"silence {s.id}: entity={s.entity} rule={s.rule or '*'} until {_when(s.ends_at)}")
    return 0


def _silence_list(args: argparse.Namespace) -> int:
    store = _store(args)
    now = time.time()
    rows = store.silences() if args.all else store.silences(now=now)
    store.close()
    if args.json:
        for s in rows:
            print(json.dumps({**s.__dict__, "active": s.active(now)}))
        return 0
    print(f"{'ID':<13} {'ENTITY':<16} {'RULE':<24} {'UNTIL':<21} {'STATE':<8} REASON")
    for s in rows:
        state = "active" if s.active(now) else ("expired" if s.expired_at else "ended")
        until = _when(s.ends_at)
        print(f"{s.id:<13} {s.entity:<16} {s.rule or '*':<24} {until:<21} {state:<8} {s.reason}")
    return 0


def _silence_expire(args: argparse.Namespace) -> int:
    store = _store(args)
    ok = store.expire_silence(args.id, now=time.time())
    store.close()
    if not ok:
        print(f"riskwire silence expire: no active silence {args.id!r}", file=sys.stderr)
        return 1
    print(f"silence {args.id} expired")
    return 0


# --- alerts ----------------------------------------------------------------------------------


def _alerts_dead(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = store.dead()
    store.close()
    if args.json:
        for d in rows:
            print(json.dumps(d.__dict__))
        return 0
    head = ("SEQ", "ALERT", "RECEIVER", "RULE", "ENTITY", "TRIES")
    print("{:>6} {:<25} {:<14} {:<22} {:<10} {:>5}  REASON".format(*head))
    for d in rows:
        print(
            f"{d.seq:>6} {d.alert_id:<25} {d.receiver:<14} {d.rule:<22} {d.entity or '-':<10}"
            f" {d.attempts:>5}  {d.reason}"
        )
    print(f"{len(rows)} dead letter(s)")
    return 0


def _alerts_redeliver(args: argparse.Namespace) -> int:
    if not args.all and not args.id:
        print("riskwire alerts redeliver: give an alert id (or seq) or --all", file=sys.stderr)
        return 2
    store = _store(args)
    n = store.redeliver(now=time.time(), alert_id=None if args.all else args.id)
    store.close()
    print(f"{n} delivery(ies) back in the outbox")
    return 0 if n or args.all else 1


def _alerts_show(args: argparse.Namespace) -> int:
    store = _store(args)
    row = (
        store._conn()
        .execute(
            "SELECT body FROM alerts WHERE id=? OR fingerprint=? ORDER BY seq DESC", (args.id,) * 2
        )
        .fetchone()
    )
    store.close()
    if row is None:
        print(f"riskwire alerts show: no alert {args.id!r}", file=sys.stderr)
        return 1
    print(json.dumps(json.loads(row[0]), indent=2))
    return 0


def _alerts_deliver(args: argparse.Namespace) -> int:
    """Run only the delivery workers on the outbox until SIGTERM/SIGINT (drain, operate)."""
    from prometheus_client import CollectorRegistry

    from monitor.alerts.delivery import Deliverer
    from monitor.alerts.metrics import AlertMetrics
    from monitor.logs import setup_logging

    cfg = _config(args)
    setup_logging(cfg.log.level)
    store = AlertStore(cfg.alerts.outbox(cfg.data_dir))
    store.start_checkpointer()
    deliverer = Deliverer.from_config(
        cfg.alerts,
        store,
        data_dir=cfg.data_dir,
        metrics=AlertMetrics.create(CollectorRegistry()),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    deliverer.start()
    print("delivering", flush=True)
    while not stop.is_set():
        stop.wait(0.5)
        if args.until_empty and not store.depth():
            break
    deliverer.stop()
    store.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, default=None, help="the daemon's YAML config")
        return p

    sil = subparsers.add_parser("silence", help="add, list and expire alert silences")
    ssub = sil.add_subparsers(dest="silence_cmd", metavar="ACTION", required=True)
    add = with_config(ssub.add_parser("add", help="silence an entity (optionally one rule)"))
    add.add_argument("--entity", required=True)
    add.add_argument("--rule", default=None)
    add.add_argument("--for", dest="duration", required=True, help="e.g. 30m, 2h, 1d")
    add.add_argument("--reason", required=True)
    add.set_defaults(func=_guard(_silence_add))
    ls = with_config(ssub.add_parser("list", help="active silences (--all: every one)"))
    ls.add_argument("--all", action="store_true")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_guard(_silence_list))
    ex = with_config(ssub.add_parser("expire", help="end a silence now"))
    ex.add_argument("id")
    ex.set_defaults(func=_guard(_silence_expire))

    al = subparsers.add_parser("alerts", help="list dead-lettered alerts, redeliver them")
    asub = al.add_subparsers(dest="alerts_cmd", metavar="ACTION", required=True)
    dead = with_config(asub.add_parser("dead", help="deliveries given up, with the reason"))
    dead.add_argument("--json", action="store_true")
    dead.set_defaults(func=_guard(_alerts_dead))
    red = with_config(asub.add_parser("redeliver", help="put dead letters back in the outbox"))
    red.add_argument("id", nargs="?", help="alert id (or delivery seq)")
    red.add_argument("--all", action="store_true")
    red.set_defaults(func=_guard(_alerts_redeliver))
    show = with_config(asub.add_parser("show", help="an alert with its explanation"))
    show.add_argument("id", help="alert id or fingerprint")
    show.set_defaults(func=_guard(_alerts_show))
    dl = with_config(asub.add_parser("deliver", help="run only the delivery workers"))
    dl.add_argument("--until-empty", action="store_true", help="exit once nothing is pending")
    dl.set_defaults(func=_guard(_alerts_deliver))
