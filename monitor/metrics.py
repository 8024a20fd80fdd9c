"""Metrics shared by every stage, defined once on an injected registry.

Stage-specific metrics live beside their stage (``monitor/<stage>/metrics.py``), built the same
way: a frozen dataclass whose ``create(registry)`` registers everything on that registry. Names
follow ``riskwire_<stage>_<what>_<unit>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@dataclass(frozen=True)
class CoreMetrics:
    items: Counter
    e2e_latency: Histogram
    consumer_lag: Gauge
    dead_letters: Counter
    bus_errors: Counter
    role_up: Gauge
    build: Info

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CoreMetrics:
        return cls(
            items=Counter(
                "riskwire_items_total", "Records processed, by stage", ["stage"], registry=registry
            ),
            e2e_latency=Histogram(
                "riskwire_e2e_latency_seconds",
                "From fetch to the end of a stage, by stage reached",
                ["to_stage"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            consumer_lag=Gauge(
                "riskwire_consumer_lag",
                "Records not yet committed by a consumer group, by topic",
                ["topic", "group"],
                registry=registry,
            ),
            dead_letters=Counter(
                "riskwire_dead_letters_total",
                "Messages sent to a dead-letter topic, by source topic and stage",
                ["topic", "stage"],
                registry=registry,
            ),
            bus_errors=Counter(
                "riskwire_bus_errors_total",
                "Failed bus operations, by operation",
                ["op"],
                registry=registry,
            ),
            role_up=Gauge(
                "riskwire_role_up",
                "1 while a role runs in this process",
                ["role"],
                registry=registry,
            ),
            build=Info("riskwire_build", "Riskwire version and bus kind", registry=registry),
        )
