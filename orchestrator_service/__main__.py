"""``python -m orchestrator_service``: serve the REST API, webhooks and internal calls."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator_service.app import create_app
from orchestrator_service.settings import OrchestratorSettings
from roomscribe.cli import load_settings, parse_service_args, run_service

PROG = "python -m orchestrator_service"


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, read the settings once and serve."""
    args = parse_service_args(
        PROG,
        "The Roomscribe orchestrator: the transcript REST API, LiveKit webhooks, egress, "
        "the room lifecycle and summaries.",
        host_env="ROOMSCRIBE_ORCHESTRATOR_HOST",
        port_env="ROOMSCRIBE_ORCHESTRATOR_PORT",
        default_port=8000,
        argv=argv,
    )
    settings = load_settings(PROG, OrchestratorSettings)
    host = args.host or settings.orchestrator_host
    port = args.port or settings.orchestrator_port
    run_service(
        PROG,
        args,
        lambda: create_app(settings),
        host=host,
        port=port,
        header_timeout_s=settings.header_timeout_s,
    )


if __name__ == "__main__":
    main()
