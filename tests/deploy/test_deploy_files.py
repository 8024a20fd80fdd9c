"""The deployment files agree with the daemon: configs load, ports, probes, grace periods, secrets.

No Docker engine or Kubernetes cluster runs here, so these check what can be checked without
one: the configs go through the daemon's own loader, the manifests through `kubectl kustomize`
(when kubectl is installed), the units through `systemd-analyze verify`, the compose Prometheus
config through `promtool`, and the cross-references between files (secret keys, mounted paths,
the shutdown grace against every stop timeout) by reading them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import Config, load_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
DOCKER = DEPLOY / "docker"
ROLES = ("collector", "worker", "alerter")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


def seconds(text: str | int | float) -> float:
    """'30s' / '2m' / 30 -> seconds."""
    if isinstance(text, int | float):
        return float(text)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|min)?", text.strip())
    assert m, f"not a duration: {text!r}"
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, None: 1.0}[m.group(2)]
    return float(m.group(1)) * unit


def env_refs(text: str) -> set[str]:
    """${NAME} references outside YAML comments."""
    live = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return set(_ENV_REF.findall(live))


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def k8s_objects() -> list[dict[str, Any]]:
    return [d for p in sorted(K8S.glob("*.yaml")) for d in yaml_docs(p)]


def k8s_config_text() -> str:
    (cm,) = [o for o in k8s_objects() if o["kind"] == "ConfigMap"]
    text: str = cm["data"]["riskwire.yaml"]
    return text


def load(text: str, tmp_path: Path, env: dict[str, str]) -> Config:
    path = tmp_path / "riskwire.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env=env)


# --- the configs the deployments ship -------------------------------------------------------


def test_compose_config_loads(tmp_path: Path) -> None:
    text = (COMPOSE / "riskwire.yaml").read_text(encoding="utf-8")
    config = load(text, tmp_path, {"RISKWIRE_BUS": "kafka"})
    assert config.bus.kind == "kafka"
    assert config.http.host == "0.0.0.0"
    assert str(config.data_dir) == "/var/lib/riskwire"
    assert str(config.score.model_dir) == "/models/default"
    assert config.collect.feeds and config.alerts.rules


def test_k8s_config_loads_with_the_secrets_the_deployments_give(tmp_path: Path) -> None:
    text = k8s_config_text()
    assert env_refs(text) == {"RISKWIRE_WEBHOOK_SECRET"}
    config = load(text, tmp_path, {"RISKWIRE_WEBHOOK_SECRET": "s3cret"})
    assert config.bus.kind == "kafka"
    assert config.http.host == "0.0.0.0" and config.http.port == 9464
    (desk,) = [r for r in config.alerts.receivers if r.name == "desk"]
    assert desk.secret is not None and desk.secret.get_secret_value() == "s3cret"  # type: ignore[union-attr]


def test_k8s_config_without_its_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RISKWIRE_WEBHOOK_SECRET"):
        load(k8s_config_text(), tmp_path, {})


# --- docker compose -------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    return doc


def test_compose_services_run_one_role_each_on_kafka() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka", *ROLES, "prometheus", "grafana"}
    grace = Config().shutdown.grace_seconds
    for role in ROLES:
        svc = services[role]
        assert svc["command"][:3] == ["run", "--role", role]
        assert svc["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        env = svc["environment"]
        assert env["RISKWIRE_BUS"] == "kafka"
        assert env["RISKWIRE_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["RISKWIRE_HTTP_PORT"] == "9464"
        assert seconds(svc["stop_grace_period"]) > grace
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert "kafka:9092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_bind_mounts_exist() -> None:
    for name, svc in compose()["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if not src.startswith("."):
                continue  # a named volume
            if src == "../../models/default":
                continue  # built by `make model`, not in git
            assert (COMPOSE / src).exists(), f"{name}: {src} does not exist"
    grafana = {v.split(":")[1] for v in compose()["services"]["grafana"]["volumes"]}
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/riskwire.yml").read_text())
    assert prov["providers"][0]["options"]["path"] in grafana


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_compose_prometheus_config_is_valid(tmp_path: Path) -> None:
    # Laid out as compose mounts it: the rules file beside the config.
    shutil.copy(COMPOSE / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(DEPLOY / "prometheus/riskwire-rules.yml", tmp_path / "riskwire-rules.yml")
    done = subprocess.run(
        ["promtool", "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- Kubernetes -----------------------------------------------------------------------------


def deployments() -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: o
        for o in k8s_objects()
        if o["kind"] == "Deployment"
    }


def test_one_deployment_per_role_with_probes_and_grace() -> None:
    deps = deployments()
    assert set(deps) == set(ROLES)
    grace = load_config(None, env={}).shutdown.grace_seconds
    config_grace = yaml.safe_load(k8s_config_text())["shutdown"]["grace_seconds"]
    for role, dep in deps.items():
        pod = dep["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > max(grace, config_grace), role
        (c,) = pod["containers"]
        assert c["args"][:3] == ["run", "--role", role]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 9464}
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9464"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        sel = dep["spec"]["selector"]["matchLabels"]
        assert sel.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    worker = deps["worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["resources"]["requests"]["cpu"] and worker["resources"]["limits"]["memory"]


def test_k8s_env_references_resolve() -> None:
    (secret,) = yaml_docs(K8S / "secret.example.yaml")
    (cm,) = [o for o in k8s_objects() if o["kind"] == "ConfigMap"]
    needed = env_refs(k8s_config_text())
    for role, dep in deployments().items():
        env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        names = {e["name"] for e in env}
        assert needed <= names, f"{role} lacks {needed - names} that riskwire.yaml references"
        for e in env:
            ref = e.get("valueFrom", {})
            if "secretKeyRef" in ref:
                assert ref["secretKeyRef"]["name"] == secret["metadata"]["name"]
                assert ref["secretKeyRef"]["key"] in secret["stringData"], e
            if "configMapKeyRef" in ref:
                assert ref["configMapKeyRef"]["name"] == cm["metadata"]["name"]
                assert ref["configMapKeyRef"]["key"] in cm["data"], e


def test_workers_have_a_disruption_budget_and_the_service_selects_all_pods() -> None:
    objs = k8s_objects()
    (pdb,) = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "riskwire",
        "app.kubernetes.io/component": "worker",
    }
    assert pdb["spec"]["minAvailable"] < deployments()["worker"]["spec"]["replicas"]
    (svc,) = [o for o in objs if o["kind"] == "Service"]
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "riskwire"}
    assert svc["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    claims = {o["metadata"]["name"] for o in objs if o["kind"] == "PersistentVolumeClaim"}
    for role in ("collector", "alerter"):  # their data_dir holds durable state
        vols = deployments()[role]["spec"]["template"]["spec"]["volumes"]
        (data,) = [v for v in vols if v["name"] == "data"]
        assert data["persistentVolumeClaim"]["claimName"] in claims


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds() -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(done.stdout) if d)
    assert kinds.count("Deployment") == 3 and "Secret" not in kinds


# --- systemd --------------------------------------------------------------------------------


def unit(path: Path) -> dict[str, list[str]]:
    """key -> every value it is given (systemd allows a key more than once)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("name", ["riskwire.service", "riskwire@.service"])
