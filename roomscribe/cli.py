"""The command line every service shares: ``--help``, ``--host``, ``--port``, ``--log-format``.

A service that cannot start (a busy port, a missing model, a bad setting) says why in one
line on stderr and exits with status 2, the status ``argparse`` uses for bad usage: a
traceback is for bugs, not for a port someone else holds.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from pydantic import ValidationError

from roomscribe.errors import ConfigurationError
from roomscribe.logs import LogFormat, configure_logging
from roomscribe.serving import serve

log = logging.getLogger(__name__)

S = TypeVar("S")

#: The exit status of a service that could not start.
EXIT_CANNOT_START = 2


@dataclass(frozen=True)
class ServiceArgs:
    """What the command line asked for; ``None`` means "as the settings say"."""

    host: str | None
    port: int | None
    log_format: LogFormat


def parse_service_args(
    prog: str,
    description: str,
    *,
    host_env: str,
    port_env: str,
    default_port: int,
    argv: Sequence[str] | None = None,
) -> ServiceArgs:
    """Parse a service's command line (``--help`` prints the usage and exits).

    Args:
        prog: The command, as a user types it (``python -m stt_service``).
        description: One paragraph on what the service does.
        host_env: The environment variable that sets the address otherwise.
        port_env: The environment variable that sets the port otherwise.
        default_port: The port when neither the flag nor the variable says.
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Every setting is also read from the environment: python -m devkit settings "
        "lists them all.",
    )
    parser.add_argument(
        "--host", help=f"address to listen on (default: ${host_env}, else 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, help=f"port to listen on (default: ${port_env}, else {default_port})"
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text: one readable line per event; json: one JSON object per line",
    )
    args = parser.parse_args(argv)
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port (1-65535)")
    fmt: LogFormat = "json" if args.log_format == "json" else "text"
    return ServiceArgs(host=args.host, port=args.port, log_format=fmt)


def fail(prog: str, message: str) -> NoReturn:
    """Say why ``prog`` cannot start, in one line, and exit with status 2."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(EXIT_CANNOT_START)


def load_settings(prog: str, build: Callable[[], S]) -> S:
    """Build a settings object, or fail in one line naming the bad setting."""
    try:
        return build()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        fail(prog, f"setting {where}: {err['msg']}")
    except ConfigurationError as exc:
        fail(prog, str(exc))


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`ConfigurationError` if ``host:port`` cannot be listened on.

    Checked before anything loads (models take seconds), so a busy port is one line at once
    rather than a traceback after the start-up work.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port in TIME_WAIT from a restart is free to take.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from exc


def run_service(
    prog: str,
    args: ServiceArgs,
    build_app: Callable[[], Any],
    *,
    host: str,
    port: int,
    header_timeout_s: float,
) -> None:
    """Configure logging, check the address, build the app and serve it until stopped."""
    configure_logging(args.log_format)
    try:
        check_port_free(host, port)
        app = build_app()
    except ConfigurationError as exc:
        fail(prog, str(exc))
    serve(app, host=host, port=port, header_timeout_s=header_timeout_s)
