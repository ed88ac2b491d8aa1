"""Speaking into the room: the ``tts_control`` data topic (DESIGN.md section 5).

An application sends ``{"type": "speak", "id", "text", "voice"?, "speed"?}`` or
``{"type": "stop", "id"?}``. :class:`TtsManager` validates each message, speaks requests one
after another, sentence by sentence, and answers on ``tts_status`` with ``{"id", "state":
"started|finished|stopped|error", "error"?}``. The next sentence is requested from the TTS
service as soon as one starts playing, so its synthesis time is hidden behind playback. At
most ``max_queued`` requests wait behind the one being spoken; another ``speak`` gets an
``error`` status ("queue full"). ``stop`` is barge-in: playback is cut at once, queued audio
and the prefetched sentence included. A bad message gets an ``error`` status and changes
nothing else. Who may send control messages is the caller's decision (the room session's
allow-list); :func:`request_id_of` helps it answer a refused one.

Synthesis is the TTS service's (``POST /v1/synthesize``, answered with streamed PCM s16le
mono, its rate in the ``X-Sample-Rate`` header); playback goes to an agent audio track.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Literal, Protocol

import httpx
from livekit import rtc
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from roomscribe.auth import issue_internal_token

log = logging.getLogger(__name__)

TTS_CONTROL_TOPIC = "tts_control"
TTS_STATUS_TOPIC = "tts_status"
#: Largest ``tts_control`` message accepted, in bytes.
MAX_CONTROL_BYTES = 16_384
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


class SpeakRequest(BaseModel):
    """Say ``text`` (queued behind anything already being said)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["speak"]
    id: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1)
    voice: str | None = Field(default=None, max_length=64)
    speed: float | None = Field(default=None, ge=0.5, le=2.0)


class StopRequest(BaseModel):
    """Stop speaking now; with an ``id``, only that request (playing or queued)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["stop"]
    id: str | None = Field(default=None, max_length=128)


TtsControl = Annotated[SpeakRequest | StopRequest, Field(discriminator="type")]
_control_adapter: TypeAdapter[TtsControl] = TypeAdapter(TtsControl)


class TtsStatus(BaseModel):
    """An answer on ``tts_status``."""

    id: str | None
    state: Literal["started", "finished", "stopped", "error"]
    error: str | None = None


class Synthesizer(Protocol):
    """Turns text into PCM chunks (s16le mono at :attr:`sample_rate`)."""

    def synthesize(
        self, text: str, *, voice: str | None, speed: float | None
    ) -> AsyncIterator[tuple[bytes, int]]:
        """Yield ``(pcm, sample_rate)`` chunks as they are synthesized."""
        ...


class AudioOutput(Protocol):
    """Where speech is played: an agent audio track."""

    async def play(self, pcm: bytes, sample_rate: int) -> None:
        """Queue PCM for playback; returns when it is queued (paced by real time)."""
        ...

    def clear(self) -> None:
        """Drop everything queued and not yet played."""
        ...


def split_sentences(text: str) -> list[str]:
    """Split text at sentence ends, so speech can start after the first sentence."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


class HttpSynthesizer:
    """The TTS service over HTTP, streamed: audio arrives while it is being synthesized.

    Args:
        base_url: The TTS service's base URL.
        secret: The internal secret; each request carries a fresh token (``aud`` = ``tts``).
    """

    def __init__(self, base_url: str, secret: str | None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30, read=60))
        self._secret = secret

    async def synthesize(
        self, text: str, *, voice: str | None, speed: float | None
    ) -> AsyncIterator[tuple[bytes, int]]:
        """Stream the service's PCM for ``text``."""
        headers = {}
        if self._secret:
            token = issue_internal_token(self._secret, audience="tts", subject="agent")
            headers["Authorization"] = f"Bearer {token}"
        body = {"text": text, "voice": voice, "speed": speed}
        async with self._http.stream("POST", "/v1/synthesize", json=body, headers=headers) as res:
            if res.status_code != 200:
                detail = (await res.aread()).decode(errors="replace")[:200]
                raise TtsError(f"TTS service answered HTTP {res.status_code}: {detail}")
            rate = int(res.headers.get("x-sample-rate", "24000"))
            carry = b""
            async for chunk in res.aiter_bytes():
                data = carry + chunk
                cut = len(data) - len(data) % 2
                carry = data[cut:]
                if cut:
                    yield data[:cut], rate

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()


