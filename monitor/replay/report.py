"""What a replay did, as a readable table and as one JSON object."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from monitor.records import rfc3339


class AlertKey(NamedTuple):
    """What makes two alerts "the same" across models: the rule and the group key."""

    rule: str
    key: str


@dataclass
class LaneReport:
    model: str
    model_path: str
    variant: str
    provider: str
    scored: int = 0
    unscored: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    alerts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    late: dict[str, int] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    firing: dict[AlertKey, str] = field(default_factory=dict)
    warmup: int = 0
    warmup_alerts: int = 0

    def to_dict(self) -> dict[str, Any]:
        by_rule: dict[str, dict[str, Any]] = {}
        for (rule, severity, status), n in sorted(self.alerts.items()):
            entry = by_rule.setdefault(rule, {"severity": severity, "firing": 0, "resolved": 0})
            entry[status] = entry.get(status, 0) + n
        return {
            "model": self.model,
            "model_path": self.model_path,
            "variant": self.variant,
            "provider": self.provider,
            "scored": self.scored,
            "unscored": self.unscored,
            "labels": self.labels,
            "alerts": sum(self.alerts.values()),
            "alerts_by_rule": by_rule,
            "alerts_by_severity": _by_severity(self.alerts),
            "late_by_rule": self.late,
            "warmup_items": self.warmup,
            "warmup_alerts": self.warmup_alerts,
            "outputs": self.outputs,
        }


def _by_severity(alerts: dict[tuple[str, str, str], int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_rule, severity, status), n in alerts.items():
        if status == "firing":
            out[severity] = out.get(severity, 0) + n
    return out


@dataclass
class ReplayReport:
    source: str
    read: int = 0
    bad: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    processed: int = 0
    out_of_range: int = 0
    out_of_order: int = 0
    dropped_on_stop: int = 0
    interrupted: bool = False
    first_event: datetime | None = None
    last_event: datetime | None = None
    wall_s: float = 0.0
    lanes: list[LaneReport] = field(default_factory=list)
    compare: dict[str, Any] | None = None

    @property
    def throughput(self) -> float:
        return self.processed / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "read": self.read,
            "bad": self.bad,
            "duplicates": self.duplicates,
            "errors": self.errors,
            "processed": self.processed,
            "out_of_range": self.out_of_range,
            "out_of_order": self.out_of_order,
            "dropped_on_stop": self.dropped_on_stop,
            "interrupted": self.interrupted,
            "first_event": rfc3339(self.first_event) if self.first_event else None,
            "last_event": rfc3339(self.last_event) if self.last_event else None,
            "wall_s": round(self.wall_s, 3),
            "items_per_s": round(self.throughput, 1),
            "models": [lane.to_dict() for lane in self.lanes],
            "compare": self.compare,
        }


def progress_line(rep: ReplayReport) -> str:
    lane = rep.lanes[0] if rep.lanes else None
    alerts = sum(lane.alerts.values()) if lane else 0
    last = rfc3339(rep.last_event) if rep.last_event else "-"
    if rep.read and not rep.processed:
        return f"replay: {rep.read:,} read, {rep.bad:,} bad | holding them to sort by event time"
    return (
        f"replay: {rep.read:,} read, {rep.processed:,} scored, {rep.bad:,} bad, {alerts:,} alerts"
        f" | {rep.throughput:,.0f} items/s | event time {last}"
    )


def render(rep: ReplayReport) -> str:
    """The report an analyst reads at the end of a replay."""
    lines = [f"riskwire replay — {rep.source}" + ("  [INTERRUPTED]" if rep.interrupted else "")]
    span = "-"
    if rep.first_event and rep.last_event:
        hours = (rep.last_event - rep.first_event).total_seconds() / 3600
        span = f"{rfc3339(rep.first_event)} .. {rfc3339(rep.last_event)} ({hours:,.1f} h)"
    rows = [
        ("records read", f"{rep.read:,}"),
        ("bad records skipped", f"{rep.bad:,}"),
        ("duplicate item ids skipped", f"{rep.duplicates:,}"),
        ("outside the time range", f"{rep.out_of_range:,}"),
        ("read out of event order", f"{rep.out_of_order:,}"),
        ("items scored+evaluated", f"{rep.processed:,}"),
    ]
    if rep.interrupted:
        rows.append(("dropped on stop (unscored)", f"{rep.dropped_on_stop:,}"))
    rows += [
        ("event time span written", span),
        ("wall time", f"{rep.wall_s:,.2f} s"),
        ("throughput", f"{rep.throughput:,.1f} items/s"),
    ]
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    if rep.errors:
        lines.append(f"  first {len(rep.errors)} bad records:")
        lines += [f"    - {e}" for e in rep.errors]
    for i, lane in enumerate(rep.lanes):
        tag = "model" if i == 0 else "compare model"
        lines.append("")
        lines.append(f"{tag}: {lane.model} ({lane.variant} on {lane.provider}) {lane.model_path}")
        labels = ", ".join(f"{k} {v:,}" for k, v in sorted(lane.labels.items())) or "-"
        lines.append(f"  scored {lane.scored:,}: {labels}")
        if lane.unscored:
            skipped = ", ".join(f"{k} {v:,}" for k, v in sorted(lane.unscored.items()))
            lines.append(f"  unscored {sum(lane.unscored.values()):,}: {skipped}")
        if lane.warmup:
            lines.append(
                f"  warm-up (rules only, not written): {lane.warmup:,} items, "
                f"{lane.warmup_alerts:,} alerts"
            )
        if lane.late:
            late = ", ".join(f"{k} {v:,}" for k, v in sorted(lane.late.items()))
            lines.append(f"  late for a window (dropped by the rule): {late}")
        lines.append(_alert_table(lane))
        lines.append("  outputs: " + ", ".join(lane.outputs))
    if rep.compare is not None:
        c = rep.compare
        agree = c.get("label_agreement")
        shown = f"{agree:.1%}" if isinstance(agree, float) else "-"
        lines.append("")
        lines.append(f"comparison: label agreement {shown} over {c.get('items', 0):,} items")
        for key, who in (("only_first", "first model"), ("only_second", "compare model")):
            only = c.get(key) or []
            lines.append(f"  alerts only the {who} fired: {len(only)}")
            for d in only[:10]:
                lines.append(f"    - {d['rule']} {d['key']} at {d['starts_at']}")
    return "\n".join(lines)


def _alert_table(lane: LaneReport) -> str:
    if not lane.alerts:
        return "  alerts: none"
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for (rule, severity, status), n in lane.alerts.items():
        rows.setdefault((rule, severity), {}).setdefault(status, 0)
        rows[(rule, severity)][status] += n
    w = max(len("rule"), *(len(r) for r, _ in rows))
    out = [f"  {'rule':<{w}}  {'severity':<8}  {'firing':>6}  {'resolved':>8}"]
    for (rule, severity), counts in sorted(rows.items()):
        out.append(
            f"  {rule:<{w}}  {severity:<8}  {counts.get('firing', 0):>6}  "
            f"{counts.get('resolved', 0):>8}"
        )
    return "\n".join(out)
