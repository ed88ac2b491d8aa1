"""What the deployment files say, and what the code says, read side by side.

The deploy tests compare the compose file, ``.env.example``, the Dockerfile, the LiveKit
configs and the Kubernetes manifests with the code they start. Everything on the code side is
read from the code: settings classes from the entry points' own source, environment
variables from the pydantic models, routes from the FastAPI decorators, livekit-agents' health
server from its source. Nothing is imported that the deploy files do not name, and no app is
built, so the checks stay fast.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from roomscribe.settings import CoreSettings

REPO: Final = Path(__file__).resolve().parents[2]
COMPOSE: Final = REPO / "docker-compose.yml"
GPU_OVERRIDE: Final = REPO / "deploy" / "compose.gpu.yml"
ENV_EXAMPLE: Final = REPO / ".env.example"
DOCKERFILE: Final = REPO / "Dockerfile"
LIVEKIT_YAML: Final = REPO / "deploy" / "livekit.yaml"
EGRESS_YAML: Final = REPO / "deploy" / "egress.yaml"
K8S: Final = REPO / "deploy" / "k8s"

#: Variables compose itself reads from .env (not passed to any container).
COMPOSE_VARIABLES: Final = frozenset({"COMPOSE_PROFILES"})
#: Variables the container runtime reads (the NVIDIA Container Toolkit), not the service.
RUNTIME_VARIABLES: Final = frozenset({"NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_VISIBLE_DEVICES"})
#: Prefixes of the variables Roomscribe's settings read (cleared while settings are built).
SETTINGS_PREFIXES: Final = ("ROOMSCRIBE_", "LIVEKIT_", "GEMINI_")
#: Dockerfile target -> the pyproject extras it installs, and no others.
TARGET_EXTRAS: Final[Mapping[str, frozenset[str]]] = {
    "orchestrator": frozenset({"orchestrator"}),
    "stt": frozenset({"stt"}),
    "whisper": frozenset({"whisper"}),
    "whisper-gpu": frozenset({"whisper"}),
    "tts": frozenset({"tts"}),
    "agent": frozenset({"agent"}),
    # devkit's downloader: huggingface_hub comes with faster-whisper.
    "models": frozenset({"whisper"}),
}
#: Names of variables that hold secrets (or keys that unlock them).
SECRET_NAME: Final = re.compile(r"SECRET|_KEY$|PASSWORD|TOKEN")


def filled_secret(name: str) -> str:
    """What stands in for the secret ``name`` that a user generates: distinct per name."""
    return f"{name.lower()}-{'0' * 32}"


def load_yaml(path: Path) -> Any:
    """The one YAML document in ``path``."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_all(path: Path) -> list[Any]:
    """Every YAML document in ``path`` (``---`` separated), empty ones dropped."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


# --- compose interpolation ------------------------------------------------------------------------
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariableError(LookupError):
    """A ``${NAME:?message}`` whose variable is unset or empty."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def interpolated_names(text: str) -> set[str]:
    """The variables ``text`` interpolates (``${NAME...}`` or ``$NAME``; ``$$`` is a dollar)."""
    return {
        m.group("name") or m.group("bare")
        for m in _INTERPOLATION.finditer(text)
        if m.group(0) != "$$"
    }