class TtsError(Exception):
    """Synthesis failed (the TTS service is down or refused the text)."""


class TrackAudioOutput:
    """Plays PCM on an ``rtc.AudioSource`` (publish :attr:`track` in a room to be heard)."""

    def __init__(self, sample_rate: int = 24000) -> None:
        """Create the source and its local track, at ``sample_rate``."""
        self.sample_rate = sample_rate
        self.source = rtc.AudioSource(sample_rate, 1, queue_size_ms=400)
        self.track = rtc.LocalAudioTrack.create_audio_track("roomscribe-voice", self.source)
        self.played_samples = 0
        self._generation = 0

    async def play(self, pcm: bytes, sample_rate: int) -> None:
        """Queue PCM in 20 ms frames (blocks while the source's queue is full).

        Returns early when :meth:`clear` is called meanwhile. (Cancelling a pending
        ``capture_frame`` would leave the source unable to play again, so stopping is
        cooperative.)
        """
        if sample_rate != self.sample_rate:
            raise TtsError(f"audio at {sample_rate} Hz on a {self.sample_rate} Hz track")
        generation = self._generation
        step = self.sample_rate // 50 * 2
        for start in range(0, len(pcm), step):
            if generation != self._generation:
                return
            chunk = pcm[start : start + step]
            samples = len(chunk) // 2
            await self.source.capture_frame(rtc.AudioFrame(chunk, self.sample_rate, 1, samples))
            self.played_samples += samples

    def clear(self) -> None:
        """Drop what is queued: barge-in must silence the agent at once."""
        self._generation += 1
        self.source.clear_queue()

    async def aclose(self) -> None:
        """Release the source."""
        await self.source.aclose()


