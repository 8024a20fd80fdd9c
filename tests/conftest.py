"""Session-wide fixtures. Area fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# kafka-python 3.0.12 loads its protocol schemas with importlib.resources.open_text at import
# time; the DeprecationWarning is attributed to importlib, so pyproject's `kafka.*` filter misses
# it and -W error would fail collection. Import it once here, with that one warning silenced.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "open_text is deprecated", DeprecationWarning)
    import kafka  # noqa: F401


# --- Kafka: one real broker per test session ----------------------------------------------------
# `make test` and `.ci/run` start a broker with deploy/kafka/local_kafka.py and pass its address in
# RISKWIRE_TEST_KAFKA_BOOTSTRAP; a bare `pytest` starts a private one on a free port on first use.

KAFKA_ENV = "RISKWIRE_TEST_KAFKA_BOOTSTRAP"
_LAUNCHER = Path(__file__).resolve().parent.parent / "deploy" / "kafka" / "local_kafka.py"
_kafka_used = pytest.StashKey[str]()


def load_local_kafka() -> ModuleType:
    """deploy/kafka/local_kafka.py as a module (deploy/ is not a package)."""
    name = "riskwire_local_kafka"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _LAUNCHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def local_kafka() -> ModuleType:
    return load_local_kafka()


@pytest.fixture(scope="session")
def kafka_bootstrap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """host:port of a real Kafka broker for this session."""
    external = os.environ.get(KAFKA_ENV)
    if external:
        request.config.stash[_kafka_used] = f"external broker at {external} (${KAFKA_ENV})"
        yield external
        return
    launcher = load_local_kafka()
    broker = launcher.start_broker(tmp_path_factory.mktemp("kafka"), 0)
    request.config.stash[_kafka_used] = (
        f"private Kafka {launcher.KAFKA_VERSION} broker at {broker.bootstrap} "
        f"(pid {broker.pid}), started and stopped by this session"
    )
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def pytest_report_header(config: pytest.Config) -> str:
    external = os.environ.get(KAFKA_ENV)
    if external:
        return f"kafka: tests marked `kafka` use the broker at {external} (${KAFKA_ENV})"
    return "kafka: tests marked `kafka` start a private broker (deploy/kafka/local_kafka.py)"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    used = terminalreporter.config.stash.get(_kafka_used, None)
    line = f"kafka: {used}" if used else "kafka: no test used a Kafka broker"
    terminalreporter.write_line(line, bold=used is not None)
