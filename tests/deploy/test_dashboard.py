"""The Grafana dashboard and the Prometheus rules only name metrics that really exist.

"Exist" means: defined in the code under monitor/ (a ``"riskwire_..."`` string literal where a
metric is created), or recorded by deploy/prometheus/riskwire-rules.yml. Renaming a metric in
the code without updating deploy/ fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "riskwire.json"
RULES = ROOT / "deploy" / "prometheus" / "riskwire-rules.yml"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"

# Names a deploy file may use before the code defines them (a stage still being written):
# allowed while missing; test_awaited_metrics_are_still_missing fails once one lands, so the
# allowance never outlives the gap. Empty now: every name used is defined.
AWAITED: set[str] = set()

# Series names prometheus_client derives from a metric's name, by type.
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_info")
_METRIC_LITERAL = re.compile(r"""["'](riskwire_[a-z0-9_]+)["']""")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def code_metric_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "monitor").rglob("*.py"):
        names.update(_METRIC_LITERAL.findall(path.read_text(encoding="utf-8")))
    return names


def rules_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return doc


def recorded_names() -> set[str]:
    return {r["record"] for g in rules_doc()["groups"] for r in g["rules"] if "record" in r}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def metric_names_in(expr: str) -> set[str]:
    """riskwire series names an expression reads (labels, strings and $variables removed)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, regexes
    bare = re.sub(r"\{[^}]*\}", "", bare)  # label matchers
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range selectors
    bare = re.sub(r"\$\{?\w+\}?", "", bare)  # Grafana variables
    return {m for m in _IDENT.findall(bare) if m.startswith("riskwire")}


def is_defined(name: str, code: set[str], recorded: set[str]) -> bool:
    if name in recorded or name in code:
        return True
    return any(name.endswith(s) and name[: -len(s)] in code for s in _SUFFIXES)


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le) (rate(riskwire_e2e_latency_seconds_bucket"
        '{instance=~"$instance",x="riskwire_not_a_metric"}[$__rate_interval])))'
        " / riskwire:items:rate1m"
    )
    assert metric_names_in(expr) == {"riskwire_e2e_latency_seconds_bucket", "riskwire:items:rate1m"}
    code = {"riskwire_e2e_latency_seconds", "riskwire_items_total", "riskwire_build"}
    assert is_defined("riskwire_e2e_latency_seconds_bucket", code, set())
    assert is_defined("riskwire_build_info", code, set())
    assert not is_defined("riskwire_e2e_latency_bucket", code, set())


def test_code_defines_the_core_metrics() -> None:
    # Guards the scan itself: if it found nothing, every check below would pass vacuously.
    assert {"riskwire_items_total", "riskwire_role_up", "riskwire_consumer_lag"} <= (
        code_metric_names()
    )


def test_dashboard_parses_and_is_provisionable() -> None:
    doc = dashboard()
    assert doc["uid"] == "riskwire-overview"
    assert doc["title"] == "Riskwire"
    names = [v["name"] for v in doc["templating"]["list"]]
    assert names == ["datasource", "instance"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t["expr"].strip(), f"panel {p['title']!r} has an empty query"

    # The provisioned data source has the uid the dashboard's variable defaults to, and the
    # dashboard provider reads the folder compose and Kubernetes mount the JSON into.
    ds = yaml.safe_load((PROVISIONING / "datasources" / "riskwire.yml").read_text())
    assert ds["datasources"][0]["uid"] == doc["templating"]["list"][0]["current"]["value"]
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "riskwire.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/riskwire"


def test_panels_do_not_overlap() -> None:
    taken: dict[tuple[int, int], str] = {}
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{p['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = p["title"]


def test_dashboard_covers_every_stage() -> None:
    used = {n for p in panels() for t in p["targets"] for n in metric_names_in(t["expr"])}
    bases = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    for want in (
        "riskwire_items_total",
        "riskwire_e2e_latency_seconds",
        "riskwire_inference_batch_size",
        "riskwire_inference_seconds",
        "riskwire_consumer_lag",
        "riskwire_feed_fetches_total",
        "riskwire_alerts_total",
        "riskwire_webhook_deliveries_total",
        "riskwire_dead_letters_total",
        "riskwire_role_up",
    ):
        assert want in bases, f"the dashboard has no panel on {want}"


def test_awaited_metrics_are_still_missing() -> None:
    landed = AWAITED & code_metric_names()
    assert not landed, f"now defined in monitor/: remove {sorted(landed)} from AWAITED"


def test_dashboard_reads_only_defined_metrics() -> None:
    code, recorded = code_metric_names() | AWAITED, recorded_names()
    unknown = sorted(
        (n, p["title"])
        for p in panels()
        for t in p["targets"]
        for n in metric_names_in(t["expr"])
        if not is_defined(n, code, recorded)
    )
    assert not unknown, f"dashboard queries name metrics nothing defines: {unknown}"


def test_rules_read_only_defined_metrics() -> None:
    code, recorded = code_metric_names() | AWAITED, recorded_names()
    unknown = sorted(
        (n, r.get("record") or r.get("alert"))
        for g in rules_doc()["groups"]
        for r in g["rules"]
        for n in metric_names_in(r["expr"])
        if not is_defined(n, code, recorded)
    )
    assert not unknown, f"rules name metrics nothing defines: {unknown}"
