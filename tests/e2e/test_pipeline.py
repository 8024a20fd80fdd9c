"""The whole daemon, as a user runs it: feeds -> collector -> worker -> alerter -> receiver.

One `riskwire run` process with every role, on the embedded bus and on a real Kafka broker, a
model directory built by exporters/tiny.py, a saved RSS file and rules that fire on it. The
alert must reach the file receiver with its explanation, every stage must count every item, the
process must never load torch, and SIGTERM must end it cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from exporters.tiny import build_tiny_model_dir
from polling import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
ENTITY = "ACME"
TITLES = [
    "Acme Corp discloses data breach affecting 2 million customers",
    "Regulators open probe into Acme Corp data breach",
    "Acme Corp faces class action over customer data breach",
    "Acme Corp shares tumble after breach disclosure",
    "Globex wins multi-year contract worth $285 million",
]


def rss(titles: list[str]) -> str:
    items = "".join(
        f"<item><title>{t}</title><link>https://news.example/{i}</link>"
        f"<guid>news-{i}</guid><pubDate>Mon, 23 Nov 2026 {9 + i:02d}:00:00 GMT</pubDate>"
        f"<description>{t}.</description></item>"
        for i, t in enumerate(titles)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Test wire</title><link>https://news.example/</link>{items}</channel></rss>"
    )


def metric(port: int, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("model") / "tiny", layers=1)


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_section(request: pytest.FixtureRequest) -> Iterator[dict[str, object]]:
    if request.param == "embedded":
        yield {"partitions": 2}
        return
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    run = uuid.uuid4().hex[:8]
    yield {
        "partitions": 2,
        "kafka": {"bootstrap": bootstrap},
        # Fresh topics per run, so two runs never read each other's records.
        "topics": {
            "raw": f"e2e-{run}.raw",
            "scored": f"e2e-{run}.scored",
            "alerts": f"e2e-{run}.alerts",
        },
    }


def write_config(tmp_path: Path, model_dir: Path, bus: dict[str, object]) -> Path:
    (tmp_path / "wire.rss").write_text(rss(TITLES), encoding="utf-8")
    (tmp_path / "watchlist.yaml").write_text(
        yaml.safe_dump(
            {"entities": [{"id": ENTITY, "name": "Acme Corp", "ticker": ENTITY, "aliases": []}]}
        )
    )
    config = {
        "data_dir": str(tmp_path / "var"),
        "bus": bus,
        "collect": {
            "watchlist": str(tmp_path / "watchlist.yaml"),
            "interval_s": 5,
            "feeds": [{"id": "wire", "kind": "file", "path": str(tmp_path / "wire.rss")}],
        },
        "score": {"model_dir": str(model_dir), "variant": "int8"},
        "alerts": {
            "rules": [
                {
                    "name": "breach_story",
                    "match": {"keywords": ["breach"], "entities": [ENTITY]},
                    "severity": "critical",
                },
                {
                    "name": "busy_entity",
                    "match": {"entities": [ENTITY]},
                    "window": {"size": "1d", "allowed_lateness": "1d"},
                    "condition": {"count": {"min": 3}},
                    "severity": "warning",
                },
            ],
            "receivers": [{"type": "file", "name": "out", "path": "alerts.jsonl"}],
            "route": {"receiver": "out", "group_wait": "0s", "group_interval": "1s"},
        },
    }
    path = tmp_path / "riskwire.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def read_alerts(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_news_to_alert_through_every_role(
    tmp_path: Path, model_dir: Path, bus_section: dict[str, object]
) -> None:
    config = write_config(tmp_path, model_dir, bus_section)
    check = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor.cli",
            "run",
            "--config",
            str(config),
            "--http-port",
            str(port),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    alerts_file = tmp_path / "var" / "alerts.jsonl"
    try:

        def delivered() -> bool:
            rules = {a["rule"] for a in read_alerts(alerts_file)}
            return {"breach_story", "busy_entity"} <= rules

        wait_for(delivered, 120, "the alerts to reach the file receiver")
        for stage in ("collect", "score", "alerter"):
            wait_for(
                lambda s=stage: (
                    metric(port, "riskwire_items_total", f'stage="{s}"')  # type: ignore[misc]
                    >= len(TITLES)
                ),
                30,
                f"stage {stage} to count every item",
            )
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "libtorch" not in maps, "the daemon loaded torch"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        stderr = proc.stderr.read() if proc.stderr else ""
    assert rc == 0, stderr[-4000:]

    alerts = read_alerts(alerts_file)
    breach = [a for a in alerts if a["rule"] == "breach_story"]
    # Three breach stories, one fingerprint (rule + entity): notified once per repeat interval.
    assert len(breach) == 1
    first = breach[0]
    assert first["schema"] == "riskwire.alert/1"
    assert first["entity"] == ENTITY and first["severity"] == "critical"
    items = first["items"]
    assert isinstance(items, list) and items and "breach" in items[0]["title"]
    assert items[0]["url"].startswith("https://news.example/")
    assert first["explain"], "an alert must say why it fired"
    busy = next(a for a in alerts if a["rule"] == "busy_entity")
    assert busy["entity"] == ENTITY
    assert len(busy["items"]) >= 3  # type: ignore[arg-type]
