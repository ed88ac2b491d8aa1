"""The compose stack against the code: settings, entry points, ports, routes, S3, images.

No image is built and no container runs here. Each test reads a deployment file (the compose
file, ``.env.example``, the Dockerfile, ``deploy/livekit.yaml``, ``deploy/egress.yaml``) and
checks what it names against what the code defines, so a renamed setting, route, port or
extra fails here rather than in a user's ``make up``.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import pytest
from pydantic import SecretStr

from roomscribe.settings import CoreSettings
from tests.deploy import stack

pytestmark = pytest.mark.unit

#: The services docker-compose.yml runs (issue 15); the built ones are Roomscribe's.
STACK_SERVICES = {
    "livekit",
    "redis",
    "egress",
    "mongodb",
    "s3",
    "buckets",
    "orchestrator",
    "stt",
    "whisper",
    "tts",
    "agent",
    "models",
}
BUILT_SERVICES = {"orchestrator", "stt", "whisper", "tts", "agent", "models"}
#: Services that serve HTTP and must be checked healthy on their readiness route.
READYZ_SERVICES = {"orchestrator", "stt", "tts"}


@dataclass(frozen=True)
class Container:
    """A Roomscribe container as compose runs it.

    Attributes:
        name: The compose service.
        target: Its Dockerfile target.
        command: What it runs (compose's ``command``, else the target's ``CMD``).
        module: The module ``python -m`` runs (its ``__main__`` for a package).
        raw_env: Compose's ``environment``, not interpolated.
        env: The container's environment: the target's ``ENV``, then compose's, interpolated
            from a filled-in ``.env``.
    """

    name: str
    target: str
    command: list[str]
    module: str
    raw_env: dict[str, str]
    env: dict[str, str]


@pytest.fixture(scope="module")
def compose() -> stack.Compose:
    return stack.read_compose()


@pytest.fixture(scope="module")
def dockerfile() -> stack.Dockerfile:
    return stack.read_dockerfile()


@pytest.fixture(scope="module")
def dotenv(compose: stack.Compose) -> dict[str, str]:
    return stack.stack_env(compose=compose)


def containers_of(
    compose: stack.Compose, dockerfile: stack.Dockerfile, dotenv: Mapping[str, str]
) -> dict[str, Container]:
    """Every built service of ``compose``, as its container would run."""
    out: dict[str, Container] = {}
    for name, service in compose.built().items():
        target = str(service["build"]["target"])
        assert target in dockerfile.stages, f"{name}: no Dockerfile target {target!r}"
        command = [str(c) for c in service.get("command") or dockerfile.cmd(target)]
        module, _ = stack.python_module(command)
        raw = stack.raw_environment(service)
        env = {**dockerfile.env(target), **stack.service_environment(service, dotenv)}
        out[name] = Container(name, target, command, stack.main_module(module), raw, env)
    return out


@pytest.fixture(scope="module")
def containers(
    compose: stack.Compose, dockerfile: stack.Dockerfile, dotenv: dict[str, str]
) -> dict[str, Container]:
    return containers_of(compose, dockerfile, dotenv)


def settings_of(container: Container) -> type[CoreSettings] | None:
    """The settings class the container's entry point builds (None: devkit's CLI)."""
    if container.module.startswith("devkit"):
        return None
    return stack.settings_class(container.module)


def built_settings(container: Container, monkeypatch: pytest.MonkeyPatch) -> CoreSettings:
    cls = settings_of(container)
    assert cls is not None, f"{container.name} reads no settings"
    return stack.build_settings(cls, container.env, monkeypatch)


def listen_port(container: Container, monkeypatch: pytest.MonkeyPatch) -> int | None:
    """The port the container serves on (None: it serves nothing)."""
    if container.module.startswith("agent"):
        return stack.livekit_agents_health()[0]
    cls = settings_of(container)
    if cls is None or not any(n.endswith("port") for n in cls.model_fields):
        return None
    _, port_field = stack.listen_fields(cls)
    return int(getattr(built_settings(container, monkeypatch), port_field))


def secret_value(value: object) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


# --- what runs ------------------------------------------------------------------------------------
def test_the_stack_has_every_service_and_builds_only_roomscribe(compose: stack.Compose) -> None:
    assert set(compose.services) == STACK_SERVICES
    assert set(compose.built()) == BUILT_SERVICES
    for name, service in compose.built().items():
        assert service["build"]["target"] in stack.TARGET_EXTRAS, name
        assert "container_name" not in service, f"{name}: a fixed name defeats --scale"
    assert "ports" not in compose.services["whisper"], "a host port defeats --scale whisper=N"


def test_commands_are_real_entry_points(containers: dict[str, Container]) -> None:
    from devkit.__main__ import build_parser

    for container in containers.values():
        module, args = stack.python_module(container.command)
        if module == "agent":
            # The livekit-agents CLI: `start` is the production mode (`dev` reloads).
            assert args == ["start"], f"agent runs {args}"
            assert "start" in stack.livekit_agents_commands()
        elif module == "devkit":
            build_parser().parse_args(args)  # exits (fails the test) on a bad argument
            assert args[0] == "models"
        else:
            # The services take their settings from the environment only, so that compose,
            # Kubernetes and `devkit settings` describe them in one way.
            assert args == [], f"{container.name}: arguments {args}; use its settings"


def test_every_environment_variable_is_a_setting_of_its_service(
    containers: dict[str, Container], dockerfile: stack.Dockerfile
) -> None:
    for container in containers.values():
        names = set(container.raw_env) | set(dockerfile.env(container.target))
        cls = settings_of(container)
        if cls is None:
            assert not names, f"{container.name} reads no settings, yet sets {sorted(names)}"
            continue
        allowed = set(stack.env_names(cls)) | stack.RUNTIME_VARIABLES
        if container.module.startswith("agent"):
            allowed |= stack.livekit_agents_env()  # LIVEKIT_URL, _API_KEY, _API_SECRET
        unknown = {n for n in names if n.upper() not in allowed}
        assert not unknown, f"{container.name}: {sorted(unknown)} are not {cls.__name__} fields"


def test_settings_build_from_each_container_environment(
    containers: dict[str, Container], monkeypatch: pytest.MonkeyPatch
) -> None:
    # With .env filled in as .env.example says, each service starts: its settings validate
    # in production (real secrets, the S3 key pair, LiveKit's key not the dev one).
    for container in containers.values():
        if settings_of(container) is None:
            continue
        settings = built_settings(container, monkeypatch)
        assert settings.environment == "production", container.name


def test_services_listen_on_every_interface_at_their_port(
    compose: stack.Compose,
    containers: dict[str, Container],
    dockerfile: stack.Dockerfile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for container in containers.values():
        port = listen_port(container, monkeypatch)
        if port is None:
            continue
        cls = settings_of(container)
        if container.module.startswith("agent"):
            assert not stack.agent_server_port_overridden(), "the agent picks its own port"
        elif cls is not None:
            host_field, _ = stack.listen_fields(cls)
            host = getattr(built_settings(container, monkeypatch), host_field)
            assert host == "0.0.0.0", f"{container.name} listens on {host}"
        url = stack.healthcheck_url(compose.services[container.name])
        assert url is not None, f"{container.name} has no healthcheck"
        assert stack.split_url(url).port == port, f"{container.name}: {url} vs port {port}"
        for published in compose.services[container.name].get("ports") or []:
            assert int(str(published).split(":")[-1].split("/")[0]) == port, container.name
        exposed = {
            int(p.split("/")[0])
            for stage in dockerfile.chain(container.target)
            for line in stage.all("EXPOSE")
            for p in line.split()
        }
        assert exposed == {port}, f"target {container.target} exposes {exposed}, serves {port}"


def test_healthchecks_request_routes_the_apps_serve(
    compose: stack.Compose, containers: dict[str, Container]
) -> None:
    for container in containers.values():
        url = stack.healthcheck_url(compose.services[container.name])
        if container.name in READYZ_SERVICES:
            assert url is not None, f"{container.name} has no healthcheck"
            path = stack.split_url(url).path
            assert path == "/readyz", f"{container.name} checks {path}, not readiness"
            assert ("GET", path) in stack.app_routes(container.module), container.name
        elif container.module.startswith("agent"):
            assert url is not None, "the agent has no healthcheck"
            assert stack.split_url(url).path in stack.livekit_agents_health()[1]
        else:
            assert url is None, f"{container.name} serves no HTTP, yet checks {url}"


def test_urls_between_services_name_the_right_service_and_port(
    compose: stack.Compose, containers: dict[str, Container], monkeypatch: pytest.MonkeyPatch
) -> None:
    livekit = stack.load_yaml(stack.LIVEKIT_YAML)
    s3_env = stack.raw_environment(compose.services["s3"])
    ports: dict[str, int] = {
        "livekit": int(livekit["port"]),
        "s3": int(s3_env["VGW_PORT"].strip('"').lstrip(":")),
    }
    for container in containers.values():
        port = listen_port(container, monkeypatch)
        if port is not None:
            ports[container.name] = port
    checked = 0
    for container in containers.values():
        cls = settings_of(container)
        fields = stack.env_names(cls) if cls else {}
        for name, url in stack.iter_urls(container.env):
            if url.host not in compose.services:
                continue
            assert url.host in ports, f"{container.name} {name}: nothing known listens on it"
            assert url.port == ports[url.host], f"{container.name} {name}: port {url.port}"
            # ROOMSCRIBE_STT_URL (stt_url) must reach the service named stt, and so on.
            service = fields.get(name.upper(), "").removesuffix("_url")
            if service in compose.services:
                assert url.host == service, f"{container.name} {name} points at {url.host}"
            checked += 1
    assert checked >= 6, "the service URLs were not found"


# --- LiveKit --------------------------------------------------------------------------------------
def test_livekit_webhooks_reach_the_orchestrators_route(
    compose: stack.Compose,
    containers: dict[str, Container],
    dotenv: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    livekit = stack.load_yaml(stack.LIVEKIT_YAML)
    (webhook,) = livekit["webhook"]["urls"]
    url = stack.split_url(webhook)
    orchestrator = containers["orchestrator"]
    assert url.host == "orchestrator"
    assert url.port == listen_port(orchestrator, monkeypatch)
    assert ("POST", url.path) in stack.app_routes(orchestrator.module)

    # LiveKit signs with the key pair the orchestrator verifies with.
    from orchestrator_service.settings import OrchestratorSettings

    settings = cast(OrchestratorSettings, built_settings(orchestrator, monkeypatch))
    key = settings.livekit_api_key
    secret = settings.livekit_api_secret.get_secret_value()
    server = stack.service_environment(compose.services["livekit"], dotenv)
    assert server["LIVEKIT_WEBHOOK_API_KEY"] == key
    assert server["LIVEKIT_KEYS"] == f"{key}: {secret}"
    # The agent joins that server with the same pair.
    agent = containers["agent"].env
    assert (agent["LIVEKIT_API_KEY"], agent["LIVEKIT_API_SECRET"]) == (key, secret)
    assert stack.split_url(agent["LIVEKIT_URL"]).host == "livekit"
    assert livekit["redis"]["address"].split(":")[0] in compose.services


def test_egress_uploads_where_the_services_read(
    compose: stack.Compose,
    containers: dict[str, Container],
    dotenv: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator_service.gateway import LiveKitGateway
    from orchestrator_service.settings import OrchestratorSettings

    egress_yaml = stack.load_yaml(stack.EGRESS_YAML)
    s3 = egress_yaml["storage"]["s3"]
    settings = cast(OrchestratorSettings, built_settings(containers["orchestrator"], monkeypatch))
    # What the orchestrator sends with every Track Egress request.
    upload = LiveKitGateway(settings)._upload()
    assert upload is not None, "the orchestrator would not upload to S3"
    assert (upload.endpoint, upload.bucket, upload.region, upload.force_path_style) == (
        s3["endpoint"],
        s3["bucket"],
        s3["region"],
        s3["force_path_style"],
    )
    worker = built_settings(containers["whisper"], monkeypatch)
    for name in ("s3_endpoint", "s3_bucket", "s3_region", "s3_access_key", "s3_secret_key"):
        assert getattr(worker, name) == getattr(settings, name), name

    access = secret_value(settings.s3_access_key)
    secret = secret_value(settings.s3_secret_key)
    egress = stack.service_environment(compose.services["egress"], dotenv)
    assert (egress["AWS_ACCESS_KEY_ID"], egress["AWS_SECRET_ACCESS_KEY"]) == (access, secret)
    assert egress["LIVEKIT_API_KEY"] == settings.livekit_api_key
    assert egress["LIVEKIT_API_SECRET"] == settings.livekit_api_secret.get_secret_value()
    assert stack.split_url(egress["LIVEKIT_WS_URL"]).host == "livekit"
    livekit_yaml = stack.load_yaml(stack.LIVEKIT_YAML)
    assert egress_yaml["redis"]["address"] == livekit_yaml["redis"]["address"]
    # The egress healthcheck asks the port the egress serves its status on.
    check = stack.healthcheck_url(compose.services["egress"])
    assert check is not None and stack.split_url(check).port == egress_yaml["health_port"]

    server = stack.service_environment(compose.services["s3"], dotenv)
    assert (server["ROOT_ACCESS_KEY"], server["ROOT_SECRET_KEY"]) == (access, secret)
    assert server["VGW_REGION"] == settings.s3_region
    buckets = stack.service_environment(compose.services["buckets"], dotenv)
    assert buckets["BUCKET"] == settings.s3_bucket
    assert buckets["AWS_ENDPOINT_URL"] == settings.s3_endpoint
    assert (buckets["AWS_ACCESS_KEY_ID"], buckets["AWS_SECRET_ACCESS_KEY"]) == (access, secret)


# --- .env.example ---------------------------------------------------------------------------------
def test_env_example_declares_exactly_what_compose_interpolates(compose: stack.Compose) -> None:
    example = stack.read_env_example()
    used = stack.interpolated_names(compose.values)
    used |= stack.interpolated_names(stack.read_compose(stack.GPU_OVERRIDE).values)
    assert not (example.declared - used - stack.COMPOSE_VARIABLES), "declared, never used"
    assert not (used - example.declared), "used by compose, missing from .env.example"
    # What .env.example shows commented out is what compose does without it.
    defaults = stack.interpolation_defaults(compose.values)
    for name, value in example.commented.items():
        assert defaults.get(name) == value, f"{name}: .env.example {value!r}, compose {defaults}"
    profiles = {p for s in compose.services.values() for p in s.get("profiles") or []}
    assert set(example.active["COMPOSE_PROFILES"].split(",")) <= profiles


def test_env_example_names_are_the_settings_names(containers: dict[str, Container]) -> None:
    example = stack.read_env_example()
    every = set().union(
        *(stack.env_names(cls) for c in containers.values() if (cls := settings_of(c)))
    )
    for name in example.declared:
        if name.startswith("ROOMSCRIBE_"):
            assert name in every, f"{name} is no service's setting"
    # A Roomscribe variable reaches each service under its own name, never renamed.
    for container in containers.values():
        for key, raw in container.raw_env.items():
            variable = stack.single_variable(raw)
            if variable and variable.startswith(stack.SETTINGS_PREFIXES):
                assert variable == key, f"{container.name}: {key} is set from ${variable}"


def test_nothing_secret_is_committed(compose: stack.Compose) -> None:
    example = stack.read_env_example()
    for name, value in {**example.commented, **example.active}.items():
        if stack.SECRET_NAME.search(name):
            assert value == "", f".env.example gives {name} a value"
    # A secret compose interpolates is required (`:?`) or optional with no default.
    for name, default in stack.interpolation_defaults(compose.values).items():
        if stack.SECRET_NAME.search(name):
            assert default == "", f"compose defaults {name} to a value"
    # Unfilled, the example cannot start the stack: compose names each secret left empty.
    missing: set[str] = set()
    for service in compose.services.values():
        for value in stack.raw_environment(service).values():
            try:
                stack.interpolate(value, example.active)
            except stack.MissingVariableError as exc:
                missing.add(exc.name)
    left_empty = {n for n, v in example.active.items() if not v and stack.SECRET_NAME.search(n)}
    assert "ROOMSCRIBE_SECRET" in missing
    assert missing == left_empty - set(stack.interpolation_defaults(compose.values))


# --- Dockerfile -----------------------------------------------------------------------------------
def _extras() -> dict[str, list[str]]:
    with (stack.REPO / "pyproject.toml").open("rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return cast(dict[str, list[str]], project["optional-dependencies"])


def test_each_target_installs_its_extras_only(dockerfile: stack.Dockerfile) -> None:
    extras = _extras()
    for target, wanted in stack.TARGET_EXTRAS.items():
        installed: set[str] = set()
        for command in dockerfile.pip_installs(target):
            for word in command:
                if m := re.fullmatch(r"\.\[(.*)\]", word):
                    installed |= {e.strip() for e in m.group(1).split(",")}
        assert installed == wanted, f"target {target} installs extras {sorted(installed)}"
        assert wanted <= set(extras), f"{sorted(wanted - set(extras))} not in pyproject.toml"


def test_torch_is_the_pinned_cpu_build(dockerfile: stack.Dockerfile) -> None:
    extras = _extras()
    pins = {r for reqs in extras.values() for r in reqs if r.startswith("torch")}
    (pin,) = {p.split(";")[0].split("#")[0].strip() for p in pins}
    assert pin == "torch==2.13.0"
    for target, wanted in stack.TARGET_EXTRAS.items():
        needs_torch = any(r.startswith("torch") for e in wanted for r in extras[e])
        commands = dockerfile.pip_installs(target)
        torch_at = [i for i, c in enumerate(commands) if any(w.startswith("torch") for w in c)]
        if not needs_torch:
            assert not torch_at, f"target {target} installs torch it does not need"
            continue
        # First, alone, pinned as pyproject pins it, from the CPU index: installed as a
        # dependency it would come from PyPI with CUDA.
        (first,) = torch_at
        command = commands[first]
        assert pin in command, f"target {target}: {command}"
        index = command[command.index("--index-url") + 1]
        assert index.rstrip("/").endswith("/whl/cpu"), f"target {target} takes torch from {index}"
        extras_at = [i for i, c in enumerate(commands) if any(w.startswith(".[") for w in c)]
        assert first < min(extras_at), f"target {target} installs torch after its extras"


def test_images_run_as_an_unprivileged_user(
    compose: stack.Compose, dockerfile: stack.Dockerfile
) -> None:
    created = " ".join(r for s in dockerfile.stages.values() for r in s.all("RUN"))
    for target in stack.TARGET_EXTRAS:
        user = dockerfile.user(target)
        assert user not in (None, "root", "0"), f"target {target} runs as {user or 'root'}"
        assert re.search(rf"useradd\b.*\b{re.escape(str(user))}\b", created), user
    for name, service in compose.built().items():
        assert str(service.get("user", "")) not in ("root", "0"), f"{name} runs as root"


def _ignored(patterns: list[str], path: str) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` out (the last matching pattern decides)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        p = pattern.removeprefix("!").strip("/")
        if (
            fnmatch.fnmatch(path, p)
            or path.startswith(p + "/")
            or (p.startswith("**/") and fnmatch.fnmatch(path.split("/")[-1], p[3:]))
        ):
            ignored = not negate
    return ignored


def test_the_build_context_leaves_secrets_and_local_data_out() -> None:
    lines = (stack.REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for path in (".env", "var/roomscribe.db", "var/models/vosk/en/README", ".venv/bin/python"):
        assert _ignored(patterns, path), f"{path} would be sent to the image build"
    for path in ("pyproject.toml", "README.md", "roomscribe/settings.py", "agent/__main__.py"):
        assert not _ignored(patterns, path), f"{path} would be missing from the build"


# --- the GPU variant ------------------------------------------------------------------------------
def test_gpu_override_runs_large_v3_turbo_in_float16_on_a_gpu(
    compose: stack.Compose,
    dockerfile: stack.Dockerfile,
    dotenv: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from devkit.__main__ import build_parser
    from devkit.model_fetch import WHISPER_REPOS
    from stt_service.worker import WorkerSettings

    override = stack.read_compose(stack.GPU_OVERRIDE)
    whisper = override.services["whisper"]
    target = whisper["build"]["target"]
    merged = {
        **compose.services["whisper"],
        "environment": {
            **stack.raw_environment(compose.services["whisper"]),
            **stack.raw_environment(whisper),
        },
        "build": whisper["build"],
    }
    (container,) = containers_of(
        stack.Compose(compose.path, compose.text, {"services": {"whisper": merged}}),
        dockerfile,
        dotenv,
    ).values()
    cls = settings_of(container)
    assert cls is not None
    assert set(container.raw_env) <= set(stack.env_names(cls))
    settings = cast(WorkerSettings, stack.build_settings(cls, container.env, monkeypatch))
    assert (settings.whisper_model, settings.whisper_device, settings.whisper_compute_type) == (
        "large-v3-turbo",
        "cuda",
        "float16",
    )
    (device,) = whisper["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "compute" in dockerfile.env(target)["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    installs = " ".join(" ".join(c) for c in dockerfile.pip_installs(target))
    assert "nvidia-cudnn-cu12" in installs and "nvidia-cublas-cu12" in installs
    cpu = " ".join(" ".join(c) for c in dockerfile.pip_installs("whisper"))
    assert "nvidia" not in cpu, "the CPU image carries CUDA libraries"

    # The models job fetches the model the workers name.
    _, args = stack.python_module([str(c) for c in override.services["models"]["command"]])
    parsed = build_parser().parse_args(args)
    assert parsed.whisper_size == "large-v3-turbo"
    assert parsed.whisper_size in WHISPER_REPOS
