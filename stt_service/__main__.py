"""``python -m stt_service``: serve the streaming STT WebSocket (port 8001)."""

from __future__ import annotations

from collections.abc import Sequence

from roomscribe.cli import fail, load_settings, parse_service_args, run_service
from roomscribe.errors import ConfigurationError
from stt_service.app import create_app
from stt_service.recognizer import check_model_folders
from stt_service.settings import SttSettings

PROG = "python -m stt_service"


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, read the settings once and serve."""
    args = parse_service_args(
        PROG,
        "The Roomscribe STT service: live Vosk transcription over a WebSocket, one pipeline "
        "per client, finals stored as they are committed.",
        host_env="ROOMSCRIBE_STT_HOST",
        port_env="ROOMSCRIBE_STT_PORT",
        default_port=8001,
        argv=argv,
    )
    settings = load_settings(PROG, SttSettings)
    try:
        # Checked before serving: a missing model is one line, not a failed lifespan.
        check_model_folders(settings.model_folders())
    except ConfigurationError as exc:
        fail(PROG, str(exc))
    run_service(
        PROG,
        args,
        lambda: create_app(settings),
        host=args.host or settings.stt_host,
        port=args.port or settings.stt_port,
        header_timeout_s=settings.header_timeout_s,
    )


if __name__ == "__main__":
    main()
