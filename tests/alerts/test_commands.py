"""`riskwire silence ...` and `riskwire alerts ...` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.alerts.store import AlertStore, RouteTarget
from monitor.cli import main

from .test_delivery import make_alert


@pytest.fixture
def config(tmp_path: Path) -> Path:
    f = tmp_path / "riskwire.yaml"
    f.write_text(json.dumps({"data_dir": str(tmp_path / "var")}))
    return f


def store_of(tmp_path: Path) -> AlertStore:
    return AlertStore(tmp_path / "var" / "alerts.sqlite")


def test_silence_add_list_expire(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--config", str(config)]
    assert (
        main(["silence", "add", *args, "--entity", "ACME", "--for", "2h", "--reason", "earn"]) == 0
    )
    sid = capsys.readouterr().out.split()[1].rstrip(":")
    more = ["--entity", "X", "--rule", "burst", "--for", "30m", "--reason", "noisy"]
    assert main(["silence", "add", *args, *more]) == 0
    capsys.readouterr()
    assert main(["silence", "list", *args, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["entity"], r["rule"], r["active"]) for r in rows] == [
        ("ACME", None, True),
        ("X", "burst", True),
    ]
    assert rows[0]["ends_at"] - rows[0]["starts_at"] == 7200
    assert main(["silence", "expire", *args, sid]) == 0
    assert main(["silence", "expire", *args, sid]) == 1
    capsys.readouterr()
    assert main(["silence", "list", *args]) == 0
    out = capsys.readouterr().out
    assert "ACME" not in out and "noisy" in out
    assert main(["silence", "add", *args, "--entity", "A", "--for", "soon", "--reason", "r"]) == 2


def test_alerts_dead_redeliver_and_show(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = store_of(tmp_path)
    target = RouteTarget("desk", "k", 0, 0, 0)
    alerts = [make_alert(i, entity=f"E{i}") for i in range(3)]
    for a in alerts:
        store.enqueue(a, [target], now=1.0)
    batch = store.claim("desk", now=2.0, lease_s=5, owner="t") or []
    for d in batch[:2]:
        store.mark_done(d, "dead", "HTTP 400: bad payload", now=3.0)
    args = ["--config", str(config)]
    assert main(["alerts", "dead", *args]) == 0
    out = capsys.readouterr().out
    assert "2 dead letter(s)" in out and "HTTP 400: bad payload" in out
    assert main(["alerts", "redeliver", *args, alerts[0].id]) == 0
    assert store.states() == {"pending": 2, "dead": 1}
    assert main(["alerts", "redeliver", *args, "--all"]) == 0
    assert store.states() == {"pending": 3}
    assert main(["alerts", "redeliver", *args]) == 2
    capsys.readouterr()
    assert main(["alerts", "show", *args, alerts[1].id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == alerts[1].id and shown["explain"]["conditions"]
    assert main(["alerts", "show", *args, "nope"]) == 1
    store.close()
