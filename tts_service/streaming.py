"""The streamed answer of a synthesis request, and the bodies it streams.

:class:`SynthesisResponse` always listens for the client going away while it streams and
then cancels the body at once, whatever ASGI spec version the server speaks (Starlette
only listens below 2.4 and otherwise notices when a later send fails, which for speech is
after the next sentence has been synthesized: exactly the compute barge-in should free).
Its ``on_close`` runs however the response ends, so a concurrency slot is never leaked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tts_service.audio_formats import PcmEncoder, StreamEncoder
from tts_service.engine import SentenceAudio
from tts_service.schemas import AudioLine, DoneLine, WordPublic, error_body

log = logging.getLogger(__name__)

StreamOutcome = Literal["completed", "cancelled", "error"]


@dataclass
class StreamTracker:
    """How one stream went, for its ``on_close`` (metrics, the concurrency slot)."""

    started: float
    outcome: StreamOutcome = "cancelled"
    first_audio_s: float | None = None

    def first_audio(self) -> None:
        """Note the first audio ready to send (once)."""
        if self.first_audio_s is None:
            self.first_audio_s = time.perf_counter() - self.started


class SynthesisResponse(StreamingResponse):
    """A streamed body that is cancelled as soon as the client disconnects.

    Args:
        content: The body; an async generator, closed when the response ends.
        on_close: Called once, however the response ends.
        headers: Response headers.
        media_type: The ``Content-Type``.
    """

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        *,
        on_close: Callable[[], None],
        headers: dict[str, str],
        media_type: str,
    ) -> None:
        super().__init__(content, headers=headers, media_type=media_type)
        self._body = content
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the body while watching for ``http.disconnect``."""
        failure: Exception | None = None

        async def produce(group: anyio.abc.TaskGroup) -> None:
            nonlocal failure
            try:
                await self.stream_response(send)
            except OSError:
                pass  # the client went away while a chunk was being sent
            except Exception as exc:  # raised below, once the listener has stopped
                failure = exc
            finally:
                group.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(produce, group)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()
            self._on_close()
        if failure is not None:
            # The status line is long gone: breaking the connection is the only way left
            # to tell the client that its audio is incomplete.
            raise failure


async def audio_body(
    pieces: AsyncGenerator[SentenceAudio, None], encoder: StreamEncoder, tracker: StreamTracker
) -> AsyncGenerator[bytes, None]:
    """The audio of ``pieces`` in ``encoder``'s format, a sentence at a time."""
    # Raw PCM costs nothing to "encode"; FFmpeg encoders are CPU work, kept off the loop.
    inline = isinstance(encoder, PcmEncoder)
    try:
        async with aclosing(pieces):
            header = encoder.start()
            if header:
                yield header
            async for piece in pieces:
                data = encoder.encode(piece.pcm) if inline else await _in_thread(encoder, piece)
                tracker.first_audio()
                if data:
                    yield data
        tail = encoder.finish() if inline else await asyncio.to_thread(encoder.finish)
        if tail:
            yield tail
        tracker.outcome = "completed"
    except Exception:
        tracker.outcome = "error"
        raise
    finally:
        encoder.close()


async def _in_thread(encoder: StreamEncoder, piece: SentenceAudio) -> bytes:
    return await asyncio.to_thread(encoder.encode, piece.pcm)


async def ndjson_body(
    pieces: AsyncGenerator[SentenceAudio, None], sample_rate: int, tracker: StreamTracker
) -> AsyncGenerator[bytes, None]:
    """One JSON line per piece (base64 PCM and word times), then a ``done`` line.

    A failure after the first line is reported as a last ``{"type": "error", "error":
    {...}}`` line (the status was 200 already), and the stream ends there.
    """
    count = 0
    duration = 0.0
    try:
        async with aclosing(pieces):
            async for piece in pieces:
                tracker.first_audio()
                line = AudioLine(
                    index=piece.index,
                    text=piece.text,
                    start_s=round(piece.start_s, 4),
                    duration_s=round(piece.duration_s, 4),
                    sample_rate=sample_rate,
                    audio=base64.b64encode(piece.pcm).decode("ascii"),
                    words=[
                        WordPublic(text=w.text, start_s=w.start_s, end_s=w.end_s)
                        for w in piece.words
                    ],
                )
                count += 1
                duration += piece.duration_s
                yield (line.model_dump_json() + "\n").encode()
        yield (
            DoneLine(pieces=count, duration_s=round(duration, 4)).model_dump_json() + "\n"
        ).encode()
        tracker.outcome = "completed"
    except Exception:
        log.exception("synthesis failed mid-stream")
        tracker.outcome = "error"
        body = {
            "type": "error",
            **error_body("synthesis_failed", "synthesis failed; it has been logged"),
        }
        yield (json.dumps(body) + "\n").encode()
