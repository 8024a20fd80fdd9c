"""deploy/prometheus/ against the real thing: Prometheus scrapes a real daemon and loads our rules.

The daemon runs on the embedded bus in a temporary folder; Prometheus is Debian's package
(`.ci/run` installs it when missing). The scrape job is the one from deploy/prometheus/
prometheus.yml, only pointed at the daemon's port and scraping every second.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from polling import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
RULES = PROM_DIR / "riskwire-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "riskwire.json"
PROMETHEUS = "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
PROMTOOL = shutil.which("promtool")

needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="/usr/bin/prometheus is absent (Debian package `prometheus`; .ci/run installs it)",
)
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (it ships with Debian's `prometheus`)"
)


class LineTap:
    """Reads a child's stream on a thread (so the pipe never fills) and keeps every line."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.lines[-n:])


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"pid {proc.pid} did not stop within {timeout}s of SIGTERM") from None


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, LineTap]]:
    """A real `riskwire run` on the embedded bus; yields (process, http port, stderr lines)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKWIRE_")}
    env.update(
        RISKWIRE_DATA_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
    )
    # Port 0: the OS picks a free port and the daemon logs it, so no other test can race us.
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "run", "--http-port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    tap = LineTap(proc.stderr)
    try:

        def started() -> int | None:
            assert proc.poll() is None, f"daemon exited with {proc.returncode}:\n{tap.tail()}"
            for ev in tap.events():
                if ev.get("event") == "riskwire started":
                    return int(ev["http_port"])
            return None

        port = wait_for(started, 30, "the daemon's 'riskwire started' log line")
        yield proc, port, tap
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def scrape_config(target: str) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with its riskwire job pointed at ``target``, every 1 s."""
    shipped = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = [j for j in shipped["scrape_configs"] if j["job_name"] == "riskwire"]
    assert len(jobs) == 1, "prometheus.yml must have exactly one active job named riskwire"
    job = dict(jobs[0])
    job.update(
        scrape_interval="1s",
        scrape_timeout="1s",
        static_configs=[{"targets": [target], "labels": {"role": "all"}}],
    )
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [job],
    }


def _ready(proc: subprocess.Popen[bytes], client: httpx.Client) -> bool | str:
    """True once Prometheus answers /-/ready, "exited" if it died, else False (keep waiting)."""
    if proc.poll() is not None:
        return "exited"
    try:
        return client.get("/-/ready").status_code == 200
    except httpx.TransportError:
        return False


def start_prometheus(
    cfg: Path, workdir: Path
) -> tuple[subprocess.Popen[bytes], httpx.Client, Path]:
    """Start Prometheus on a free port and wait for /-/ready.

    The port is free when chosen but another process may take it before Prometheus binds: that
    one failure is retried on a new port, anything else fails the test with Prometheus's log.
    """
    assert PROMETHEUS is not None
    for attempt in range(3):
        web = free_port()
        log = workdir / f"prometheus-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={cfg}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{web}",
                    "--log.level=warn",
                ],
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        client = httpx.Client(base_url=f"http://127.0.0.1:{web}", timeout=5.0)

        if wait_for(partial(_ready, proc, client), 30, "Prometheus /-/ready") is True:
            return proc, client, log
        client.close()
        text = log.read_text(errors="replace")
        if "address already in use" not in text:
            raise AssertionError(f"prometheus exited with {proc.returncode}:\n{text}")
    raise AssertionError("prometheus found no free port in 3 tries")


