"""deploy/k8s against the code and the Dockerfile: settings, entry points, probes, ports, S3.

The manifests are only read (no cluster here): each container's command must be a real entry
point, its environment names its service's settings, its probes hit routes its app serves on
the port its settings listen on, and LiveKit's chart values point at the orchestrator and at
the object store the services use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.deploy import stack

pytestmark = pytest.mark.unit

NAMESPACE = "roomscribe"
#: The HTTP services, with the readiness and liveness routes their probes must use.
PROBED = {"orchestrator", "stt", "tts"}


@dataclass(frozen=True)
class PodContainer:
    """One container of a Deployment or Job, with its environment resolved."""

    workload: str
    spec: dict[str, Any]
    pod: dict[str, Any]
    target: str
    module: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    kustomization = stack.load_yaml(stack.K8S / "kustomization.yaml")
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = stack.K8S / resource
        assert path.is_file(), f"kustomization lists {resource}, which does not exist"
        docs += stack.load_yaml_all(path)
    return docs


def of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


@pytest.fixture(scope="module")
def config(manifests: list[dict[str, Any]]) -> dict[str, str]:
    (configmap,) = of_kind(manifests, "ConfigMap").values()
    return {k: str(v) for k, v in configmap["data"].items()}


def pod_containers(
    manifests: list[dict[str, Any]], config: dict[str, str]
) -> Iterator[PodContainer]:
    dockerfile = stack.read_dockerfile()
    for doc in manifests:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for spec in pod["containers"]:
            image = str(spec["image"])
            assert image.startswith("roomscribe/"), f"{image}: not an image of the Dockerfile"
            target = image.removeprefix("roomscribe/")
            assert target in stack.TARGET_EXTRAS, f"{image}: no such Dockerfile target"
            command = [str(c) for c in spec.get("command") or dockerfile.cmd(target)]
            assert command == dockerfile.cmd(target), f"{image}: runs other than its image"
            module, _ = stack.python_module(command)
            env = dict(dockerfile.env(target))
            for item in spec.get("env") or []:
                env[item["name"]] = resolve(item, config)
            yield PodContainer(
                doc["metadata"]["name"], spec, pod, target, stack.main_module(module), env
            )


def resolve(item: dict[str, Any], config: dict[str, str]) -> str:
    """An ``env`` item's value: literal, from the ConfigMap, or a stand-in for the Secret's."""
    if "value" in item:
        return str(item["value"])
    source = item["valueFrom"]
    if "configMapKeyRef" in source:
        key = source["configMapKeyRef"]["key"]
        assert key in config, f"{item['name']}: the ConfigMap has no {key}"
        return config[key]
    ref = source["secretKeyRef"]
    assert ref["name"] == "roomscribe-secrets", ref
    return stack.filled_secret(ref["key"])


@pytest.fixture(scope="module")
def containers(manifests: list[dict[str, Any]], config: dict[str, str]) -> dict[str, PodContainer]:
    return {c.workload: c for c in pod_containers(manifests, config)}


def container_port(container: PodContainer) -> int:
    (port,) = container.spec["ports"]
    return int(port["containerPort"])


def test_every_service_runs_from_its_image(containers: dict[str, PodContainer]) -> None:
    assert {c.target for c in containers.values()} == {
        "orchestrator",
        "stt",
        "whisper",
        "tts",
        "agent",
        "models",
    }
    kustomization = stack.load_yaml(stack.K8S / "kustomization.yaml")
    images = {i["name"] for i in kustomization["images"]}
    assert {c.spec["image"] for c in containers.values()} <= images


def test_environment_names_are_settings_and_build(
    containers: dict[str, PodContainer], monkeypatch: pytest.MonkeyPatch
) -> None:
    for c in containers.values():
        if c.module.startswith("devkit"):
            assert not c.env, f"{c.workload} reads no settings"
            continue
        cls = stack.settings_class(c.module)
        allowed = set(stack.env_names(cls))
        if c.module.startswith("agent"):
            allowed |= stack.livekit_agents_env()
        unknown = set(c.env) - allowed
        assert not unknown, f"{c.workload}: {sorted(unknown)} are not {cls.__name__} fields"
        settings = stack.build_settings(cls, c.env, monkeypatch)
        assert settings.environment == "production"


def test_probes_hit_served_routes_on_the_listening_port(
    containers: dict[str, PodContainer], monkeypatch: pytest.MonkeyPatch
) -> None:
    for c in containers.values():
        probes = [c.spec[p] for p in ("readinessProbe", "livenessProbe") if p in c.spec]
        if c.module.startswith("agent"):
            port, paths = stack.livekit_agents_health()
            assert container_port(c) == port
            assert probes and all(
                p["httpGet"]["port"] == port and p["httpGet"]["path"] in paths for p in probes
            )
            continue
        if c.workload not in PROBED:
            assert not probes and "ports" not in c.spec, f"{c.workload} serves no HTTP"
            continue
        cls = stack.settings_class(c.module)
        host_field, port_field = stack.listen_fields(cls)
        settings = stack.build_settings(cls, c.env, monkeypatch)
        assert getattr(settings, host_field) == "0.0.0.0", c.workload
        port = int(getattr(settings, port_field))
        assert container_port(c) == port, c.workload
        served = stack.app_routes(c.module)
        assert c.spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        live = c.spec["livenessProbe"]["httpGet"]
        assert live["port"] == port and ("GET", live["path"]) in served, c.workload
        assert ("GET", "/readyz") in served, c.workload


def test_pods_run_as_the_images_unprivileged_user(containers: dict[str, PodContainer]) -> None:
    dockerfile = stack.read_dockerfile()
    created = " ".join(r for s in dockerfile.stages.values() for r in s.all("RUN"))
    m = re.search(r"useradd\b.*--uid (\d+)", created)
    assert m, "the Dockerfile creates no user with a fixed uid"
    for c in containers.values():
        security = c.pod["securityContext"]
        assert security["runAsNonRoot"] is True, c.workload
        assert security["runAsUser"] == int(m.group(1)), c.workload


def test_services_and_urls_reach_the_right_pods(
    manifests: list[dict[str, Any]],
    containers: dict[str, PodContainer],
    config: dict[str, str],
) -> None:
    services = of_kind(manifests, "Service")
    for name, service in services.items():
        app = service["spec"]["selector"]["app"]
        assert app in containers, f"Service {name} selects no workload"
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] == container_port(containers[app]), name
    suffix = f".{NAMESPACE}.svc"
    checked = 0
    for key, url in stack.iter_urls(config):
        if not url.host.endswith(suffix) or key == "LIVEKIT_URL":
            continue
        name = url.host.removesuffix(suffix)
        assert name in services, f"{key}: no Service {name}"
        assert url.port == services[name]["spec"]["ports"][0]["port"], key
        # ROOMSCRIBE_STT_URL reaches the stt Service, and so on.
        assert key == f"ROOMSCRIBE_{name.upper()}_URL", key
        checked += 1
    assert checked == 3


def test_livekit_charts_point_at_the_orchestrator_and_the_store(
    manifests: list[dict[str, Any]], containers: dict[str, PodContainer], config: dict[str, str]
) -> None:
    server = stack.load_yaml(stack.K8S / "livekit-server-values.yaml")
    (webhook,) = server["livekit"]["webhook"]["urls"]
    url = stack.split_url(webhook)
    orchestrator = of_kind(manifests, "Service")["orchestrator"]
    assert url.host == f"orchestrator.{NAMESPACE}.svc"
    assert url.port == orchestrator["spec"]["ports"][0]["port"]
    assert ("POST", url.path) in stack.app_routes(containers["orchestrator"].module)

    # Egress's default upload is the store the services use (the orchestrator also sends it
    # with each request).
    s3 = stack.load_yaml(stack.K8S / "egress-values.yaml")["egress"]["s3"]
    assert (s3["endpoint"], s3["bucket"], s3["region"], s3["force_path_style"]) == (
        config["ROOMSCRIBE_S3_ENDPOINT"],
        config["ROOMSCRIBE_S3_BUCKET"],
        config["ROOMSCRIBE_S3_REGION"],
        True,
    )
    egress = stack.load_yaml(stack.K8S / "egress-values.yaml")["egress"]
    assert egress["ws_url"] == config["LIVEKIT_URL"]
    assert egress["redis"] == server["livekit"]["redis"]
