"""The peer for the live benchmark: alphacep's vosk-server WebSocket server, run from its source.

    python -m bench.vosk_peer --fetch                       # git clone from GitHub
    python -m bench.vosk_peer --fetch --source DIR          # a checkout or a bare git dir
    python -m bench.vosk_peer --serve --model DIR --port P  # what bench.stt_load starts

What the peer is. ``websocket/asr_server.py`` of https://github.com/alphacep/vosk-server, the
server Vosk users deploy: one asyncio task per connection that reads a message, runs
``AcceptWaveform`` + ``Result``/``PartialResult`` for it on a shared thread pool (one thread per
core), sends the JSON reply, then reads the next message. It is not vendored: ``--fetch``
copies that one file, at the pinned commit and SHA-256 below, into ``var/bench/peer/``
(ignored by git). Without network access to GitHub, pass ``--source`` a checkout or a git
directory that has the commit; when no copy can be had, :mod:`bench.stt_load` says so and
measures Roomscribe alone.

What is adapted, and nothing else. The file is imported as it is and run by its own
``start()``; the environment gives it the model folder, 16 kHz, 127.0.0.1 and a port. It was
written for websockets < 13, whose handlers took ``(websocket, path)``; websockets 13+ pass
one argument, so :func:`serve` wraps its ``recognize`` to pass the request path along.

The client side (in :mod:`bench.stt_load`) speaks its protocol: raw PCM s16le in binary
messages (the same 20 ms frames, at the same deadlines, as Roomscribe's clients send with
an offset header), ``{"eof" : 1}`` at the end; one reply per message, in order, so reply k
is the result after frame k.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
PEER_DIR: Final = REPO_ROOT / "var" / "bench" / "peer"
PEER_FILE: Final = "asr_server.py"
UPSTREAM: Final = "https://github.com/alphacep/vosk-server"
#: The commit fetched (2025-05-25, master) and the SHA-256 of its websocket/asr_server.py.
COMMIT: Final = "c2e82f029c1ac5df76b0aff8e61fc130205a757e"
SHA256: Final = "e43640b3db99b95f50fb7b0e1f8679a8cdd5c08a69e0a89ce96bfd37f38d62af"
PATH_IN_REPO: Final = "websocket/asr_server.py"


class PeerUnavailableError(Exception):
    """The peer's source cannot be had; the message says why and what to pass."""


def peer_path(folder: Path = PEER_DIR) -> Path | None:
    """The fetched ``asr_server.py`` when it is there and is the pinned one."""
    path = folder / PEER_FILE
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == SHA256:
        return path
    return None


def _git_show(git_dir: Path) -> bytes:
    result = subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"{COMMIT}:{PATH_IN_REPO}"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines()
        raise PeerUnavailableError(
            f"{git_dir} lacks {COMMIT[:12]}:{PATH_IN_REPO} ({reason[0] if reason else 'git'})"
        )
    return result.stdout


def _from_source(source: Path) -> bytes:
    """The file's bytes from a checkout (work tree or its .git) or a bare git directory."""
    for git_dir in (source / ".git", source):
        if (git_dir / "HEAD").is_file() and (git_dir / "objects").is_dir():
            return _git_show(git_dir)
    plain = source / PATH_IN_REPO
    if plain.is_file():
        return plain.read_bytes()
    raise PeerUnavailableError(f"{source} is neither a vosk-server checkout nor a git directory")


def _from_github(timeout_s: float) -> bytes:
    with tempfile.TemporaryDirectory(prefix="vosk-server-") as tmp:
        clone = Path(tmp) / "repo"
        try:
            subprocess.run(
                ["git", "clone", "--quiet", "--bare", "--filter=blob:none", UPSTREAM, str(clone)],
                capture_output=True,
                check=True,
                timeout=timeout_s,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            reason = stderr.decode(errors="replace").strip() or str(exc)
            raise PeerUnavailableError(
                f"cannot clone {UPSTREAM} ({reason.splitlines()[-1]}): give a vosk-server "
                "checkout or git directory (bench.stt_load --peer-source DIR, or "
                "bench.vosk_peer --fetch --source DIR)"
            ) from exc
        return _git_show(clone)


def fetch(source: Path | None = None, folder: Path = PEER_DIR, timeout_s: float = 120.0) -> Path:
    """Put the pinned ``asr_server.py`` into ``folder``; return its path.

    Args:
        source: A checkout or git directory holding :data:`COMMIT`; ``None``: clone GitHub.
        folder: Where the file goes (``var/bench/peer``).
        timeout_s: How long a clone may take.

    Raises:
        PeerUnavailableError: no source reachable, or bytes other than the pinned file's.
    """
    if (have := peer_path(folder)) is not None:
        return have
    data = _from_source(source) if source is not None else _from_github(timeout_s)
    if (got := hashlib.sha256(data).hexdigest()) != SHA256:
        raise PeerUnavailableError(
            f"{PATH_IN_REPO} has sha256 {got}, not the pinned {SHA256} (commit {COMMIT[:12]})"
        )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{PEER_FILE}.tmp"
    tmp.write_bytes(data)
    tmp.replace(folder / PEER_FILE)
    return folder / PEER_FILE


def serve(model: Path, port: int, path: Path) -> None:
    """Run the fetched server on 127.0.0.1:``port`` with ``model`` (16 kHz); never returns."""
    os.environ.update(
        VOSK_MODEL_PATH=str(model),
        VOSK_SAMPLE_RATE="16000",
        VOSK_SERVER_INTERFACE="127.0.0.1",
        VOSK_SERVER_PORT=str(port),
    )
    spec = importlib.util.spec_from_file_location("asr_server", path)
    if spec is None or spec.loader is None:
        raise PeerUnavailableError(f"cannot import {path}")
    module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = module.recognize

    async def recognize(websocket: Any) -> None:
        # websockets >= 13 calls handlers with the connection only; the path is on its request.
        await original(websocket, websocket.request.path)

    module.recognize = recognize  # start() looks the handler up when it serves
    sys.argv = [str(path)]  # start() reads a model path from argv[1] when given one
    asyncio.run(module.start())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fetch", action="store_true", help="copy asr_server.py into var/")
    parser.add_argument("--source", type=Path, help="a vosk-server checkout or git directory")
    parser.add_argument("--serve", action="store_true", help="run the fetched server")
    parser.add_argument("--model", type=Path, help="Vosk model folder (--serve)")
    parser.add_argument("--port", type=int, default=2700, help="port (--serve)")
    args = parser.parse_args(argv)
    if args.fetch:
        try:
            print(fetch(args.source))
        except PeerUnavailableError as exc:
            sys.exit(f"vosk-server unavailable: {exc}")
    if args.serve:
        path = peer_path()
        if path is None or args.model is None:
            sys.exit("run --fetch first, and pass --model DIR")
        serve(args.model, args.port, path)


if __name__ == "__main__":
    main()