@pytest.fixture
def prometheus(
    tmp_path: Path, daemon: tuple[subprocess.Popen[bytes], int, LineTap]
) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client, Path]]:
    _, port, _ = daemon
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(scrape_config(f"127.0.0.1:{port}")), encoding="utf-8")
    proc, client, log = start_prometheus(cfg, tmp_path)
    try:
        yield proc, client, log
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def query(client: httpx.Client, expr: str) -> list[dict[str, Any]]:
    resp = client.get("/api/v1/query", params={"query": expr})
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) for every query of the dashboard, Grafana variables filled in."""
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
            expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
            out.append((panel["title"], expr))
    return out


@pytest.mark.slow
@needs_prometheus
def test_prometheus_scrapes_the_daemon_and_loads_the_rules(
    daemon: tuple[subprocess.Popen[bytes], int, LineTap],
    prometheus: tuple[subprocess.Popen[bytes], httpx.Client, Path],
) -> None:
    proc, port, tap = daemon
    prom, client, log = prometheus

    up = wait_for(
        lambda: [s for s in query(client, 'up{job="riskwire"}') if s["value"][1] == "1"],
        30,
        'up{job="riskwire"} == 1',
    )
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{port}"
    assert up[0]["metric"]["role"] == "all"  # the target label from static_configs

    build = wait_for(
        lambda: query(client, 'riskwire_build_info{job="riskwire"}'), 30, "riskwire_build_info"
    )
    assert build[0]["metric"]["bus"] == "embedded"
    assert build[0]["metric"]["version"]

    # honor_labels: each role's riskwire_role_up keeps its own role label; the target's
    # role="all" does not overwrite it (nor is it renamed exported_role).
    def roles_up() -> set[str] | None:
        series = query(client, 'riskwire_role_up{job="riskwire"}')
        assert all("exported_role" not in s["metric"] for s in series), series
        roles = {s["metric"]["role"] for s in series}
        return roles if roles == {"collector", "worker", "alerter"} else None

    wait_for(roles_up, 30, "riskwire_role_up for collector, worker and alerter")

    # Every rule of the file is loaded and has evaluated once without error.
    shipped = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    want = {g["name"]: len(g["rules"]) for g in shipped["groups"]}

    def evaluated() -> list[dict[str, Any]] | None:
        groups: list[dict[str, Any]] = client.get("/api/v1/rules").json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if len(rules) < sum(want.values()) or any(r["health"] == "unknown" for r in rules):
            return None
        return groups

    groups = wait_for(evaluated, 30, "every rule to be evaluated once")
    assert {g["name"]: len(g["rules"]) for g in groups} == want
    assert all(g["file"] == str(RULES) for g in groups)
    bad = [
        (r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"
    ]
    assert not bad, f"rules failing to evaluate: {bad}"

    # The daemon runs in an empty folder, so its worker has no model: the alert for exactly
    # that goes pending (it fires only after 5 minutes), which shows the rule matches the
    # series the real worker exports. Nothing else is wrong, so nothing else is active.
    def active() -> dict[str, str] | None:
        alerts = client.get("/api/v1/alerts").json()["data"]["alerts"]
        states = {a["labels"]["alertname"]: a["state"] for a in alerts}
        return states if "RiskwireWorkerWithoutModel" in states else None

    states = wait_for(active, 30, "RiskwireWorkerWithoutModel to go pending")
    assert states == {"RiskwireWorkerWithoutModel": "pending"}

    # A recording rule over a real series: the alerter's consumer group reports its lag.
    lag = wait_for(lambda: query(client, "riskwire:consumer_lag:sum"), 30, "consumer lag rule")
    assert {"topic": "riskwire.news.scored", "group": "riskwire-alerter"} in [
        {k: v for k, v in s["metric"].items() if k != "__name__"} for s in lag
    ]

    # Every dashboard query is valid PromQL for this Prometheus (a 400 fails `query`), and one
    # whose series all exist here returns something (a wrong label or matcher would not).
    present = set(client.get("/api/v1/label/__name__/values").json()["data"])
    # (A rate needs two scrapes of a series, and the worker's series appear when it starts.)
    for title, expr in dashboard_exprs():
        query(client, expr)
        names = set(re.findall(r"riskwire_[a-z0-9_]+", expr))
        if names <= present and "riskwire:" not in expr:
            wait_for(partial(query, client, expr), 15, f"data for panel {title!r}: {expr}")

    assert stop(proc) == 0, f"daemon did not exit cleanly:\n{tap.tail()}"
    assert any(ev.get("event") == "stopped" for ev in tap.events())
    assert stop(prom) == 0, log.read_text(errors="replace")


@needs_promtool
@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "riskwire-rules.yml"],
        ["test", "rules", "riskwire-rules.test.yml"],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool_accepts_the_shipped_files(args: list[str]) -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
