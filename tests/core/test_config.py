"""Config loading: every error names the key path (and the line), secrets stay masked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import load_config, masked_dump
from monitor.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "riskwire.yaml"
    path.write_text(text)
    return path


def test_empty_file_is_the_embedded_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), env={})
    assert config.bus.kind == "embedded"
    assert config.embedded_path == Path("var/bus.sqlite")
    assert config.http.port == 9464
    assert config.shutdown.grace_seconds == 10


def test_a_kafka_section_selects_kafka(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "bus:\n  kafka:\n    bootstrap: k1:9092\n"), env={})
    assert config.bus.kind == "kafka"
    assert config.bus.kafka.bootstrap == "k1:9092"


def test_unknown_key_names_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: 9000\n  prot: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert f"{path}:3: http.prot: unknown key" in str(err.value)


def test_wrong_type_shows_value_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "bus:\n  partitions: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert f"{path}:2: bus.partitions" in message
    assert "'many'" in message
    assert "integer" in message


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: -1\nshutdown:\n  grace_seconds: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert len(err.value.problems) == 2
    assert any("http.port" in p for p in err.value.problems)
    assert any("shutdown.grace_seconds" in p for p in err.value.problems)


def test_missing_env_var_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "bus:\n  kafka:\n    sasl_password: ${KAFKA_PASSWORD}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "bus.kafka.sasl_password" in str(err.value)
    assert "${KAFKA_PASSWORD} is not set" in str(err.value)
    assert ":3:" in str(err.value)


def test_env_interpolation_with_default_and_masking(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bus:\n  kafka:\n    bootstrap: ${BOOT:-b:1}\n    sasl_password: ${KAFKA_PASSWORD}\n",
    )
    config = load_config(path, env={"KAFKA_PASSWORD": "hunter2"})
    assert config.bus.kafka.bootstrap == "b:1"
    assert config.bus.kafka.sasl_password is not None
    assert config.bus.kafka.sasl_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(masked_dump(config))


def test_environment_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: 9000\nbus:\n  partitions: 2\n")
    env = {"RISKWIRE_HTTP_PORT": "9100", "RISKWIRE_BUS__PARTITIONS": "6", "RISKWIRE_BUS": "kafka"}
    config = load_config(path, env=env)
    assert config.http.port == 9100
    assert config.bus.partitions == 6
    assert config.bus.kind == "kafka"


def test_bad_override_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, ""), env={"RISKWIRE_SHUTDOWN__GRACE_SECONDS": "soon"})
    assert "environment RISKWIRE_SHUTDOWN__GRACE_SECONDS: shutdown.grace_seconds" in str(err.value)


def test_kafka_bootstrap_env_is_the_default_cluster(tmp_path: Path) -> None:
    env = {"RISKWIRE_KAFKA_BOOTSTRAP": "10.1.2.3:9092"}
    config = load_config(write(tmp_path, "bus:\n  kind: kafka\n"), env=env)
    assert config.bus.kafka.bootstrap == "10.1.2.3:9092"
    named = load_config(write(tmp_path, "bus:\n  kafka:\n    bootstrap: k9:9092\n"), env=env)
    assert named.bus.kafka.bootstrap == "k9:9092"
    assert load_config(write(tmp_path, ""), env={}).bus.kafka.bootstrap == "127.0.0.1:19092"
    # The address alone does not switch the bus to Kafka.
    assert load_config(write(tmp_path, ""), env=env).bus.kind == "embedded"


def test_not_yaml_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: [1,\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "not valid YAML" in str(err.value)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


def test_check_config_prints_effective_config_masked(tmp_path: Path) -> None:
    path = write(tmp_path, "bus:\n  kafka:\n    sasl_password: ${KP}\n")
    done = run_cli("check-config", str(path), env={"KP": "s3cret-value"})
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout
    assert "sasl_password: '**********'" in done.stdout
    assert "s3cret-value" not in done.stdout


@pytest.mark.parametrize(
    ("text", "env", "expect"),
    [
        ("bus:\n  nope: 1\n", {}, "bus.nope: unknown key"),
        ("http:\n  port: high\n", {}, "http.port"),
        ("bus:\n  kafka:\n    sasl_password: ${NOT_SET_ANYWHERE}\n", {}, "bus.kafka.sasl_password"),
    ],
    ids=["unknown-key", "wrong-type", "missing-env"],
)
def test_check_config_exits_1_with_key_path(
    tmp_path: Path, text: str, env: dict[str, str], expect: str
) -> None:
    done = run_cli("check-config", str(write(tmp_path, text)), env=env)
    assert done.returncode == 1
    assert expect in done.stderr


def test_run_with_bad_config_exits_1(tmp_path: Path) -> None:
    done = run_cli("run", "--config", str(write(tmp_path, "bogus: 1\n")))
    assert done.returncode == 1
    assert "bogus: unknown key" in done.stderr
