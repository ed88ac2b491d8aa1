"""``python -m tts_service``: serve Kokoro speech synthesis on port 8002."""

from __future__ import annotations

from collections.abc import Sequence

from roomscribe.cli import load_settings, parse_service_args, run_service
from tts_service.settings import TtsSettings

PROG = "python -m tts_service"


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, read the settings once and serve."""
    args = parse_service_args(
        PROG,
        "The Roomscribe TTS service: Kokoro-82M speech, streamed sentence by sentence "
        "(POST /v1/synthesize, OpenAI-compatible POST /v1/audio/speech, GET /v1/voices).",
        host_env="ROOMSCRIBE_TTS_HOST",
        port_env="ROOMSCRIBE_TTS_PORT",
        default_port=8002,
        argv=argv,
    )
    settings = load_settings(PROG, TtsSettings)
    host = args.host or settings.tts_host
    port = args.port or settings.tts_port

    def build_app() -> object:
        # Imported here: the app pulls in torch (seconds), which --help does not need.
        from tts_service.app import create_app

        return create_app(settings)

    run_service(
        PROG, args, build_app, host=host, port=port, header_timeout_s=settings.header_timeout_s
    )


if __name__ == "__main__":
    main()
