"""ClientInferencePipeline with small configurable recognizers (threading, queue, breaker)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from stt_service.events import (
    BoundaryEvent,
    ClosedEvent,
    EventQueue,
    FailureEvent,
    FinalEvent,
    PartialEvent,
    PipelineEvent,
)
from stt_service.pipeline import ClientInferencePipeline
from stt_service.recognizer import RecognizedWord, Utterance

pytestmark = pytest.mark.unit

CHUNK = b"\x00\x01" * 320  # 20 ms at 16 kHz


class ScriptedRecognizer:
    """Records what it is fed; can block, fail, and says one word per finish().

    Calling this object makes a recognizer (the pipeline makes one per stream, and another
    after a failure); every one records into (and takes its failures and gate from) this
    script. Like Vosk's, its clock runs on across utterances: an endpoint or ``finish`` ends
    the utterance, not the clock.
    """

    sample_rate = 16000

    def __init__(
        self,
        *,
        fail_times: int = 0,
        gate: threading.Event | None = None,
        endpoint_after: int | None = None,
    ) -> None:
        self.calls: list[int] = []
        self.fail_times = fail_times
        self.gate = gate
        #: Report an endpoint (without words) once an utterance has had this many samples.
        self.endpoint_after = endpoint_after
        self.made = 0
        self.built_on: list[str] = []

    def __call__(self) -> ScriptedRecognizer.One:
        self.made += 1
        self.built_on.append(threading.current_thread().name)
        return ScriptedRecognizer.One(self)

    class One:
        sample_rate = 16000

        def __init__(self, script: ScriptedRecognizer) -> None:
            self.script = script
            self.fed = 0  # the clock: samples since this recognizer was made
            self.utterance_fed = 0
            self.voiced: int | None = None  # the utterance's first sample that is not a zero

        def accept(self, pcm: bytes) -> Utterance | None:
            script = self.script
            if script.gate is not None:
                script.gate.wait(5)
            if script.fail_times:
                script.fail_times -= 1
                raise RuntimeError("decoder exploded")
            script.calls.append(len(pcm) // 2)
            if self.voiced is None and pcm.strip(b"\x00"):
                self.voiced = self.fed + (len(pcm) - len(pcm.lstrip(b"\x00"))) // 2
            self.fed += len(pcm) // 2
            self.utterance_fed += len(pcm) // 2
            if script.endpoint_after is not None and self.utterance_fed >= script.endpoint_after:
                self.voiced, self.utterance_fed = None, 0
                return Utterance("", [])
            return None

        def partial(self) -> str:
            return "hm"

        def finish(self) -> Utterance | None:
            voiced, self.voiced, self.utterance_fed = self.voiced, None, 0
            if voiced is None:
                return None
            start, end = voiced / 16000, self.fed / 16000
            return Utterance("word", [RecognizedWord("word", start, end, 0.8)])


async def collect(pipeline: ClientInferencePipeline) -> list[PipelineEvent]:
    events: list[PipelineEvent] = []
    while True:
        event = await asyncio.wait_for(pipeline.events.get(), 5)
        events.append(event)
        if isinstance(event, ClosedEvent):
            return events


def make(rec: ScriptedRecognizer, **kwargs: int) -> ClientInferencePipeline:
    pipeline = ClientInferencePipeline(
        recognizer=rec,
        client_rate=16000,
        track_sid="TR_a",
        loop=asyncio.get_running_loop(),
        **kwargs,
    )
    pipeline.start()
    return pipeline


def finals_of(events: list[PipelineEvent]) -> list[FinalEvent]:
    return [e for e in events if isinstance(e, FinalEvent)]


async def test_overflow_drops_oldest_and_counts_it() -> None:
    gate = threading.Event()
    rec = ScriptedRecognizer(gate=gate)
    pipeline = make(rec, queue_chunks=3, max_batch_chunks=100)
    pipeline.submit(0, CHUNK)
    await asyncio.sleep(0.05)  # the thread takes chunk 0 and blocks inside the recognizer
    for i in range(1, 10):
        pipeline.submit(i * 320, CHUNK)
    assert pipeline.queue_depth == 3
    gate.set()
    pipeline.end()
    events = await collect(pipeline)
    acc = pipeline.accounting
    assert acc.received == 10 * 320
    assert acc.dropped == 6 * 320
    assert acc.recognized == 4 * 320 == acc.received - acc.dropped
    # The 120 ms hole the dropped audio left is fed as silence: time does not shift, and the
    # final ends at chunk 10.
    assert sum(rec.calls) == 4 * 320 + 6 * 320
    final = finals_of(events)[0]
    assert final.end_ms == 200
    assert final.covered_offset == 10 * 320


async def test_adaptive_batching_takes_what_is_queued() -> None:
    gate = threading.Event()
    rec = ScriptedRecognizer(gate=gate)
    pipeline = make(rec, max_batch_chunks=8)
    pipeline.submit(0, CHUNK)
    await asyncio.sleep(0.05)
    for i in range(1, 21):
        pipeline.submit(i * 320, CHUNK)
    gate.set()
    pipeline.end()
    await collect(pipeline)
    assert rec.calls == [320, 8 * 320, 8 * 320, 4 * 320]


async def test_idle_pipeline_answers_each_chunk_at_once() -> None:
    rec = ScriptedRecognizer()
    pipeline = make(rec)
    for i in range(5):
        pipeline.submit(i * 320, CHUNK)
        await asyncio.sleep(0.02)
    pipeline.end()
    await collect(pipeline)
    assert rec.calls == [320] * 5


async def test_breaker_opens_after_consecutive_failures() -> None:
    rec = ScriptedRecognizer(fail_times=100)
    pipeline = make(rec, breaker_threshold=5)
    for i in range(8):
        pipeline.submit(i * 320, CHUNK)
        await asyncio.sleep(0.01)
    events = await collect(pipeline)
    failures = [e for e in events if isinstance(e, FailureEvent)]
    assert [f.consecutive for f in failures] == [1, 2, 3, 4, 5]
    assert [f.tripped for f in failures] == [False] * 4 + [True]
    assert "decoder exploded" in failures[-1].message
    assert pipeline.accounting.failed == 5 * 320
    assert not pipeline.alive or await pipeline.join(1)


async def test_success_resets_the_breaker() -> None:
    rec = ScriptedRecognizer(fail_times=4)
    pipeline = make(rec, breaker_threshold=5)
    for i in range(10):
        pipeline.submit(i * 320, CHUNK)
        await asyncio.sleep(0.01)
    pipeline.end()
    events = await collect(pipeline)
    assert not any(isinstance(e, FailureEvent) and e.tripped for e in events)
    assert pipeline.accounting.failed == 4 * 320
    assert pipeline.accounting.recognized == 6 * 320
    # A failed recognizer is replaced: the next one hears the track from after the lost audio.
    (final,) = finals_of(events)
    assert (final.start_ms, final.end_ms) == (80, 200)


async def test_offsets_keep_time_across_gaps_and_resends() -> None:
    rec = ScriptedRecognizer()
    pipeline = make(rec, gap_finalize_ms=300)
    pipeline.submit(16000, CHUNK)  # the stream starts 1 s into the track
    pipeline.submit(16000 + 160, CHUNK)  # half of it resent: only 10 ms is new
    pipeline.submit(16000 + 480 + 80, CHUNK)  # a 5 ms hole: kept in one utterance
    pipeline.submit(5 * 16000, CHUNK)  # a long hole: the utterance before it is final
    pipeline.end()
    events = await collect(pipeline)
    finals = finals_of(events)
    assert [(f.start_ms, f.end_ms) for f in finals] == [(1000, 1055), (5000, 5020)]
    assert finals[0].words[0].end_ms == 1055
    assert finals[0].segment_id == "TR_a-000001000"
    # Each final covers the audio fed when it was made, not what had arrived after it.
    assert [f.covered_offset for f in finals] == [16000 + 880, 5 * 16000 + 320]
    # The 5 ms hole is fed as silence; each round of the recognizer starts on the 30 ms frame
    # grid, with zeros up to the audio (16000 and 80000 are 160 and 320 samples past a grid
    # line).
    assert sum(rec.calls) == 160 + 320 + 160 + 80 + 320 + 320 + 320
    assert rec.made == 1  # one recognizer for the stream, its clock mapped per round


async def test_a_final_covers_what_was_fed_not_what_was_received() -> None:
    gate = threading.Event()
    rec = ScriptedRecognizer(gate=gate)
    pipeline = make(rec, max_batch_chunks=100)
    pipeline.submit(0, CHUNK)
    await asyncio.sleep(0.05)  # blocked in the recognizer: the rest forms one batch
    pipeline.submit(320, CHUNK)
    pipeline.submit(32000, CHUNK)  # after a 2 s hole, in the same batch
    gate.set()
    pipeline.end()
    finals = finals_of(await collect(pipeline))
    # The batch is fed in two pieces; the final at the hole covers the first piece only,
    # although the pipeline had already taken audio up to 32320.
    assert [f.covered_offset for f in finals] == [640, 32320]


async def test_silence_endpoints_are_boundaries_that_advance() -> None:
    rec = ScriptedRecognizer(endpoint_after=960)
    pipeline = make(rec)
    for i in range(9):
        pipeline.submit(i * 320, b"\x00" * 640)
        await asyncio.sleep(0.005)
    pipeline.end()
    events = await collect(pipeline)
    assert not finals_of(events)
    covered = [e.covered_offset for e in events if isinstance(e, BoundaryEvent)]
    assert covered == sorted(covered) and covered[-1] == 9 * 320
    assert len(covered) >= 3  # every endpoint, and the end with nothing pending


async def test_audio_before_the_resume_point_is_skipped() -> None:
    rec = ScriptedRecognizer()
    pipeline = make(rec, start_offset=3200)
    for i in range(20):
        pipeline.submit(i * 320, CHUNK)  # a reconnecting client resends from 0
    pipeline.end()
    events = await collect(pipeline)
    acc = pipeline.accounting
    assert acc.received == 20 * 320
    assert acc.dropped == 0 and acc.failed == 0
    assert acc.recognized == 10 * 320
    (final,) = finals_of(events)
    assert (final.start_ms, final.end_ms, final.covered_offset) == (200, 400, 6400)


async def test_calls_after_end_are_ignored() -> None:
    rec = ScriptedRecognizer()
    pipeline = make(rec)
    pipeline.end()
    pipeline.end()
    pipeline.submit(0, CHUNK)
    pipeline.flush()
    events = await collect(pipeline)
    # Ending with nothing pending is a boundary: everything before the start is durable.
    assert events == [BoundaryEvent(0), ClosedEvent()]
    assert pipeline.accounting.received == 0


# The event queue ------------------------------------------------------------------------------
def partial(text: str) -> PartialEvent:
    return PartialEvent(text, 0, 0, 0.0, 0.0)


async def test_only_the_newest_partial_waits_and_nothing_else_is_dropped() -> None:
    queue = EventQueue(asyncio.get_running_loop(), max_events=10)
    for i in range(100):
        queue.put(partial(f"p{i}"))
    queue.put(BoundaryEvent(5))
    for i in range(100, 200):
        queue.put(partial(f"p{i}"))
    queue.put(BoundaryEvent(9))
    assert len(queue) == 3
    got = [await queue.get() for _ in range(3)]
    assert got == [BoundaryEvent(5), partial("p199"), BoundaryEvent(9)]  # order kept


async def test_a_full_queue_holds_the_thread_back_until_read_or_closed() -> None:
    queue = EventQueue(asyncio.get_running_loop(), max_events=2)
    queue.put(BoundaryEvent(1))
    queue.put(BoundaryEvent(2))
    done = threading.Event()

    def produce() -> None:
        queue.put(BoundaryEvent(3))
        queue.put(BoundaryEvent(4))
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    await asyncio.sleep(0.05)
    assert not done.is_set() and len(queue) == 2  # blocked, nothing dropped
    assert await queue.get() == BoundaryEvent(1)
    assert await queue.get() == BoundaryEvent(2)
    assert await asyncio.wait_for(queue.get(), 5) == BoundaryEvent(3)
    queue.close()  # a reader that leaves never strands the producer
    await asyncio.to_thread(thread.join, 5)
    assert done.is_set()
    assert await queue.get() == ClosedEvent()


async def test_a_reader_waiting_on_an_empty_queue_is_woken_by_the_thread() -> None:
    queue = EventQueue(asyncio.get_running_loop())
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    threading.Thread(target=queue.put, args=(BoundaryEvent(7),)).start()
    assert await asyncio.wait_for(reader, 5) == BoundaryEvent(7)


async def test_one_recognizer_serves_the_stream_and_a_failure_replaces_it() -> None:
    # A real model's recognizer pays about a second of CPU on its first words (its graph is
    # composed lazily): one per utterance would double the cost of recognition.
    rec = ScriptedRecognizer(endpoint_after=3 * 320)
    pipeline = make(rec, gap_finalize_ms=300)
    for i in range(3):
        pipeline.submit(i * 320, CHUNK)  # an endpoint after 3 chunks
    await asyncio.sleep(0.1)
    pipeline.submit(3 * 320, CHUNK)  # the next utterance, on the same recognizer
    pipeline.submit(5 * 16000, CHUNK)  # a long hole: the utterance before it is finished
    pipeline.flush()
    await asyncio.sleep(0.1)
    assert rec.made == 1
    rec.fail_times = 1
    pipeline.submit(6 * 16000, CHUNK)  # the recognizer fails: its state is unknown
    await asyncio.sleep(0.1)
    pipeline.submit(6 * 16000 + 320, CHUNK)
    pipeline.end()
    events = await collect(pipeline)
    assert rec.made == 2
    assert rec.built_on == ["stt-TR_a", "stt-TR_a"]  # never on the event loop
    assert [(f.start_ms, f.end_ms) for f in finals_of(events)] == [
        (60, 80),
        (5000, 5020),
        (6020, 6040),
    ]


async def test_coalescing_feeds_fewer_larger_calls() -> None:
    rec = ScriptedRecognizer()
    pipeline = make(rec, feed_ms=100)
    for i in range(20):
        pipeline.submit(i * 320, CHUNK)
        await asyncio.sleep(0.02)
    pipeline.end()
    await collect(pipeline)
    assert sum(rec.calls) == 20 * 320
    assert len(rec.calls) <= 8  # about one call per 100 ms, not one per 20 ms frame


async def test_coalesced_audio_waits_no_longer_than_the_feed_time() -> None:
    rec = ScriptedRecognizer()
    pipeline = make(rec, feed_ms=100)
    await asyncio.sleep(0.05)
    pipeline.submit(0, CHUNK)  # one frame, and nothing after it
    await asyncio.sleep(0.5)
    assert rec.calls == [320]
    pipeline.end()
    await collect(pipeline)
