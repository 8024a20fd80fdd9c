"""Alerter: rules, windows, routing, notify pipeline, durable outbox, silences."""
