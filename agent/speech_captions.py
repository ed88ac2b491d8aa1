"""What the agent says, as its own ``lk.transcription`` captions, timed to its voice.

The agent knows its text and, from the TTS service, when each word is said in its piece of
audio. When a piece is handed to the voice track, the track tells when it will be heard
(:meth:`agent.voice_output.AudioOutput.playout_at`); each word then becomes due at that time
plus its offset. :class:`SpeechCaptions` publishes, for every sentence, a partial caption as
each word is heard and a final one (the sentence's text) when its audio has played, all on
the agent's own identity and voice track, the way LiveKit agents caption their speech.

A barge-in (:meth:`SpeechCaptions.interrupt`) ends the sentence being heard with a final
caption of the words heard before the stop: a reader sees what the room heard, not what
the agent meant to say. Sentences synthesized ahead and never heard get no caption.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.captions import Caption, CaptionSink
from agent.tts_client import SpeechPiece, SpokenWord

log = logging.getLogger(__name__)


@dataclass
class _Sentence:
    caption_id: str
    #: (track time the word is heard, the word), in order.
    words: list[tuple[float, str]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    start_s: float = 0.0
    end_s: float = 0.0
    final_sent: bool = False


@dataclass(frozen=True)
class _Due:
    at_s: float
    sentence: _Sentence
    #: How many of the sentence's words the partial shows; ``None``: the final caption.
    words: int | None


class SpeechCaptions:
    """The captions of one spoken request (see the module docstring).

    Call :meth:`begin_sentence`, then :meth:`queued` for each of its pieces as it is handed
    to the track, then :meth:`end_sentence`; at the end :meth:`finish` (everything played)
    or :meth:`interrupt` (barge-in).

    Args:
        sink: Where the captions go (the room).
        clock: The voice track's time (:meth:`~agent.voice_output.AudioOutput.track_time`).
        participant: The agent's identity.
        track_sid: The agent's voice track.
        request_id: The speak request's id; sentence ``n``'s captions are ``<id>-<n>``.
    """

    def __init__(
        self,
        sink: CaptionSink,
        clock: Callable[[], float],
        *,
        participant: str,
        track_sid: str,
        request_id: str,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._participant = participant
        self._track_sid = track_sid
        self._request_id = request_id
        self._sentences: list[_Sentence] = []
        self._due: list[_Due] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._stop_at: float | None = None
        self._task = asyncio.create_task(self._run(), name=f"captions-{request_id}")

    def begin_sentence(self) -> None:
        """The next sentence's pieces follow."""
        self._sentences.append(_Sentence(f"{self._request_id}-{len(self._sentences)}"))

    def queued(self, piece: SpeechPiece, heard_at_s: float) -> None:
        """A piece of the current sentence was handed to the track, heard from ``heard_at_s``."""
        sentence = self._sentences[-1]
        if not sentence.texts:
            sentence.start_s = heard_at_s
        # A piece without word times is captioned whole, as it starts.
        words = piece.words or (SpokenWord(piece.text, 0.0),)
        offset = 0.0
        for word in words:
            offset = offset if word.start_s is None else word.start_s
            sentence.words.append((heard_at_s + offset, word.text))
            self._due.append(_Due(heard_at_s + offset, sentence, len(sentence.words)))
        sentence.texts.append(piece.text)
        sentence.end_s = heard_at_s + piece.duration_s
        self._wake.set()

    def end_sentence(self) -> None:
        """The current sentence has been handed over whole: its final is due at its end."""
        sentence = self._sentences[-1]
        if sentence.words:
            self._due.append(_Due(sentence.end_s, sentence, None))
            self._wake.set()

    async def finish(self) -> None:
        """Publish what is still due (the audio has played) and stop."""
        self._closing = True
        self._wake.set()
        await self._task

    async def interrupt(self, at_s: float) -> None:
        """Speech was cut at track time ``at_s``: end the sentence heard then, and stop."""
        self._stop_at = at_s
        self._wake.set()
        await self._task

    async def _run(self) -> None:
        sent = 0
        while True:
            self._wake.clear()
            if self._stop_at is not None:
                await self._cut(self._stop_at)
                return
            if sent == len(self._due):
                if self._closing:
                    # A sentence cut short by a failed synthesis ends with what was heard.
                    await self._cut(self._clock())
                    return
                await self._wake.wait()
                continue
            due = self._due[sent]
            delay = due.at_s - self._clock()
            if delay > 0:
                # Woken early by a stop (or new pieces); otherwise the word is due.
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            await self._publish_due(due)
            sent += 1

    async def _publish_due(self, due: _Due) -> None:
        sentence = due.sentence
        if due.words is None:
            sentence.final_sent = True
            await self._publish(sentence, " ".join(sentence.texts), True, sentence.end_s)
        else:
            heard = " ".join(word for _, word in sentence.words[: due.words])
            await self._publish(sentence, heard, False, sentence.words[due.words - 1][0])

    async def _cut(self, at_s: float) -> None:
        for sentence in self._sentences:
            if sentence.final_sent or not sentence.words or sentence.words[0][0] > at_s:
                continue  # captioned already, or never heard
            if at_s >= sentence.end_s:
                text = " ".join(sentence.texts)
            else:
                text = " ".join(word for when, word in sentence.words if when <= at_s)
            sentence.final_sent = True
            await self._publish(sentence, text, True, min(at_s, sentence.end_s))

    async def _publish(self, sentence: _Sentence, text: str, final: bool, end_s: float) -> None:
        caption = Caption(
            participant=self._participant,
            track_sid=self._track_sid,
            caption_id=sentence.caption_id,
            text=text,
            final=final,
            start_s=sentence.start_s,
            end_s=end_s,
        )
        try:
            await self._sink.publish(caption)
        except Exception as exc:  # a caption lost must never stop the speech
            log.warning("could not publish the agent's caption: %s", exc)


class VoiceCaptions:
    """Opens the :class:`SpeechCaptions` of each request the agent speaks.

    Args:
        sink: Where the captions go.
        speaker: The agent's identity and its voice track's sid, read when a request starts
            (the sid is known once the track is published).
    """

    def __init__(self, sink: CaptionSink, speaker: Callable[[], tuple[str, str]]) -> None:
        self._sink = sink
        self._speaker = speaker

    def open(self, request_id: str, clock: Callable[[], float]) -> SpeechCaptions:
        """The captions of request ``request_id``, timed by the voice track's ``clock``."""
        participant, track_sid = self._speaker()
        return SpeechCaptions(
            self._sink,
            clock,
            participant=participant,
            track_sid=track_sid,
            request_id=request_id,
        )
