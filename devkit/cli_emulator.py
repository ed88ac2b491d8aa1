"""``python -m devkit livekit-emulator``: serve the LiveKit API emulator on its own."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from devkit.cli_common import Commands, refuse


def add_command(commands: Commands) -> None:
    """Register ``livekit-emulator``."""
    parser = commands.add_parser(
        "livekit-emulator",
        help="serve a LiveKit API/webhook/egress emulator",
        description=(
            "Serve the LiveKit server API the orchestrator uses (Twirp RoomService and "
            "Egress, protobuf bodies) and send LiveKit-signed webhooks; track egress writes "
            "OGG/Opus recordings into the objects folder. Rooms are scripted in-process "
            "(devkit.livekit_emulator.LiveKitEmulator), e.g. by the demo."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=7880, help="port (default: %(default)s)")
    parser.add_argument(
        "--webhook-url", metavar="URL", help="where to POST webhooks (default: none are sent)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LIVEKIT_API_KEY") or "devkey",
        help="API key (default: $LIVEKIT_API_KEY or %(default)s)",
    )
    parser.add_argument(
        "--api-secret",
        default=os.environ.get("LIVEKIT_API_SECRET"),
        help="API secret (default: $LIVEKIT_API_SECRET; required)",
    )
    parser.add_argument(
        "--objects-dir",
        type=Path,
        default=Path(os.environ.get("ROOMSCRIBE_OBJECTS_DIR") or "var/objects"),
        metavar="DIR",
        help="folder egress writes recordings to (default: $ROOMSCRIBE_OBJECTS_DIR or %(default)s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl+C; the exit status."""
    if not args.api_secret:
        return refuse("livekit-emulator", "give --api-secret or set LIVEKIT_API_SECRET")
    # Imported here: livekit-api, uvicorn and PyAV belong to other extras than `models` needs.
    import asyncio

    from devkit.livekit_emulator import LiveKitEmulator
    from roomscribe.objectstore import LocalObjectStore

    async def serve() -> None:
        store = LocalObjectStore(args.objects_dir)
        await store.init()
        emulator = LiveKitEmulator(args.api_key, args.api_secret, store, args.webhook_url)
        print(
            f"LiveKit emulator on {args.host}:{args.port}; webhooks to "
            f"{args.webhook_url or '(none)'}; recordings in {args.objects_dir}",
            flush=True,
        )
        try:
            await emulator.serve(args.host, args.port)
        finally:
            await emulator.aclose()

    # uvicorn stops on SIGINT, then re-raises it once it has shut down.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0
