"""Live-path memory: 1,000 sequential STT sessions, and a 3-hour silent track on the agent side.

    python -m bench.live_memory --json                # about 1-2 minutes here
    python -m bench.live_memory --sessions 200 --hours 1

Sessions. The STT service runs in this process as ``python -m stt_service`` builds it
(``create_app`` on a real server, loopback, a temporary SQLite store, default bounds) with the
synthetic tone model (``devkit.synthetic_vosk``, cached under ``var/bench``) or ``--model DIR``.
Each session is what an agent's track stream does: connect, ``start`` a new track, send 2 s of
audio holding one word, ``end``, read until the close. After 100 warm-up sessions the process's
traced Python memory (``tracemalloc``) and live object count are read, the remaining sessions
run, and they are read again after a collection: ``leak_per_session_bytes`` is the growth over
those sessions divided by their number. Reference, same run: ``live_session_bytes``, the
traced memory one open session holds (its pipeline, queues, recognizer, writer state) while
its audio is in, measured by opening one more session. ``leak_share = leak_per_session_bytes /
live_session_bytes`` (lower is better; 1.0 would mean every session stays whole in memory).
RSS is shown too (it includes libvosk's native heap, which ``tracemalloc`` cannot see).
Two caches keep a little per track on purpose, up to a bound (10,000 tracks each by default:
the offsets the service remembers for a resume, and the store's track metadata);
``--cache-bound`` lowers both so that a thousand sessions go past the bound and "flat" shows
within the run (default 100; 0 keeps the service's own bounds).

Silent track. The agent's per-track state that grows with a track's length is its latency
clock (when each pushed frame went in) and its replay buffer (audio not yet committed). Both
are driven here directly for ``--hours`` of 10 ms frames of silence on a simulated clock, the
buffer committed each second as the service does on a silent track (it commits audio that
held no words): three hours in a few seconds. Figures: entries and traced bytes after each
hour. Reference, same run: the same pushes kept in an unbounded list, which is what the clock
did before it had a window. ``silent_track_ratio = bounded_bytes / unbounded_bytes`` at the last
hour (lower is better), and ``growth_last_hour_bytes`` (0 is flat).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agent.replay import ReplayBuffer
from agent.transcriber import LatencyClock
from bench.report import emit
from devkit.tones import synthesize
from roomscribe.protocol import StartMessage, encode_audio_frame
from roomscribe.serving import running
from roomscribe.store import SQLiteTranscriptStore
from stt_service.app import create_app
from stt_service.recognizer import VoskModels
from stt_service.session import SttRuntime
from stt_service.settings import SttSettings

RATE = 16000
FRAME_S = 0.01  # what rtc.AudioStream yields by default
WARM_UP = 100


def rss_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def model_folder(arg: Path | None) -> tuple[Path, str]:
    """The Vosk model to run, and whether it is real or synthetic."""
    if arg is not None:
        return arg, "given"
    from devkit.synthetic_vosk import build_synthetic_vosk_model

    return build_synthetic_vosk_model(Path("var/bench/vosk-tiny")), "synthetic"


def start_json(track: str) -> str:
    """The ``start`` of a new track in one room."""
    return StartMessage(
        room="bench",
        participant=f"p-{track}",
        track_sid=track,
        language="en",
        sample_rate=RATE,
        track_started_at=time.time(),
    ).model_dump_json()


async def settle(runtime: SttRuntime) -> None:
    """Wait until the writer holds nothing (every final stored, state freed)."""
    async with asyncio.timeout(30):
        while runtime.writer.tracked or runtime.writer.pending:  # noqa: ASYNC110 - counters
            await asyncio.sleep(0.01)


async def sessions_run(model: Path, sessions: int, cache_bound: int) -> dict[str, Any]:
    """Sequential sessions through a real STT service; memory before, after, and per session."""
    import stt_service.manager

    if cache_bound:
        stt_service.manager._REMEMBERED_TRACKS = cache_bound
    pcm = synthesize(["alpha"], lead_s=0.3, tail_s=0.7).astype("<i2").tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "stt.db"
        settings = SttSettings(stt_auth=False, sqlite_path=db, stt_store_flush_s=0.01)
        store = SQLiteTranscriptStore(db)
        if cache_bound:
            store._track_meta.max_entries = cache_bound
        app = create_app(settings, recognizer_factory=VoskModels.load({"en": model}), store=store)
        async with running(app) as base:
            url = base.replace("http", "ws") + "/v1/stream"
            runtime: SttRuntime = app.state.stt_runtime
            finals = [0]

            async def session(i: int, hold: asyncio.Event | None = None) -> None:
                async with connect(url) as ws:
                    await ws.send(start_json(f"TR_{i:05d}"))
                    await ws.recv()
                    for offset in range(0, len(pcm) // 2, RATE // 2):  # 0.5 s frames
                        chunk = pcm[offset * 2 : (offset + RATE // 2) * 2]
                        await ws.send(encode_audio_frame(offset, chunk))
                    if hold is not None:
                        await asyncio.sleep(0.5)  # its audio is in the pipeline now
                        hold.set()
                        await asyncio.sleep(0.5)
                    await ws.send('{"type":"end"}')
                    with contextlib.suppress(ConnectionClosed):
                        async for message in ws:
                            if isinstance(message, str) and '"final"' in message:
                                finals[0] += 1
                    if ws.close_code != 1000:
                        raise RuntimeError(f"session {i} closed with {ws.close_code}")

            for i in range(WARM_UP):
                await session(i)
            await settle(runtime)
            gc.collect()
            tracemalloc.start(8)
            first = tracemalloc.take_snapshot()
            base_traced = tracemalloc.get_traced_memory()[0]
            base_objects = len(gc.get_objects())
            base_rss = rss_bytes()
            started = time.perf_counter()
            for i in range(WARM_UP, sessions):
                await session(i)
            wall = time.perf_counter() - started
            await settle(runtime)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - base_traced
            # Where the growth is, by the innermost frame outside this file and the stdlib.
            diff = tracemalloc.take_snapshot().compare_to(first, "lineno")
            top = [
                f"{Path(d.traceback[0].filename).name}:{d.traceback[0].lineno}:{d.size_diff}"
                for d in sorted(diff, key=lambda d: -d.size_diff)[:5]
            ]
            objects = len(gc.get_objects()) - base_objects
            rss = rss_bytes() - base_rss
            # One open session's footprint, for scale.
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            held = asyncio.Event()
            task = asyncio.create_task(session(sessions, held))
            await held.wait()
            live = tracemalloc.get_traced_memory()[0] - before
            await task
            tracemalloc.stop()
            await settle(runtime)
            state = {
                "writer_tracked": runtime.writer.tracked,
                "manager_active": runtime.manager.active,
                "cache_bound": cache_bound or None,
                "remembered_tracks": len(runtime.manager._offsets),
                "store_cached_tracks": len(store._track_meta),
            }
        await store.close()
    measured = sessions - WARM_UP
    per_session = grown / measured
    return {
        "sessions": sessions,
        "sessions_measured": measured,
        "sessions_per_s": round(measured / wall, 1),
        "traced_growth_bytes": grown,
        "leak_per_session_bytes": round(per_session, 1),
        "live_session_bytes": live,
        "leak_share": round(per_session / live, 4) if live > 0 else None,
        "top_growth_files": " ".join(top),
        "finals": finals[0],
        "objects_growth": objects,
        "objects_per_session": round(objects / measured, 2),
        "rss_growth_mb": round(rss / 2**20, 1),
        **state,
    }


def silent_track_run(hours: int) -> dict[str, Any]:
    """The agent's latency clock and replay buffer over ``hours`` of silent frames."""
    now = [0.0]
    clock = LatencyClock(now=lambda: now[0])
    replay = ReplayBuffer(30 * RATE)
    silence = bytes(int(RATE * FRAME_S) * 2)
    frames_per_hour = round(3600 / FRAME_S)
    per_frame = int(RATE * FRAME_S)
    unbounded: list[tuple[int, float]] = []  # the clock before it had a window
    tracemalloc.start()
    out: dict[str, Any] = {"hours": hours}
    bounded_prev = 0
    total = 0
    for hour in range(1, hours + 1):
        for _ in range(frames_per_hour):
            now[0] += FRAME_S
            replay.append(total, silence)
            total += per_frame
            clock.pushed(total)
            unbounded.append((total, now[0]))
            if total % RATE == 0:
                replay.commit(total)  # the service commits a second of silence
        snapshot = tracemalloc.take_snapshot()
        bounded = _bytes_of(snapshot, ("agent/transcriber.py", "agent/replay.py"))
        reference = _bytes_of(snapshot, ("bench/live_memory.py",))
        out[f"clock_entries_h{hour}"] = len(clock)
        out[f"replay_samples_h{hour}"] = replay.samples
        out[f"bounded_bytes_h{hour}"] = bounded
        out[f"unbounded_bytes_h{hour}"] = reference
        if hour == hours:
            out["growth_last_hour_bytes"] = bounded - bounded_prev
            out["silent_track_ratio"] = round(bounded / reference, 5) if reference else None
        bounded_prev = bounded
    tracemalloc.stop()
    return out


