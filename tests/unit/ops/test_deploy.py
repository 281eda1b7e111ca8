"""Offline checks of deploy/: the Dockerfile, the compose file, Prometheus and Grafana files,
and the Kubernetes manifests (built-in kinds against the bundled Kubernetes JSON Schemas of
``kubernetes-validate``, KEDA ScaledObjects against the schema next to this file).

Docker and a cluster are not available here; these tests catch what a reviewer would: missing
services, dependencies, health checks, probes, autoscalers and budgets, and invalid fields.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

import celeryconfig

DEPLOY = Path(__file__).parents[3] / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"
QUEUES = celeryconfig.QUEUES
KEDA_SCHEMA = json.loads((Path(__file__).parent / "keda_scaledobject.schema.json").read_text())
SEED_METRICS = ("summary_requests_total", "summary_processing_seconds", "job_queue_size")


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def manifests() -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def validate_manifest(doc: dict[str, Any]) -> None:
    """Validate one manifest offline; raises on any schema violation."""
    if doc.get("kind") == "ScaledObject":
        jsonschema.validate(doc, KEDA_SCHEMA)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_and_installs_from_the_lock_file() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, flags=re.MULTILINE)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    user = re.findall(r"^USER\s+(\S+)", runtime, flags=re.MULTILINE)
    assert user and not user[-1].startswith(("root", "0"))
    assert "pip install -r requirements.lock" in text
    assert "pip install --no-deps ." in text
    for path in ("requirements.lock", "pyproject.toml", "celeryconfig.py"):
        assert (DEPLOY.parent / path).exists(), path
    for package in ("shared", "schema", "workers", "producers"):
        assert f"COPY {package} ./{package}" in text
    assert 'ENTRYPOINT ["summarybot"]' in text
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus" in text


# --- compose -----------------------------------------------------------------------------------


def test_compose_has_every_process_and_one_worker_per_queue() -> None:
    services = compose()["services"]
    expected = {"postgres", "redis", "migrate", "bot", "api", "beat", "flower", "prometheus"}
    expected |= {"grafana", *(f"worker-{q}" for q in QUEUES)}
    assert set(services) == expected
    for queue in QUEUES:
        command = services[f"worker-{queue}"]["command"]
        assert command[:3] == ["worker", "-Q", queue]
    assert services["migrate"]["command"] == ["migrate"] and services["migrate"]["restart"] == "no"
    assert services["beat"]["command"] == ["beat"]


def test_compose_dependencies_and_health_checks() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            condition = rule["condition"]
            if dependency == "migrate":
                assert condition == "service_completed_successfully", name
            else:
                assert condition == "service_healthy", (name, dependency)
                assert "healthcheck" in services[dependency], dependency
        if name != "migrate":
            check = service.get("healthcheck")
            assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
            assert service["restart"] == "unless-stopped", name
    app_processes = {"bot", "api", "beat", "flower", *(f"worker-{q}" for q in QUEUES)}
    for name in app_processes:
        depends = services[name]["depends_on"]
        assert set(depends) == {"postgres", "redis", "migrate"}, name
        assert services[name]["image"].startswith("${SUMMARYBOT_IMAGE")
    assert set(services["migrate"]["depends_on"]) == {"postgres"}


def test_compose_redis_keeps_its_data_and_never_evicts() -> None:
    command = compose()["services"]["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags["--appendonly"] == "yes"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--appendfsync"] == "everysec"


def test_compose_secrets_are_required_and_tools_are_not_public() -> None:
    services = compose()["services"]
    # Compose demands a ${VAR:?} of every command and service: only what all of them need.
    demanded = set(re.findall(r"\$\{(\w+):\?", (DEPLOY / "compose.yaml").read_text()))
    assert demanded == {"POSTGRES_PASSWORD", "SECRET_KEYS"}
    # A secret of one service is that service's to check when it starts.
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"
    assert services["bot"]["environment"]["DISCORD_TOKEN"] == "${DISCORD_TOKEN:-}"
    env = services["worker-fetch"]["environment"]
    assert env["SECRET_KEYS"].startswith("${SECRET_KEYS:?")
    assert env["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus" and env["METRICS_PORT"] == "9100"
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    grafana = services["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-}"
    check = grafana["entrypoint"][2]
    assert '[ -z "$$GF_SECURITY_ADMIN_PASSWORD" ]' in check and "exit 1" in check


def test_grafanas_entrypoint_refuses_an_empty_password_and_runs_the_image_otherwise(
    tmp_path: Path,
) -> None:
    entrypoint = compose()["services"]["grafana"]["entrypoint"]
    # What Compose hands the container: "$$" is a literal "$".
    shell, flag, script, name = (part.replace("$$", "$") for part in entrypoint)
    script = script.replace("exec /run.sh", f"exec {tmp_path / 'run.sh'}")
    (tmp_path / "run.sh").write_text('#!/bin/sh\necho "grafana started with $*"\n')
    (tmp_path / "run.sh").chmod(0o755)
    for password, code, said in (("", 1, "set GRAFANA_ADMIN_PASSWORD"), ("s3cret", 0, "")):
        done = subprocess.run(
            [shell, flag, script, name, "--config", "x"],
            env={"PATH": os.environ["PATH"], "GF_SECURITY_ADMIN_PASSWORD": password},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == code, done.stderr
        assert said in done.stderr
        if code == 0:
            assert done.stdout.strip() == "grafana started with --config x"


def test_prometheus_scrapes_every_process_and_grafana_is_provisioned() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"api", "bot", "workers", "flower"} <= set(jobs)
    worker_names = jobs["workers"]["dns_sd_configs"][0]["names"]
    assert sorted(worker_names) == sorted(f"worker-{q}" for q in QUEUES)
    services = compose()["services"]
    for job in ("api", "bot", "flower"):
        assert jobs[job]["dns_sd_configs"][0]["names"] == [job] and job in services
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert all(rule["expr"] for group in alerts["groups"] for rule in group["rules"])
    mounted = " ".join(services["prometheus"]["volumes"])
    assert "prometheus.yml" in mounted and "alerts.yml" in mounted

    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    uid = datasource["datasources"][0]["uid"]
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "summarybot.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "summarybot.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for name in SEED_METRICS:
        assert any(name in e for e in exprs), name
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {uid}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


# --- Kubernetes --------------------------------------------------------------------------------


def test_every_manifest_is_valid_offline() -> None:
    docs = manifests()
    assert len(docs) >= 20
    for name, doc in docs:
        validate_manifest(doc)  # raises with the field at fault
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "summarybot", name
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {
        "kustomization.yaml",
        "migrate-job.yaml",
    }


@pytest.mark.parametrize(
    ("kind", "breakage"),
    [
        ("Deployment", lambda d: d["spec"].__setitem__("replicaz", 2)),
        ("Deployment", lambda d: d["spec"].__setitem__("replicas", "two")),
        ("PodDisruptionBudget", lambda d: d["spec"].__setitem__("maxUnavailible", 1)),
        ("ScaledObject", lambda d: d["spec"]["triggers"][0]["metadata"].pop("listName")),
        ("ScaledObject", lambda d: d["spec"].__setitem__("minReplicas", 1)),
        (
            "ScaledObject",
            lambda d: d["spec"]["triggers"][0]["metadata"].__setitem__("listLength", 5),
        ),
    ],
)
def test_the_validator_rejects_broken_manifests(kind: str, breakage: Any) -> None:
    doc = copy.deepcopy(next(d for _, d in manifests() if d["kind"] == kind))
    breakage(doc)
    with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
        validate_manifest(doc)


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == kind}


def test_a_deployment_per_process_with_probes_and_a_non_root_user() -> None:
    deployments = _by_kind("Deployment")
    expected = {f"summarybot-{c}" for c in ("api", "bot", "beat", "flower")}
    expected |= {f"summarybot-worker-{q}" for q in QUEUES}
    assert set(deployments) == expected
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        (container,) = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert "livenessProbe" in container, name
        if name != "summarybot-beat":
            assert "readinessProbe" in container, name
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    for single in ("summarybot-beat", "summarybot-bot"):
        assert deployments[single]["spec"]["replicas"] == 1
        assert deployments[single]["spec"]["strategy"]["type"] == "Recreate"
    job = _by_kind("Job")["summarybot-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_a_stopped_worker_hands_its_tasks_back_within_its_grace_period() -> None:
    # SIGTERM's warm shutdown waits for every task (up to the 900 s hard limit) and the
    # grace period killed the worker first: its tasks came back only after the visibility
    # timeout.  Remapped to Celery's soft shutdown, running tasks get
    # worker_soft_shutdown_timeout, then return to their queue at once.
    import celeryconfig

    soft = celeryconfig.worker_soft_shutdown_timeout
    assert soft > 0 and celeryconfig.worker_enable_soft_shutdown_on_idle
    config = _by_kind("ConfigMap")["summarybot"]["data"]
    assert config["REMAP_SIGTERM"] == "SIGQUIT"
    for name, deployment in _by_kind("Deployment").items():
        if name.startswith("summarybot-worker-"):
            grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            assert grace >= soft + 30, name
    services = compose()["services"]
    for queue in QUEUES:
        worker = services[f"worker-{queue}"]
        assert worker["environment"]["REMAP_SIGTERM"] == "SIGQUIT"
        assert int(str(worker["stop_grace_period"]).removesuffix("s")) >= soft + 15


def test_keda_scales_each_worker_on_its_queue_and_budgets_protect_them() -> None:
    deployments = _by_kind("Deployment")
    scaled = _by_kind("ScaledObject")
    budgets = _by_kind("PodDisruptionBudget")
    for queue in QUEUES:
        name = f"summarybot-worker-{queue}"
        target = scaled[name]["spec"]
        assert target["scaleTargetRef"]["name"] == name and name in deployments
        (trigger,) = target["triggers"]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == queue
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][:3] == ["worker", "-Q", queue]
        env_from = {next(iter(e.values()))["name"] for e in container["envFrom"]}
        assert env_from == {"summarybot"}  # REDIS_ADDRESS (read by KEDA) comes from the ConfigMap
        budget = budgets[name]["spec"]
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
        assert target["minReplicaCount"] <= target["maxReplicaCount"]
    config = _by_kind("ConfigMap")["summarybot"]["data"]
    assert "REDIS_ADDRESS" in config and config["REDIS_URL"].startswith("redis://")
    assert "summarybot-api" in budgets and "summarybot-api" in _by_kind("Service")
