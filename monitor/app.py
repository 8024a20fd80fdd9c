"""Wiring of the daemon: open the bus, start the HTTP port and the roles, stop them in order.

Start order: HTTP port (so /healthz answers at once) -> bus (retried until reachable; /readyz
says why it is not ready meanwhile) -> topics -> roles, each in its own thread.
Stop order (SIGTERM/SIGINT): roles stop taking work, finish the batch in hand, flush and commit;
we wait at most the grace period, log any role still running, then close the bus and the HTTP
port. A second signal forces an immediate exit. SIGHUP asks every role to reload.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.bus import Bus, open_bus
from monitor.config import ALL_ROLES, Config, load_config, masked_dump
from monitor.errors import ConfigError, RiskwireError, RoleUnavailable
from monitor.http import Probe, StatusServer
from monitor.logs import get_logger, setup_logging
from monitor.metrics import CoreMetrics
from monitor.roles import RoleContext, RoleFactory, RoleRunner, load_role

log = get_logger("app")
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
# Longest the main thread sleeps in one join while stopping (signal handlers run between).
JOIN_SLICE_S = 0.2


@dataclass
class _RoleThread:
    runner: RoleRunner
    ctx: RoleContext
    thread: threading.Thread


@dataclass
class Daemon:
    """One Riskwire process: some roles, one bus, one HTTP port."""

    config: Config
    roles: Sequence[str]
    config_path: Path | None = None
    #: Role builders by name; default: each role's module (monitor.roles.ROLE_MODULES).
    factories: Mapping[str, RoleFactory] | None = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    stop_event: threading.Event = field(default_factory=threading.Event)
    unavailable: dict[str, str] = field(default_factory=dict)
    _bus: Bus | None = None
    _bus_error: str | None = "not opened yet"
    _threads: list[_RoleThread] = field(default_factory=list)
    _http: StatusServer | None = None
    _failed: threading.Event = field(default_factory=threading.Event)
    _starter: threading.Thread | None = None
    # Held while a role is being started, so shutdown never closes the bus under a starting role.
    _start_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.metrics = CoreMetrics.create(self.registry)
        self.metrics.build.info({"version": __version__, "bus": str(self.config.bus.kind)})

    # --- status ---------------------------------------------------------------------------

    @property
    def http_port(self) -> int:
        assert self._http is not None
        return self._http.port

    def _liveness(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "roles": {t.runner.name: t.thread.is_alive() for t in self._threads},
            "unavailable_roles": self.unavailable,
        }

    def _readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons: list[str] = []
        bus_ok = self._bus is not None and self._bus.ping(timeout=1.0)
        if not bus_ok:
            reasons.append(
                f"bus ({self.config.bus.kind}) unreachable: {self._bus_error or 'ping failed'}"
            )
        roles: dict[str, bool] = {}
        for t in self._threads:
            ok = t.thread.is_alive() and t.runner.ready()
            roles[t.runner.name] = ok
            if not ok:
                reasons.append(f"role {t.runner.name} not ready")
        if self.stop_event.is_set():
            reasons.append("shutting down")
        return not reasons, {
            "bus": bus_ok,
            "roles": roles,
            "reasons": reasons,
            "unavailable_roles": self.unavailable,
        }

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._http = StatusServer(
            self.config.http.host,
            self.config.http.port,
            self.registry,
            Probe(liveness=self._liveness, readiness=self._readiness),
        )
        self._http.start()
        self._starter = threading.Thread(
            target=self._open_bus_and_start_roles, name="starter", daemon=True
        )
        self._starter.start()

    def _open_bus_and_start_roles(self) -> None:
        try:
            self._start_roles_when_bus_opens()
        except Exception:
            log.exception("start-up failed; stopping the process")
            self._failed.set()
            self.stop_event.set()

    def _start_roles_when_bus_opens(self) -> None:
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                bus = open_bus(self.config)
                topics = self.config.bus.topics
                names = [topics.raw, topics.scored, topics.alerts]
                bus.ensure_topics(
                    [*names, *(f"{n}.dlq" for n in names)], self.config.bus.partitions
                )
            except RiskwireError as exc:
                self._bus_error = str(exc)
                self.metrics.bus_errors.labels(op="open").inc()
                log.warning(
                    "bus not reachable yet, retrying",
                    extra={"bus": self.config.bus.kind, "error": str(exc), "retry_s": delay},
                )
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            self._bus, self._bus_error = bus, None
            log.info("bus open", extra={"bus": bus.kind})
            break
        if self._bus is None:
            return
        for name in self.roles:
            with self._start_lock:
                if self.stop_event.is_set():
                    log.info(
                        "stop requested during start-up; roles not started",
                        extra={"roles": self.roles[self.roles.index(name) :]},
                    )
                    return
                self._start_role(name)

    def _start_role(self, name: str) -> None:
        assert self._bus is not None
        try:
            build = (self.factories or {}).get(name) or load_role(name)
        except RoleUnavailable as exc:
            self.unavailable[name] = str(exc)
            log.warning("role unavailable", extra={"role": name, "reason": str(exc)})
            return
        ctx = RoleContext(
            config=self.config,
            bus=self._bus,
            registry=self.registry,
            config_path=self.config_path,
            core=self.metrics,
        )
        runner = build(ctx)
        thread = threading.Thread(target=self._run_role, args=(runner,), name=name, daemon=True)
        self._threads.append(_RoleThread(runner, ctx, thread))
        self.metrics.role_up.labels(role=name).set(1)
        thread.start()
        log.info("role started", extra={"role": name})

    def _run_role(self, runner: RoleRunner) -> None:
        try:
            runner.run(self.stop_event)
        except BaseException:
            log.exception("role crashed; stopping the process", extra={"role": runner.name})
            self._failed.set()
            self.stop_event.set()
        finally:
            self.metrics.role_up.labels(role=runner.name).set(0)

    def reload(self) -> None:
        log.info("reload requested (SIGHUP)")
        for t in self._threads:
            t.ctx.reload.set()

    def wait(self) -> int:
        """Block until stop is requested, then stop in order. Returns the exit code."""
        while not self.stop_event.wait(0.5):
            pass
        return self.shutdown()

    def shutdown(self) -> int:
        self.stop_event.set()
        deadline = time.monotonic() + self.config.shutdown.grace_seconds
        # Once we hold the lock no role is half-started, and the starter starts no more. Taken in
        # slices too (see below), and given up at the deadline if a role's start hangs.
        while not self._start_lock.acquire(timeout=JOIN_SLICE_S):
            if time.monotonic() >= deadline:
                break
        else:
            self._start_lock.release()
        for t in self._threads:
            # Joined in short slices: the kernel may hand a signal to any thread, and its Python
            # handler runs only when the main thread wakes, so one long join would make a second
            # Ctrl-C wait out the whole grace period instead of forcing the exit.
            while t.thread.is_alive() and (left_s := deadline - time.monotonic()) > 0:
                t.thread.join(min(JOIN_SLICE_S, left_s))
        left = [t.runner.name for t in self._threads if t.thread.is_alive()]
        if left:
            log.error(
                "grace period over; roles still running are abandoned",
                extra={"roles": left, "grace_s": self.config.shutdown.grace_seconds},
            )
        if self._bus is not None and not left:
            self._bus.close()
        if self._http is not None:
            self._http.stop()
        code = EXIT_ERROR if (left or self._failed.is_set()) else EXIT_OK
        log.info("stopped", extra={"exit_code": code})
        return code


# --- commands ----------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if getattr(args, "http_port", None) is not None:
        overrides["http.port"] = args.http_port
    if getattr(args, "grace", None) is not None:
        overrides["shutdown.grace_seconds"] = args.grace
    return load_config(args.config, overrides=overrides)


def install_signals(daemon: Daemon) -> None:
    """SIGTERM/SIGINT: graceful stop, a second one forces exit (130). SIGHUP: reload."""
    hits = {"n": 0}

    def on_stop(signum: int, frame: FrameType | None) -> None:
        hits["n"] += 1
        if hits["n"] > 1:
            # The operator insists: do not wait for the grace period.
            os.write(2, b'{"level":"error","event":"second signal: forced exit"}\n')
            os._exit(130)
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        daemon.stop_event.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda s, f: daemon.reload())


def run_command(args: argparse.Namespace) -> int:
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"riskwire run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    setup_logging(args.log_level or config.log.level)
    roles = list(dict.fromkeys(args.role)) if args.role else list(config.roles)
    if args.role:
        for name in roles:
            try:
                load_role(name)
            except RoleUnavailable as exc:
                print(f"riskwire run: --role {name}: {exc}", file=sys.stderr)
                return EXIT_USAGE
    daemon = Daemon(config, roles, config_path=Path(args.config) if args.config else None)
    install_signals(daemon)
    daemon.start()
    log.info(
        "riskwire started",
        extra={
            "version": __version__,
            "roles": roles,
            "bus": config.bus.kind,
            "http_port": daemon.http_port,
        },
    )
    return daemon.wait()


def check_config_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ERROR
    print(f"# {args.file}: valid. Effective configuration (secrets masked):")
    print(yaml.safe_dump(masked_dump(config), sort_keys=False), end="")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = subparsers.add_parser(
        "run",
        help="run the daemon (all roles, or --role ...)",
        description=(
            "Run Riskwire. With no --config it runs on the embedded bus (one SQLite file under "
            "data_dir) with built-in defaults. SIGTERM/SIGINT stop it gracefully (second signal "
            "forces exit); SIGHUP reloads feeds, rules and the model."
        ),
        epilog=(
            "examples:\n"
            "  riskwire run --config monitor/demo/riskwire.yaml\n"
            "  riskwire run --config prod.yaml --role worker --http-port 9465\n"
            "  RISKWIRE_BUS=kafka RISKWIRE_KAFKA_BOOTSTRAP=kafka:9092 riskwire run"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", "-c", metavar="FILE", help="YAML config (default: built-ins)")
    run.add_argument(
        "--role",
        action="append",
        choices=list(ALL_ROLES),
        help="run only this role (repeatable); default: the config's roles",
    )
    run.add_argument(
        "--http-port",
        type=int,
        default=_env_int("RISKWIRE_HTTP_PORT"),
        help="port for /metrics /healthz /readyz (default 9464; env RISKWIRE_HTTP_PORT)",
    )
    run.add_argument("--grace", type=float, help="shutdown grace period in seconds (default 10)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=run_command)

    check = subparsers.add_parser(
        "check-config",
        help="validate a config file and print the effective config",
        description="Validate FILE (with env interpolation and RISKWIRE_* overrides applied) and "
        "print the effective configuration with secrets masked. Exit 1 on any error.",
    )
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=check_config_command)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    return int(raw) if raw and raw.isdigit() else None
