"""``python -m agent start|dev``: the LiveKit agent worker (livekit-agents CLI)."""

from __future__ import annotations

from livekit.agents import cli

from agent.settings import AgentSettings
from agent.worker import build_server


def main() -> None:
    """Read the settings once and hand the server to the livekit-agents CLI."""
    cli.run_app(build_server(AgentSettings()))


if __name__ == "__main__":
    main()
