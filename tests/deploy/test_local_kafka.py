"""deploy/kafka/local_kafka.py: a real broker up and down, stopped by its own pid only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from kafka import KafkaAdminClient

LAUNCHER = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "local_kafka.py"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LAUNCHER), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.kafka
@pytest.mark.slow
def test_cli_up_status_down_on_a_free_port(tmp_path: Path) -> None:
    state = tmp_path / "run"
    up = _cli("up", "--port", "0", "--dir", str(state))
    assert up.returncode == 0, up.stderr
    bootstrap = up.stdout.strip().splitlines()[-1]
    host, port = bootstrap.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert (state / "bootstrap").read_text().strip() == bootstrap
    pid = int((state / "broker.pid").read_text())
    try:
        assert "kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        # It really serves Kafka's protocol: the cluster is our one KRaft node.
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            cluster = admin.describe_cluster()
            assert cluster["cluster_id"] == "5L6g3nShT-eMCtK--X86sw"
            assert [(b["broker_id"], b["port"]) for b in cluster["brokers"]] == [(1, int(port))]
        finally:
            admin.close()

        status = _cli("status", "--dir", str(state))
        assert status.returncode == 0
        assert f"pid={pid}" in status.stdout and bootstrap in status.stdout

        again = _cli("up", "--port", "0", "--dir", str(state))
        assert again.returncode == 0 and again.stdout.strip() == bootstrap  # idempotent
    finally:
        down = _cli("down", "--dir", str(state))
    assert down.returncode == 0, down.stderr
    assert _wait_gone(pid)
    assert not (state / "broker.pid").exists() and not (state / "data").exists()
    assert _cli("status", "--dir", str(state)).returncode == 1


@pytest.mark.kafka
@pytest.mark.slow
def test_start_broker_api_and_stop_by_own_pid(tmp_path: Path, local_kafka: ModuleType) -> None:
    broker = local_kafka.start_broker(tmp_path / "b", 0)
    try:
        assert broker.alive()
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        assert broker.port != broker.controller_port
        assert "Kafka Server started" in broker.log_path.read_text()
        found = local_kafka.read_broker(tmp_path / "b")
        assert found is not None and found.pid == broker.pid
    finally:
        broker.stop()
    assert not broker.alive()
    assert local_kafka.read_broker(tmp_path / "b") is None


def test_stop_never_signals_a_pid_that_is_not_this_broker(
    tmp_path: Path, local_kafka: ModuleType
) -> None:
    # A stale pid file whose pid now belongs to some other process (pid reuse).
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        state = tmp_path / "stale"
        state.mkdir()
        (state / "broker.pid").write_text(f"{other.pid}\n")
        (state / "bootstrap").write_text("127.0.0.1:1\n")
        assert local_kafka.stop_broker(state) is False
        assert other.poll() is None, "an unrelated process was signalled"
        assert not (state / "broker.pid").exists()
    finally:
        os.kill(other.pid, signal.SIGKILL)
        other.wait()


def test_fetch_without_maven_says_so(
    tmp_path: Path, local_kafka: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with neither mvn nor java
    with pytest.raises(local_kafka.KafkaLauncherError, match="`mvn` not found"):
        local_kafka.fetch(tmp_path / "libs")


def test_busy_port_is_refused_before_starting(tmp_path: Path, local_kafka: ModuleType) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(local_kafka.KafkaLauncherError, match="already in use"):
            local_kafka.start_broker(tmp_path / "busy", port)


def test_kafka_port_env_is_validated(tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_PORT": "not-a-port"}
    result = _cli("up", "--dir", str(tmp_path / "x"), env=env)
    assert result.returncode == 1
    assert "KAFKA_PORT must be a port number" in result.stderr
