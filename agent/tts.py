"""Speaking into the room: the ``tts_control`` data topic (DESIGN.md section 5).

An application sends ``{"type": "speak", "id", "text", "voice"?, "speed"?}`` or
``{"type": "stop", "id"?}``. :class:`TtsManager` validates each message, speaks requests one
after another, sentence by sentence, and answers on ``tts_status`` with ``{"id", "state":
"started|finished|stopped|error", "error"?}``: ``started`` when it takes the request up,
``finished`` once its last audio has played, ``stopped`` when a ``stop`` cut it (or dropped it
from the queue), ``error`` for a bad message or a failed synthesis. The next sentence is
requested from the TTS service as soon as one starts playing, so its synthesis time is hidden
behind playback. At most ``max_queued`` requests wait behind the one being spoken; another
``speak`` gets an ``error`` status ("queue full"). ``stop`` is barge-in: playback is cut at
once (the track is silent within a frame), queued audio and the prefetched sentence
included. A bad message gets an ``error`` status and changes nothing else. Who may send
control messages is the caller's decision (the room session's allow-list);
:func:`request_id_of` helps it answer a refused one.

Synthesis is the TTS service's (:class:`~agent.tts_client.HttpSynthesizer`: pieces of PCM
with their text and word times); playback goes to an agent audio track
(:class:`~agent.voice_output.TrackAudioOutput`), and what is said is captioned on the agent's
own identity as it is heard (:mod:`agent.speech_captions`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agent.speech_captions import SpeechCaptions, VoiceCaptions
from agent.tts_client import HttpSynthesizer, SpeechPiece, Synthesizer, TtsError
from agent.voice_output import AudioOutput, TrackAudioOutput

__all__ = [
    "MAX_CONTROL_BYTES",
    "TTS_CONTROL_TOPIC",
    "TTS_STATUS_TOPIC",
    "AudioOutput",
    "HttpSynthesizer",
    "SpeakRequest",
    "SpeechPiece",
    "StopRequest",
    "Synthesizer",
    "TrackAudioOutput",
    "TtsError",
    "TtsManager",
    "TtsStatus",
    "VoiceCaptions",
    "request_id_of",
    "split_sentences",
]

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


def split_sentences(text: str) -> list[str]:
    """Split text at sentence ends, so speech can start after the first sentence."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


class _Prefetch:
    """One sentence being synthesized in the background; its pieces wait in a queue.

    Failures are kept and raised to the reader, so a sentence that is never played (barge-in)
    never leaves an unretrieved task exception behind.
    """

    def __init__(self, synth: Synthesizer, text: str, request: SpeakRequest) -> None:
        self._pieces: asyncio.Queue[SpeechPiece | None] = asyncio.Queue()
        self._error: BaseException | None = None
        self._task = asyncio.create_task(self._fetch(synth, text, request), name="tts-prefetch")

    async def _fetch(self, synth: Synthesizer, text: str, request: SpeakRequest) -> None:
        try:
            async for piece in synth.synthesize(text, voice=request.voice, speed=request.speed):
                self._pieces.put_nowait(piece)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self._error = TtsError(f"TTS service unreachable: {type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:  # a broken stream, a read timeout
            self._error = TtsError(f"TTS service request failed: {type(exc).__name__}: {exc}")
        except Exception as exc:  # raised to the reader, which reports it
            self._error = exc
        finally:
            self._pieces.put_nowait(None)

    async def pieces(self) -> AsyncIterator[SpeechPiece]:
        """The sentence's pieces as they arrive; raises what synthesis raised."""
        while (piece := await self._pieces.get()) is not None:
            yield piece
        if self._error is not None:
            raise self._error

    async def cancel(self) -> None:
        """Stop synthesizing (the HTTP stream is closed) and end :meth:`pieces`."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._pieces.put_nowait(None)  # a reader waiting on a cancelled fetch ends too


class TtsManager:
    """Handles ``tts_control`` messages; see the module docstring.

    Args:
        synthesizer: Text to speech.
        output: Where the speech plays.
        send_status: Publishes a status on ``tts_status``.
        captions: Where what is said is captioned as it is heard; ``None``: nowhere.
        max_chars: The longest text accepted.
        max_queued: The most requests waiting behind the one being spoken.
    """

    def __init__(
        self,
        synthesizer: Synthesizer,
        output: AudioOutput,
        send_status: Callable[[TtsStatus], Awaitable[None]],
        *,
        captions: VoiceCaptions | None = None,
        max_chars: int = 2000,
        max_queued: int = 8,
    ) -> None:
        self._synth = synthesizer
        self._output = output
        self._send_status = send_status
        self._captions = captions
        self._max_chars = max_chars
        self._max_queued = max_queued
        self._queue: list[SpeakRequest] = []
        self._wakeup = asyncio.Event()
        self._current: SpeakRequest | None = None
        self._speaking: asyncio.Task[None] | None = None
        self._interrupted = False
        #: Track time of the last barge-in: where the captions of the speech it cut end.
        self._stopped_at = 0.0
        self._runner: asyncio.Task[None] | None = None
        # The sentence playing and the next one: at most two syntheses at a time.
        self._fetches: set[_Prefetch] = set()

    def start(self) -> None:
        """Start speaking queued requests (call once, in the event loop)."""
        self._runner = asyncio.create_task(self._run(), name="tts-manager")

    async def aclose(self) -> None:
        """Stop speaking and stop the manager."""
        self._queue.clear()
        self._interrupt()
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
            self._interrupt()
            await self._cancel_fetches()
        for request in queued:
            await self._status(request.id, "stopped")

    def _interrupt(self) -> None:
        # Before anything awaits: the track must fall silent now, not after the clean-up.
        self._interrupted = True
        self._output.clear()
        self._stopped_at = self._output.track_time()

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
        captions = (
            self._captions.open(request.id, self._output.track_time)
            if self._captions is not None
            else None
        )
        upcoming: _Prefetch | None = None
        try:
            for i, sentence in enumerate(sentences):
                # Prefetched while the previous sentence played (unless it had no audio).
                playing = upcoming or self._prefetch(sentence, request)
                upcoming = None
                if captions is not None:
                    captions.begin_sentence()
                async for piece in playing.pieces():
                    if self._interrupted:
                        return
                    # The sentence starts playing: synthesize the next one meanwhile, or the
                    # listener hears the TTS service's whole latency between sentences.
                    if upcoming is None and i + 1 < len(sentences):
                        upcoming = self._prefetch(sentences[i + 1], request)
                    if captions is not None:
                        captions.queued(piece, self._output.playout_at())
                    await self._output.play(piece.pcm, piece.sample_rate)
                self._fetches.discard(playing)
                if self._interrupted:
                    return
                if captions is not None:
                    captions.end_sentence()
            # Finished means heard: the source still holds the last part of the audio.
            await self._output.drain()
        finally:
            await self._cancel_fetches()
            if captions is not None:
                await self._close_captions(captions)

    async def _close_captions(self, captions: SpeechCaptions) -> None:
        if self._interrupted:
            await captions.interrupt(self._stopped_at)
        else:
            # Done, or failed: what was handed to the track still plays and is captioned.
            await captions.finish()

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