def _bytes_of(snapshot: tracemalloc.Snapshot, files: tuple[str, ...]) -> int:
    """Traced bytes allocated from lines of ``files`` (still alive at the snapshot)."""
    return sum(
        stat.size
        for stat in snapshot.statistics("filename")
        if any(stat.traceback[0].filename.endswith(f) for f in files)
    )


def main(argv: list[str] | None = None) -> None:
    """Run both parts and print the table (``--json``: one JSON line last)."""
    parser = argparse.ArgumentParser(prog="python -m bench.live_memory", description=__doc__)
    parser.add_argument("--sessions", type=int, default=1000, help="sequential sessions (1000)")
    parser.add_argument("--hours", type=int, default=3, help="silent-track hours (3)")
    parser.add_argument("--model", type=Path, help="a Vosk model folder (default: synthetic)")
    parser.add_argument(
        "--cache-bound", type=int, default=100, help="per-track cache bound (100; 0: default)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line last")
    args = parser.parse_args(argv)
    if args.sessions <= WARM_UP or args.hours < 1:
        parser.error(f"--sessions must be over {WARM_UP} and --hours at least 1")
    model, kind = model_folder(args.model)
    result: dict[str, Any] = {"weights": kind, "model": str(model)}
    result.update(asyncio.run(sessions_run(model, args.sessions, args.cache_bound)))
    result.update(silent_track_run(args.hours))
    emit(result, as_json=args.json)


if __name__ == "__main__":
    main()