def test_systemd_unit_stops_gracefully_and_is_hardened(name: str) -> None:
    u = unit(SYSTEMD / name)
    one = {k: v[-1] for k, v in u.items()}
    assert one["Type"] == "simple"
    assert one["KillSignal"] == "SIGTERM"
    assert seconds(one["TimeoutStopSec"]) > Config().shutdown.grace_seconds
    assert one["Restart"] == "on-failure"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["NoNewPrivileges"] == "yes"
    assert one["ProtectSystem"] == "strict"
    assert one["StateDirectory"] == "riskwire"
    assert one["Environment"] == "RISKWIRE_DATA_DIR=/var/lib/riskwire"
    assert any(v.endswith("/etc/riskwire/riskwire.env") for v in u["EnvironmentFile"])
    if "@" in name:
        assert "--role %i" in one["ExecStart"]
    else:
        assert "--role" not in one["ExecStart"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this interpreter for the check.
    files = []
    for src, dst in (("riskwire.service", "riskwire.service"), ("riskwire@.service", None)):
        text = (SYSTEMD / src).read_text(encoding="utf-8")
        text = text.replace("/opt/riskwire/bin/riskwire", sys.executable)
        for name in [dst] if dst else ["riskwire@.service", "riskwire@worker.service"]:
            (tmp_path / name).write_text(text, encoding="utf-8")
        files.append(tmp_path / (dst or "riskwire@worker.service"))
    done = subprocess.run(
        ["systemd-analyze", "verify", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stdout + done.stderr


# --- Dockerfiles ----------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfile_runtime_image(name: str) -> None:
    ins = instructions(DOCKER / name)
    text = " ".join(f"{i} {a}" for i, a in ins)
    assert "train" not in text, "the runtime image must not install the train extra (torch)"
    assert "torch" not in text
    users = [a for i, a in ins if i == "USER"]
    assert users and not users[-1].startswith(("root", "0")), "the image must run as non-root"
    (health,) = [a for i, a in ins if i == "HEALTHCHECK"]
    assert "/healthz" in health
    assert ("ENTRYPOINT", '["riskwire"]') in ins
    assert "RISKWIRE_SCORE__MODEL_DIR=/models/default" in text
    assert "COPY --from=model" in text  # `--build-context model=DIR` bakes a model in
    ignore = [
        line
        for line in (DOCKER / f"{name}.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "the build context must start from nothing (no .venv, models)"
    if name == "Dockerfile":
        assert any(a == "${PYTHON_IMAGE}" for i, a in ins if i == "FROM")
        assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    else:
        assert "nvidia/cuda:" in text and "cudnn" in text
        assert ".[gpu]" in text
        with (ROOT / "pyproject.toml").open("rb") as f:
            (pin,) = tomllib.load(f)["project"]["optional-dependencies"]["gpu"]
        assert f"'{pin}'" in text, f"Dockerfile.gpu must reinstall {pin}, the gpu extra's pin"
