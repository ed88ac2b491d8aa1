"""ClientInferencePipeline with small configurable recognizers (threading, queue, breaker)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from stt_service.pipeline import (
    ClientInferencePipeline,
    ClosedEvent,
    FailureEvent,
    FinalEvent,
    PipelineEvent,
)
from stt_service.recognizer import RecognizedWord, Utterance

pytestmark = pytest.mark.unit

CHUNK = b"\x00\x01" * 320  # 20 ms at 16 kHz


class ScriptedRecognizer:
    """Records what it is fed; can block, fail, and says one word per finish()."""

    sample_rate = 16000

    def __init__(self, *, fail_times: int = 0, gate: threading.Event | None = None) -> None:
        self.calls: list[int] = []
        self.fed = 0
        self.fail_times = fail_times
        self.gate = gate
        self._utterance_start = 0

    def accept(self, pcm: bytes) -> Utterance | None:
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("decoder exploded")
        self.calls.append(len(pcm) // 2)
        self.fed += len(pcm) // 2
        return None

    def partial(self) -> str:
        return "hm"

    def finish(self) -> Utterance | None:
        if self.fed == self._utterance_start:
            return None
        start, end = self._utterance_start / 16000, self.fed / 16000
        self._utterance_start = self.fed
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
    assert sum(rec.calls) == 4 * 320 == acc.received - acc.dropped
    assert acc.recognized == 4 * 320
    # The hole left by the dropped audio does not shift time: the final ends at chunk 10.
    final = next(e for e in events if isinstance(e, FinalEvent))
    assert final.end_ms == 200


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
    assert sum(rec.calls) == 6 * 320


async def test_offsets_keep_time_across_gaps_and_resends() -> None:
    rec = ScriptedRecognizer()
    pipeline = make(rec, gap_finalize_ms=300)
    pipeline.submit(16000, CHUNK)  # the stream starts 1 s into the track
    pipeline.submit(16000 + 160, CHUNK)  # half of it resent: only 10 ms is new
    pipeline.submit(16000 + 480 + 80, CHUNK)  # a 5 ms hole: kept in one utterance
    pipeline.submit(5 * 16000, CHUNK)  # a long hole: the utterance before it is final
    pipeline.end()
    finals = [e for e in await collect(pipeline) if isinstance(e, FinalEvent)]
    assert [(f.start_ms, f.end_ms) for f in finals] == [(1000, 1055), (5000, 5020)]
    assert finals[0].words[0].end_ms == 1055
    assert finals[0].segment_id == "TR_a-000001000"
    assert sum(rec.calls) == 320 + 160 + 320 + 320


async def test_calls_after_end_are_ignored() -> None:
    rec = ScriptedRecognizer()
    pipeline = make(rec)
    pipeline.end()
    pipeline.end()
    pipeline.submit(0, CHUNK)
    pipeline.flush()
    events = await collect(pipeline)
    assert events == [ClosedEvent()]
    assert pipeline.accounting.received == 0
