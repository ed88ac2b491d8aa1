"""``python -m devkit settings``: every setting of every service, from its settings model.

Each service reads its settings from the environment (and ``.env``) through a pydantic
settings class; this lists their fields as Markdown tables, one per service (the settings
every service shares first): the name, the environment variable(s), the default and the
description. Secrets' defaults are not shown.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Final, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import AliasChoices, AliasPath, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from devkit.cli_common import Commands

#: Service -> (what reads it, the settings class as ``module:Class``).
SERVICES: Final[dict[str, tuple[str, str]]] = {
    "shared": ("every service", "roomscribe.settings:CoreSettings"),
    "orchestrator": (
        "python -m orchestrator_service",
        "orchestrator_service.settings:OrchestratorSettings",
    ),
    "stt": ("python -m stt_service", "stt_service.settings:SttSettings"),
    "worker": ("python -m stt_service.worker", "stt_service.worker:WorkerSettings"),
    "tts": ("python -m tts_service", "tts_service.settings:TtsSettings"),
    "agent": ("python -m agent", "agent.settings:AgentSettings"),
}


def settings_class(service: str) -> type[BaseModel]:
    """The settings class of ``service`` (a key of :data:`SERVICES`)."""
    module, _, name = SERVICES[service][1].partition(":")
    cls: type[BaseModel] = getattr(importlib.import_module(module), name)
    return cls


def env_names(cls: type[BaseModel], name: str, field: FieldInfo) -> list[str]:
    """The environment variables that set ``field`` of ``cls``, as a user would write them."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasPath):
        return []
    prefix = str(cls.model_config.get("env_prefix", ""))
    return [f"{prefix}{field.alias or name}".upper()]


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "(computed)"
    value = field.default
    if value is PydanticUndefined:
        return "(required)"
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(a development placeholder)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if str(value) else '""'


def _constraints(field: FieldInfo) -> str:
    parts: list[str] = []
    if get_origin(field.annotation) is Literal:
        parts.append("one of " + ", ".join(str(c) for c in get_args(field.annotation)))
    for item in field.metadata:
        if isinstance(item, Ge):
            parts.append(f">= {item.ge}")
        elif isinstance(item, Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, Le):
            parts.append(f"<= {item.le}")
        elif isinstance(item, Lt):
            parts.append(f"< {item.lt}")
    return ", ".join(parts)


def rows(service: str) -> list[tuple[str, str, str, str]]:
    """(name, env vars, default, description) for the fields ``service`` adds."""
    cls = settings_class(service)
    shared = set(settings_class("shared").model_fields) if service != "shared" else set()
    out: list[tuple[str, str, str, str]] = []
    for name, field in cls.model_fields.items():
        if name in shared:
            continue
        description = " ".join((field.description or "").split())
        if limits := _constraints(field):
            description = f"{description} ({limits})" if description else f"({limits})"
        out.append((name, ", ".join(env_names(cls, name, field)), _default(field), description))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or " "


def markdown(services: list[str]) -> str:
    """The tables of ``services``, in Markdown."""
    parts: list[str] = []
    for service in services:
        who, where = SERVICES[service]
        parts += [
            f"### {service}: {who} (`{where}`)",
            "",
            "| setting | environment variable | default | description |",
            "|---|---|---|---|",
        ]
        for name, env, default, description in rows(service):
            parts.append(
                f"| `{name}` | {_cell(', '.join(f'`{e}`' for e in env.split(', ') if e))} | "
                f"{_cell(f'`{default}`' if default[:1] not in '(' else default)} | "
                f"{_cell(description)} |"
            )
        parts.append("")
    return "\n".join(parts)


def add_command(commands: Commands) -> None:
    """Register ``settings``."""
    parser = commands.add_parser(
        "settings",
        help="list every setting of every service (Markdown tables)",
        description=(
            "Print the settings each service reads from its environment (and .env), from "
            "their settings models: name, environment variable, default, description. The "
            "'shared' table applies to every service."
        ),
    )
    parser.add_argument(
        "--service",
        choices=list(SERVICES),
        action="append",
        help="only this service (repeatable; default: all)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the tables; the exit status."""
    print(markdown(args.service or list(SERVICES)), end="")
    return 0
