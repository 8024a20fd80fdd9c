"""The alerter's metrics, registered on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.metrics import LATENCY_BUCKETS


@dataclass(frozen=True)
class AlertMetrics:
    alerts: Counter
    deliveries: Counter
    delivery_latency: Histogram
    outbox_depth: Gauge
    dead_letters: Counter
    silenced: Counter
    late_events: Counter
    records: Counter
    eval_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> AlertMetrics:
        return cls(
            alerts=Counter(
                "riskwire_alerts_total",
                "Alerts raised, by rule, severity and status",
                ["rule", "severity", "status"],
                registry=registry,
            ),
            deliveries=Counter(
                "riskwire_webhook_deliveries_total",
                "Delivery outcomes, by receiver (sent, retry, dead, suppressed, silenced, ...)",
                ["receiver", "outcome"],
                registry=registry,
            ),
            delivery_latency=Histogram(
                "riskwire_alerts_delivery_latency_seconds",
                "From an alert entering the outbox to its receiver accepting it",
                ["receiver"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            outbox_depth=Gauge(
                "riskwire_alerts_outbox_depth",
                "Deliveries waiting in the outbox, by receiver",
                ["receiver"],
                registry=registry,
            ),
            dead_letters=Counter(
                "riskwire_alerts_dead_letters_total",
                "Deliveries given up and kept as dead letters, by receiver",
                ["receiver"],
                registry=registry,
            ),
            silenced=Counter(
                "riskwire_alerts_silenced_total",
                "Alerts recorded but not sent because a silence or an inhibition matched",
                ["rule", "reason"],
                registry=registry,
            ),
            late_events=Counter(
                "riskwire_alerts_late_events_total",
                "Items dropped by a windowed rule because they came later than allowed",
                ["rule"],
                registry=registry,
            ),
            records=Counter(
                "riskwire_alerts_records_total",
                "Scored records evaluated by the alerter",
                registry=registry,
            ),
            eval_seconds=Histogram(
                "riskwire_alerts_eval_seconds",
                "Time to evaluate one batch of scored records",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
        )
