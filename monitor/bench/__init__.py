"""Benchmarks (`riskwire bench ...`): each measures ours beside a baseline in the same run.

Each module here exposes ``register(subparsers)``; each prints a readable table and, with
``--json``, one JSON object on its last line.
"""
