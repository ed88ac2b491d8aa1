"""Run an ASGI app on a real uvicorn server on a free loopback port, inside the test's loop."""

from __future__ import annotations

from roomscribe.serving import running as serve

__all__ = ["serve"]