class _Prefetch:
    """One sentence being synthesized in the background; its chunks wait in a queue.

    Failures are kept and raised to the reader, so a sentence that is never played (barge-in)
    never leaves an unretrieved task exception behind.
    """

    def __init__(self, synth: Synthesizer, text: str, request: SpeakRequest) -> None:
        self._chunks: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()
        self._error: BaseException | None = None
        self._task = asyncio.create_task(self._fetch(synth, text, request), name="tts-prefetch")

    async def _fetch(self, synth: Synthesizer, text: str, request: SpeakRequest) -> None:
        try:
            async for chunk in synth.synthesize(text, voice=request.voice, speed=request.speed):
                self._chunks.put_nowait(chunk)
        except httpx.HTTPError as exc:
            self._error = TtsError(f"TTS service unreachable: {exc}")
        except Exception as exc:  # raised to the reader, which reports it
            self._error = exc
        finally:
            self._chunks.put_nowait(None)

    async def chunks(self) -> AsyncIterator[tuple[bytes, int]]:
        """The sentence's PCM chunks as they arrive; raises what synthesis raised."""
        while (chunk := await self._chunks.get()) is not None:
            yield chunk
        if self._error is not None:
            raise self._error

    async def cancel(self) -> None:
        """Stop synthesizing (the HTTP stream is closed) and end :meth:`chunks`."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._chunks.put_nowait(None)  # a reader waiting on a cancelled fetch ends too


class TtsManager:
    """Handles ``tts_control`` messages; see the module docstring.

    Args:
        synthesizer: Text to PCM.
        output: Where the speech plays.
        send_status: Publishes a status on ``tts_status``.
        max_chars: The longest text accepted.
        max_queued: The most requests waiting behind the one being spoken.
    """

    def __init__(
        self,
        synthesizer: Synthesizer,
        output: AudioOutput,
        send_status: Callable[[TtsStatus], Awaitable[None]],
        *,
        max_chars: int = 2000,
        max_queued: int = 8,
    ) -> None:
        self._synth = synthesizer
        self._output = output
        self._send_status = send_status
        self._max_chars = max_chars
        self._max_queued = max_queued
        self._queue: list[SpeakRequest] = []
        self._wakeup = asyncio.Event()
        self._current: SpeakRequest | None = None
        self._speaking: asyncio.Task[None] | None = None
        self._interrupted = False
        self._runner: asyncio.Task[None] | None = None
        # The sentence playing and the next one: at most two syntheses at a time.
        self._fetches: set[_Prefetch] = set()

    def start(self) -> None:
        """Start speaking queued requests (call once, in the event loop)."""
        self._runner = asyncio.create_task(self._run(), name="tts-manager")

    async def aclose(self) -> None:
        """Stop speaking and stop the manager."""
        self._queue.clear()
        self._interrupted = True
        self._output.clear()
        await self._cancel_fetches()
        if self._speaking is not None:
            await asyncio.gather(self._speaking, return_exceptions=True)
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    async def handle(self, payload: bytes | str) -> None:
        """Handle one ``tts_control`` message; never raises for bad input."""
        if len(payload) > MAX_CONTROL_BYTES:
            await self._status(None, "error", f"message over {MAX_CONTROL_BYTES} bytes")
            return
        try:
            message = _control_adapter.validate_json(payload)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "message"
            await self._status(request_id_of(payload), "error", f"{where}: {err['msg']}")
            return
        if isinstance(message, StopRequest):
            await self._stop(message.id)
        elif len(message.text) > self._max_chars:
            await self._status(message.id, "error", f"text over {self._max_chars} characters")
        elif len(self._queue) >= self._max_queued:
            # Bounded so a flood of requests cannot hold memory or keep the agent talking.
            await self._status(
                message.id, "error", f"queue full: {self._max_queued} requests waiting"
            )
        else:
            self._queue.append(message)
            self._wakeup.set()

    async def _stop(self, request_id: str | None) -> None:
        queued = [r for r in self._queue if request_id is None or r.id == request_id]
        self._queue = [r for r in self._queue if r not in queued]
        current = self._current
        if current is not None and (request_id is None or current.id == request_id):
            self._interrupted = True
            self._output.clear()
            await self._cancel_fetches()
        for request in queued:
            await self._status(request.id, "stopped")

    async def _cancel_fetches(self) -> None:
        fetches, self._fetches = self._fetches, set()
        for fetch in fetches:
            await fetch.cancel()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                request = self._queue.pop(0)
                self._current = request
                self._interrupted = False
                self._speaking = asyncio.create_task(self._speak(request))
                try:
                    await self._speaking
                except TtsError as exc:
                    await self._status(request.id, "error", str(exc))
                except Exception as exc:  # one broken request must not end the manager
                    log.exception("speaking a request failed")
                    await self._status(request.id, "error", f"speech failed: {exc}")
                else:
                    await self._status(request.id, "stopped" if self._interrupted else "finished")
                finally:
                    self._current = None
                    self._speaking = None

    def _prefetch(self, sentence: str, request: SpeakRequest) -> _Prefetch:
        fetch = _Prefetch(self._synth, sentence, request)
        self._fetches.add(fetch)
        return fetch

    async def _speak(self, request: SpeakRequest) -> None:
        await self._status(request.id, "started")
        sentences = split_sentences(request.text)
        upcoming: _Prefetch | None = None
        try:
            for i, sentence in enumerate(sentences):
                # Prefetched while the previous sentence played (unless it had no audio).
                playing = upcoming or self._prefetch(sentence, request)
                upcoming = None
                async for pcm, rate in playing.chunks():
                    if self._interrupted:
                        return
                    # The sentence starts playing: synthesize the next one meanwhile, or the
                    # listener hears the TTS service's whole latency between sentences.
                    if upcoming is None and i + 1 < len(sentences):
                        upcoming = self._prefetch(sentences[i + 1], request)
                    await self._output.play(pcm, rate)
                self._fetches.discard(playing)
                if self._interrupted:
                    return
        finally:
            await self._cancel_fetches()

    async def _status(self, request_id: str | None, state: str, error: str | None = None) -> None:
        status = TtsStatus.model_validate({"id": request_id, "state": state, "error": error})
        try:
            await self._send_status(status)
        except Exception as exc:  # a status lost must not stop speech or transcription
            log.warning("could not send a tts_status: %s", exc)


def request_id_of(payload: bytes | str) -> str | None:
    """The ``id`` of a control message that is refused or invalid, when it has a usable one.

    Args:
        payload: The raw ``tts_control`` message.

    Returns:
        Its ``id`` when it is a JSON object with a string ``id`` of at most 128 characters.
    """
    if len(payload) > MAX_CONTROL_BYTES:
        return None
    try:
        loose = TypeAdapter(dict[str, object]).validate_json(payload)
    except ValidationError:
        return None
    value = loose.get("id")
    return value if isinstance(value, str) and len(value) <= 128 else None