def interpolation_defaults(text: str) -> dict[str, str]:
    """``NAME -> default`` for each ``${NAME:-default}`` or ``${NAME-default}`` in ``text``.

    Raises:
        AssertionError: One variable has different defaults in different places.
    """
    out: dict[str, str] = {}
    for m in _INTERPOLATION.finditer(text):
        if m.group("op") in (":-", "-"):
            name, default = m.group("name"), m.group("arg")
            assert out.setdefault(name, default) == default, f"{name}: two defaults"
    return out


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Interpolate ``text`` as compose does, from ``env``.

    Raises:
        MissingVariableError: A ``:?`` (or ``?``) variable is empty (or unset).
    """

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        value, op, arg = env.get(name), m.group("op"), m.group("arg") or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if (op == ":?" and not value) or (op == "?" and value is None):
            raise MissingVariableError(name, arg)
        return value or ""

    return _INTERPOLATION.sub(one, text)


def single_variable(text: str) -> str | None:
    """The variable when ``text`` is exactly one ``${NAME...}``, else ``None``."""
    m = _INTERPOLATION.fullmatch(text.strip())
    return (m.group("name") or m.group("bare")) if m and m.group(0) != "$$" else None


# --- .env.example ---------------------------------------------------------------------------------
_ASSIGNMENT = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


@dataclass(frozen=True)
class EnvExample:
    """``.env.example``: the assignments a user fills in, and the ones documented commented."""

    active: dict[str, str]
    commented: dict[str, str]

    @property
    def declared(self) -> set[str]:
        """Every variable the file names, filled in or commented out."""
        return set(self.active) | set(self.commented)


def read_env_example(path: Path = ENV_EXAMPLE) -> EnvExample:
    """Parse ``path`` (``NAME=value`` lines, and ``# NAME=value`` documented ones)."""
    active: dict[str, str] = {}
    commented: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := _ASSIGNMENT.match(line.strip()):
            target = commented if m.group("comment") else active
            target[m.group("name")] = m.group("value").strip()
    return EnvExample(active, commented)


# --- compose --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Compose:
    """A compose file, parsed (YAML merge keys resolved), with its raw text."""

    path: Path
    text: str
    data: dict[str, Any]

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        """Service name -> its definition."""
        services: dict[str, dict[str, Any]] = self.data.get("services") or {}
        return services

    @property
    def values(self) -> str:
        """Every string the file holds, one per line: what compose interpolates (not comments)."""

        def strings(node: Any) -> Iterator[str]:
            if isinstance(node, str):
                yield node
            elif isinstance(node, dict):
                for key, value in node.items():
                    yield from strings(key)
                    yield from strings(value)
            elif isinstance(node, list):
                for item in node:
                    yield from strings(item)

        return "\n".join(strings(self.data))

    def built(self) -> dict[str, dict[str, Any]]:
        """The services built from this repository's Dockerfile (the Roomscribe ones)."""
        return {name: s for name, s in self.services.items() if "build" in s}


def read_compose(path: Path = COMPOSE) -> Compose:
    """Parse the compose file at ``path``."""
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return Compose(path, text, data)


def raw_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (mapping or ``KEY=value`` list), values as text."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def stack_env(example: EnvExample | None = None, compose: Compose | None = None) -> dict[str, str]:
    """What a user's ``.env`` holds once filled in: the example with its blanks generated.

    A variable compose requires (``:?``) and the example leaves empty gets a stand-in
    secret; the others keep the example's value (empty or not).
    """
    example = example or read_env_example()
    compose = compose or read_compose()
    required = {
        m.group("name")
        for m in _INTERPOLATION.finditer(compose.values)
        if m.group("op") in (":?", "?")
    }
    env = dict(example.active)
    for name in required:
        if not env.get(name):
            env[name] = filled_secret(name)
    return env


def service_environment(service: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """A service's environment as its container gets it, interpolated from ``env``."""
    return {k: interpolate(v, env) for k, v in raw_environment(service).items()}


def healthcheck_url(service: Mapping[str, Any]) -> str | None:
    """The ``http://127.0.0.1:PORT/path`` a service's healthcheck requests, if it has one."""
    check = service.get("healthcheck")
    if not check:
        return None
    test = check.get("test")
    text = " ".join(test) if isinstance(test, list) else str(test)
    m = re.search(r"https?://(?:127\.0\.0\.1|localhost):\d+/[^\s'\"]*", text)
    return m.group(0) if m else None


# --- Dockerfile -----------------------------------------------------------------------------------
@dataclass
class Stage:
    """One ``FROM`` stage: its base (an image or an earlier stage) and its instructions."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every ``keyword`` instruction in this stage."""
        return [rest for kw, rest in self.instructions if kw == keyword]


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: its global ``ARG`` defaults and its stages by name."""

    args: dict[str, str]
    stages: dict[str, Stage]

    def chain(self, target: str) -> list[Stage]:
        """The stages ``target`` is built on, the root first, ``target`` last."""
        chain = [self.stages[target]]
        while chain[0].base in self.stages:
            chain.insert(0, self.stages[chain[0].base])
        return chain

    def env(self, target: str) -> dict[str, str]:
        """The ``ENV`` that ``target``'s own stage sets (the base's are Python's and pip's)."""
        out: dict[str, str] = {}
        for rest in self.stages[target].all("ENV"):
            for word in shlex.split(rest):
                name, sep, value = word.partition("=")
                if sep:
                    out[name] = value
        return out

    def user(self, target: str) -> str | None:
        """The user ``target`` runs as: its chain's last ``USER`` (``None``: root)."""
        users = [u for stage in self.chain(target) for u in stage.all("USER")]
        return users[-1].strip() if users else None

    def cmd(self, target: str) -> list[str]:
        """``target``'s ``CMD`` (exec form)."""
        cmds = [c for stage in self.chain(target) for c in stage.all("CMD")]
        assert cmds, f"Dockerfile target {target} has no CMD"
        parsed = json.loads(cmds[-1])
        assert isinstance(parsed, list), f"target {target}: CMD is not in exec form"
        return [str(p) for p in parsed]

    def builders(self, target: str) -> list[str]:
        """The stages whose files ``target`` copies (``COPY --from=STAGE``), with their chains."""
        names: list[str] = []
        for stage in self.chain(target):
            for rest in stage.all("COPY"):
                if m := re.search(r"--from=(\S+)", rest):
                    names += [s.name for s in self.chain(m.group(1)) if s.name not in names]
        return names

    def pip_installs(self, target: str) -> list[list[str]]:
        """The ``pip install`` commands that build ``target``'s environment, in order."""
        commands: list[list[str]] = []
        for name in self.builders(target):
            for rest in self.stages[name].all("RUN"):
                for part in rest.split("&&"):
                    if "pip install" not in part:
                        continue
                    words = shlex.split(part)
                    assert words[:2] == ["pip", "install"], f"stage {name}: {part.strip()}"
                    commands.append([self.expand(w) for w in words[2:]])
        return commands

    def expand(self, word: str) -> str:
        """``word`` with the global ``ARG`` defaults substituted (``${NAME}``, ``$NAME``)."""
        return re.sub(
            r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: self.args.get(m.group(1), ""), word
        )


def read_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    """Parse ``path``: line continuations joined, comments dropped, stages split."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#"):
            continue  # a comment, even inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if (pending + line).strip():
            logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else words[0]
            current = stages[name] = Stage(name, words[0])
        elif current is None and keyword == "ARG":
            name, _, value = rest.partition("=")
            args[name] = value
        elif current is not None:
            current.instructions.append((keyword, rest))
    return Dockerfile(args, stages)


# --- entry points and settings --------------------------------------------------------------------
def module_file(module: str) -> Path:
    """The source file of ``module``: one of this repository's, else found without import."""
    parts = module.split(".")
    for candidate in (
        REPO.joinpath(*parts).with_suffix(".py"),
        REPO.joinpath(*parts, "__init__.py"),
    ):
        if candidate.is_file():
            return candidate
    # A top-level package only (its submodules are joined on): finding a dotted name would
    # import its parents, which for livekit-agents takes seconds.
    spec = importlib.util.find_spec(parts[0])
    assert spec is not None, f"no module {parts[0]}"
    roots = list(spec.submodule_search_locations or [])
    for root in roots:
        path = Path(root).joinpath(*parts[1:])
        for candidate in (path.with_suffix(".py"), path / "__init__.py"):
            if candidate.is_file():
                return candidate
    raise AssertionError(f"no source for {module}")


@cache
def parse(path: Path) -> ast.Module:
    """The syntax tree of ``path`` (cached: several tests read the same files)."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def main_module(module: str) -> str:
    """The module ``python -m module`` runs, checked to be a script.

    Raises:
        AssertionError: ``module`` does not exist, or it (or its ``__main__``) has no
            ``if __name__ == "__main__":`` block.
    """
    path = module_file(module)
    if path.name == "__init__.py":
        module, path = f"{module}.__main__", path.with_name("__main__.py")
        assert path.is_file(), f"package {module} has no __main__.py"
    guarded = any(
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        for node in parse(path).body
    )
    assert guarded, f"{module} has no `if __name__ == '__main__':` entry"
    return module


def python_module(command: list[str]) -> tuple[str, list[str]]:
    """``(module, args)`` of a ``python -m module args...`` command."""
    assert command[:2] == ["python", "-m"] and len(command) > 2, (
        f"{command} is not `python -m <module> ...`"
    )
    return command[2], command[3:]


def _imports(tree: ast.Module) -> dict[str, str]:
    """Name -> ``module:attribute`` (or ``module`` for a module) the file imports."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                out[alias.asname or alias.name] = f"{node.module}:{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                out[alias.asname or alias.name.split(".")[0]] = alias.name
    return out


def settings_class(module: str) -> type[CoreSettings]:
    """The settings class the entry point ``module`` builds (its one ``*Settings`` it calls).

    Found in the source: a ``*Settings`` name called (``SttSettings()``) or handed to a call
    (``load_settings(PROG, TtsSettings)``), defined in the module or imported into it.
    """
    tree = parse(module_file(module))
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for candidate in (node.func, *node.args):
                if isinstance(candidate, ast.Name) and candidate.id.endswith("Settings"):
                    used.add(candidate.id)
    assert len(used) == 1, f"{module} builds {sorted(used) or 'no'} settings classes"
    (name,) = used
    defined_here = any(isinstance(n, ast.ClassDef) and n.name == name for n in tree.body)
    source = module if defined_here else _imports(tree)[name].partition(":")[0]
    cls = getattr(importlib.import_module(source), name)
    assert isinstance(cls, type) and issubclass(cls, CoreSettings), f"{name} is not settings"
    return cls


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Environment variable -> field, for every field of ``cls`` (pydantic-settings' rules)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    out: dict[str, str] = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names = [c for c in alias.choices if isinstance(c, str)]
        elif isinstance(alias, str):
            names = [alias]
        else:
            names = [f"{prefix}{info.alias or name}"]
        for env in names:
            out[env.upper()] = name
    return out


def build_settings(
    cls: type[CoreSettings], env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> CoreSettings:
    """``cls`` as a container with ``env`` (and nothing else of this process) builds it."""
    with monkeypatch.context() as patch:
        for name in list(os.environ):
            if name.upper().startswith(SETTINGS_PREFIXES):
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return cls(_env_file=None)


def listen_fields(cls: type[BaseSettings]) -> tuple[str, str]:
    """The fields of ``cls`` that set its listening address and port (``*host``, ``*port``)."""
    hosts = [n for n in cls.model_fields if n == "host" or n.endswith("_host")]
    ports = [n for n in cls.model_fields if n == "port" or n.endswith("_port")]
    assert len(hosts) == 1 and len(ports) == 1, f"{cls.__name__}: host {hosts}, port {ports}"
    return hosts[0], ports[0]


# --- routes ---------------------------------------------------------------------------------------
_ROUTE_METHODS: Final = {"get", "post", "put", "patch", "delete", "websocket", "api_route"}


def _app_factory_module(entry: str) -> str:
    """The module whose ``create_app`` the entry point ``entry`` serves."""
    target = _imports(parse(module_file(entry))).get("create_app")
    assert target, f"{entry} imports no create_app"
    return target.partition(":")[0]


def _router_prefixes(tree: ast.Module) -> dict[str, str]:
    """Variable -> path prefix, for every ``FastAPI(...)`` or ``APIRouter(...)`` assigned."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id in ("FastAPI", "APIRouter")
        ):
            prefix = next(
                (
                    str(k.value.value)
                    for k in node.value.keywords
                    if k.arg == "prefix" and isinstance(k.value, ast.Constant)
                ),
                "",
            )
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = prefix
    return out


def routes(module: str, obj: str | None = None) -> set[tuple[str, str]]:
    """``(METHOD, path)`` of every route declared on ``obj`` in ``module`` (all, when None).

    Follows ``include_router`` into the modules it names, with their prefixes.
    """
    tree = parse(module_file(module))
    prefixes = _router_prefixes(tree)
    imports = _imports(tree)
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                if (
                    isinstance(dec, ast.Call)
                    and isinstance(dec.func, ast.Attribute)
                    and isinstance(dec.func.value, ast.Name)
                    and dec.func.value.id in prefixes
                    and dec.func.attr in _ROUTE_METHODS
                    and (obj is None or dec.func.value.id == obj)
                    and dec.args
                    and isinstance(dec.args[0], ast.Constant)
                ):
                    owner, method = dec.func.value.id, dec.func.attr.upper()
                    found.add((method, prefixes[owner] + str(dec.args[0].value)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "include_router"
            and isinstance(node.func.value, ast.Name)
            and (obj is None or node.func.value.id == obj)
            and node.args
        ):
            found |= _included(node.args[0], prefixes, imports, module)
    return found


def _included(
    arg: ast.expr, prefixes: Mapping[str, str], imports: Mapping[str, str], module: str
) -> set[tuple[str, str]]:
    """The routes of the router ``arg`` names (local, imported, or ``module.router``)."""
    if isinstance(arg, ast.Name) and arg.id in prefixes:
        return routes(module, arg.id)
    if isinstance(arg, ast.Name) and arg.id in imports:
        source, _, attr = imports[arg.id].partition(":")
        return routes(source, attr)
    if (
        isinstance(arg, ast.Attribute)
        and isinstance(arg.value, ast.Name)
        and (target := imports.get(arg.value.id, ""))
    ):
        return routes(target.replace(":", "."), arg.attr)
    # A router built by a call (``include_router(page_router())``): its routes are not
    # read, so a check that needs one of them fails as "route not served", never passes.
    return set()


def app_routes(entry: str) -> set[tuple[str, str]]:
    """The routes of the app the entry point ``entry`` serves."""
    return routes(_app_factory_module(entry))


# --- livekit-agents (the agent's health server and environment) -----------------------------------
def _livekit_agents_source(name: str) -> ast.Module:
    return parse(module_file(f"livekit.agents.{name}"))


def livekit_agents_env() -> set[str]:
    """The variables livekit-agents' ``AgentServer`` reads (``os.environ.get("...")``)."""
    out: set[str] = set()
    for node in ast.walk(_livekit_agents_source("worker")):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and ast.unparse(node.func.value) == "os.environ"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            out.add(str(node.args[0].value))
    return out


def livekit_agents_health() -> tuple[int, set[str]]:
    """The production port of livekit-agents' health server, and the paths it serves."""
    tree = _livekit_agents_source("worker")
    port: int | None = None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_default_port" for t in node.targets)
            and isinstance(node.value, ast.Call)
        ):
            for kw in node.value.keywords:
                if (
                    kw.arg == "prod_default"
                    and isinstance(kw.value, ast.Constant)
                    and isinstance(kw.value.value, int)
                ):
                    port = kw.value.value
    paths = {
        str(node.args[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and ast.unparse(node.func) == "web.get"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    assert port is not None, "livekit-agents' AgentServer has no _default_port"
    return port, paths


def livekit_agents_commands() -> set[str]:
    """The subcommands of the livekit-agents CLI (``python -m agent <command>``)."""
    names: set[str] = set()
    cli = module_file("livekit.agents.cli").parent
    for path in sorted(cli.glob("*.py")):
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and ast.unparse(d.func).endswith(".command")
                for d in node.decorator_list
            ):
                names.add(node.name)
    return names


def agent_server_port_overridden() -> bool:
    """Whether the agent passes its own ``port=`` to ``AgentServer`` (else the library's)."""
    for path in sorted((REPO / "agent").glob("*.py")):
        for node in ast.walk(parse(path)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "AgentServer"
                and any(kw.arg == "port" for kw in node.keywords)
            ):
                return True
    return False


# --- URLs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Url:
    """The parts of a URL the checks compare."""

    scheme: str
    host: str
    port: int | None
    path: str


def split_url(url: str) -> Url:
    """``url``'s scheme, host, port and path."""
    parts = urlsplit(url)
    return Url(parts.scheme, parts.hostname or "", parts.port, parts.path or "/")


def iter_urls(values: Mapping[str, str]) -> Iterator[tuple[str, Url]]:
    """``(name, url)`` for the values that are http(s) or ws(s) URLs."""
    for name, value in values.items():
        if re.match(r"^(https?|wss?)://", value):
            yield name, split_url(value)
