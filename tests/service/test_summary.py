"""Meeting summaries through the real google-genai client against a local Gemini stand-in.

Also the OpenAI-compatible path against a tiny chat-completions stand-in, the extractive
fallback, and :func:`summarize_room` over a real SQLite store.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestrator_service.settings import OrchestratorSettings, SummarySettings
from orchestrator_service.summary import (
    EXTRACTIVE_MODEL,
    ExtractiveSummarizer,
    GeminiSummarizer,
    OpenAICompatibleSummarizer,
    RetryPolicy,
    SummaryError,
    TimelineEntry,
    build_timeline,
    render_timeline,
    split_sections,
    summarize_room,
    summarizer_from_settings,
)
from roomscribe.models import (
    Segment,
    SegmentIn,
    SegmentSource,
    Track,
    TrackCreate,
    TrackStatus,
    WhisperStats,
)
from roomscribe.serving import running
from roomscribe.store import SQLiteTranscriptStore
from tests.fakes.gemini import (
    FakeGemini,
    Malformed,
    RateLimited,
    RecordedRequest,
    Refusal,
    Reply,
    ServerFailure,
    Stall,
)

pytestmark = pytest.mark.service

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=1.0)
LINE = re.compile(r"^\[(\d\d:\d\d:\d\d)\] (.+?) \(seg (\S+)\): (.*)$", re.MULTILINE)
ROSTER = re.compile(r"^- (\S+) \(shown as '(.+)'\)$", re.MULTILINE)
MERGED_ITEM = re.compile(r"^- (\S+): (.+) \[evidence: (.+)\]$", re.MULTILINE)

SPEAKERS = (("TR_a", "alice", "Alice"), ("TR_b", "bob", "Bob"))


def segment(sid: str, who: str, i: int, text: str, *, offset: float = 0.0) -> Segment:
    start = 3.0 * i + offset
    return Segment(
        id=f"{sid}-{i:06d}",
        start=start,
        end=start + 2.5,
        text=text,
        abs_start=T0.timestamp() + start,
        abs_end=T0.timestamp() + start + 2.5,
        track_sid=sid,
        participant_identity=who,
        source=SegmentSource.REALTIME,
    )


def meeting(n: int) -> list[TimelineEntry]:
    """``n`` segments alternating between Alice and Bob (Bob's track starts 1.5 s later)."""
    segments = [
        segment(sid, who, i, f"{name} talks about topic {i} at some length, item {i}.")
        for i in range(n)
        for sid, who, name in (SPEAKERS[i % 2],)
    ]
    return build_timeline(segments, tracks())


def tracks() -> list[Track]:
    return [
        Track(
            track_sid=sid,
            room="standup",
            participant_identity=who,
            participant_name=name,
            published_at=T0,
        )
        for sid, who, name in SPEAKERS
    ]


def first_line_per_speaker(request: RecordedRequest) -> dict[str, Any]:
    """A well-behaved model: one action item per speaker, citing their first line."""
    roster = {label: identity for identity, label in ROSTER.findall(request.prompt)}
    merged = MERGED_ITEM.findall(request.prompt)
    if "PARTIAL SUMMARIES TO MERGE" in request.prompt:
        parts = len(re.findall(r"^PART \d+ of", request.prompt, re.MULTILINE))
        return {
            "summary": f"Merged {parts} parts.",
            "action_items": [
                {
                    "participant": identity,
                    "actions": [{"text": text, "evidence": evidence.split(", ")}],
                }
                for identity, text, evidence in merged
            ],
        }
    first: dict[str, str] = {}
    for _, speaker, seg_id, _ in LINE.findall(request.prompt):
        first.setdefault(speaker, seg_id)
    return {
        "summary": "The team went through its topics. " + "Details follow. " * 20,
        "action_items": [
            {
                "participant": roster[speaker],
                "actions": [{"text": f"Follow up on {seg_id}", "evidence": [seg_id]}],
            }
            for speaker, seg_id in first.items()
        ],
    }


@pytest.fixture
async def gemini() -> AsyncIterator[tuple[FakeGemini, str]]:
    fake = FakeGemini()
    async with fake.serve() as url:
        yield fake, url


@pytest.fixture
async def summarizer(gemini: tuple[FakeGemini, str]) -> AsyncIterator[GeminiSummarizer]:
    fake, url = gemini
    client = GeminiSummarizer(fake.api_key, base_url=url, retry=FAST, timeout_s=10)
    yield client
    await client.aclose()


def ids_of(timeline: list[TimelineEntry]) -> set[str]:
    return {entry.segment_id for entry in timeline}


async def test_timeline_is_sorted_attributed_and_relative() -> None:
    late = segment("TR_b", "bob", 0, "Hello from Bob.", offset=1.5)
    early = segment("TR_a", "alice", 0, "  Hello   from\nAlice. ")
    silent = segment("TR_a", "alice", 1, "   ")
    twin = segment("TR_c", "alex2", 2, "Another Alex.")
    timeline = build_timeline(
        [late, silent, twin, early],
        [
            *tracks(),
            Track(
                track_sid="TR_c",
                room="standup",
                participant_identity="alex2",
                participant_name="Alice",
                published_at=T0 - timedelta(seconds=60),
            ),
        ],
    )
    assert [e.segment_id for e in timeline] == [early.id, late.id, twin.id]
    # The meeting starts with the earliest track, a minute before anyone spoke.
    assert render_timeline(timeline).splitlines() == [
        f"[00:01:00] Alice (alice) (seg {early.id}): Hello from Alice.",
        f"[00:01:01] Bob (seg {late.id}): Hello from Bob.",
        f"[00:01:06] Alice (alex2) (seg {twin.id}): Another Alex.",
    ]


async def test_gemini_summary_cites_existing_segments(
    gemini: tuple[FakeGemini, str], summarizer: GeminiSummarizer
) -> None:
    fake, _ = gemini
    timeline = meeting(20)
    alice_line, bob_line = timeline[0].segment_id, timeline[1].segment_id

    def answer(request: RecordedRequest) -> dict[str, Any]:
        return {
            "summary": "Alice and Bob went through twenty topics.",
            "action_items": [
                {
                    "participant": "alice",
                    "actions": [{"text": "Write up topic 0", "evidence": [alice_line]}],
                },
                # Models often answer with the display name: it must map to the identity.
                {
                    "participant": "Bob",
                    "actions": [{"text": "Check topic 1", "evidence": [bob_line, alice_line]}],
                },
            ],
        }

    fake.enqueue(Reply(answer))
    summary = await summarizer.summarize(timeline, participants=["alice", "bob", "carol"])

    assert summary.model == "gemini/gemini-2.5-flash"
    assert summary.text == "Alice and Bob went through twenty topics."
    actions = {p.participant_identity: p.actions for p in summary.action_items}
    assert list(actions) == ["alice", "bob", "carol"]
    assert [(a.text, a.evidence) for a in actions["alice"]] == [("Write up topic 0", [alice_line])]
    assert [(a.text, a.evidence) for a in actions["bob"]] == [
        ("Check topic 1", [bob_line, alice_line])
    ]
    assert actions["carol"] == []

    (request,) = fake.requests
    assert (request.api_version, request.model) == ("v1beta", "gemini-2.5-flash")
    for entry in timeline:
        assert entry.render() in request.prompt
    config = request.generation_config
    assert config["responseMimeType"] == "application/json"
    assert set(config["responseSchema"]["properties"]) == {"summary", "action_items"}
    assert "never invent an id" in request.system
    assert "- carol (shown as 'carol')" in request.prompt


async def test_invented_ids_and_unknown_participants_are_dropped(
    gemini: tuple[FakeGemini, str],
    summarizer: GeminiSummarizer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, _ = gemini
    timeline = meeting(6)
    real = timeline[2].segment_id
    fake.enqueue(
        Reply(
            lambda _: {
                "summary": "Short meeting.",
                "action_items": [
                    {
                        "participant": "alice",
                        "actions": [
                            {"text": "Keep me", "evidence": ["TR_a-999999", real]},
                            {"text": "Invented only", "evidence": ["made-up-id"]},
                            {"text": "No evidence", "evidence": []},
                        ],
                    },
                    {
                        "participant": "Zed",
                        "actions": [{"text": "Nobody", "evidence": [real]}],
                    },
                ],
            }
        )
    )
    caplog.set_level(logging.INFO, logger="orchestrator_service.summary")
    summary = await summarizer.summarize(timeline, participants=["alice", "bob"])

    actions = {p.participant_identity: p.actions for p in summary.action_items}
    assert [(a.text, a.evidence) for a in actions["alice"]] == [("Keep me", [real])]
    assert actions["bob"] == []
    (record,) = [r for r in caplog.records if r.getMessage() == "meeting summarized"]
    counted = ("invalid_citations", "dropped_items", "unknown_participants")
    assert {k: record.__dict__[k] for k in counted} == {
        "invalid_citations": 2,
        "dropped_items": 3,
        "unknown_participants": 1,
    }


async def test_malformed_answer_is_retried_with_the_error(
    gemini: tuple[FakeGemini, str], summarizer: GeminiSummarizer
) -> None:
    fake, _ = gemini
    fake.enqueue(Malformed(), Reply(first_line_per_speaker))
    timeline = meeting(4)
    summary = await summarizer.summarize(timeline, participants=[])

    assert summary.text.startswith("The team went through its topics.")
    first, second = fake.requests
    assert "REJECTED" not in first.prompt
    assert "YOUR PREVIOUS ANSWER WAS REJECTED: the answer is not valid JSON" in second.prompt
    assert second.prompt.startswith(first.prompt)
    evidence = {e for p in summary.action_items for a in p.actions for e in a.evidence}
    assert evidence == {timeline[0].segment_id, timeline[1].segment_id}


async def test_malformed_twice_raises(
    gemini: tuple[FakeGemini, str], summarizer: GeminiSummarizer
) -> None:
    fake, _ = gemini
    fake.enqueue(Malformed('{"summary": "no action items key"}'), Malformed("still prose"))
    with pytest.raises(SummaryError, match="badly twice") as caught:
        await summarizer.summarize(meeting(4), participants=[])
    assert caught.value.transient
    assert len(fake.requests) == 2
    assert "action_items: Field required" in fake.requests[1].prompt


async def test_rate_limit_is_retried_after_the_servers_delay(
    gemini: tuple[FakeGemini, str], summarizer: GeminiSummarizer
) -> None:
    fake, _ = gemini
    fake.enqueue(RateLimited(retry_after_s=0.3), Reply(first_line_per_speaker))
    began = time.monotonic()
    summary = await summarizer.summarize(meeting(4), participants=[])
    # Our own backoff is 10 ms: waiting this long means Retry-After was honoured.
    assert time.monotonic() - began >= 0.3
    assert len(fake.requests) == 2
    assert summary.model == "gemini/gemini-2.5-flash"


async def test_server_errors_give_up_after_the_attempts(
    gemini: tuple[FakeGemini, str], summarizer: GeminiSummarizer
) -> None:
    fake, _ = gemini
    fake.enqueue(ServerFailure(500), ServerFailure(503), ServerFailure(500))
    with pytest.raises(SummaryError, match="failed 3 times") as caught:
        await summarizer.summarize(meeting(4), participants=[])
    assert caught.value.transient
    assert len(fake.requests) == FAST.attempts


async def test_a_call_past_its_time_limit_is_retried(gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    fake.enqueue(Stall(1.0), Reply(first_line_per_speaker))
    client = GeminiSummarizer(fake.api_key, base_url=url, retry=FAST, timeout_s=0.25)
    began = time.monotonic()
    try:
        summary = await client.summarize(meeting(4), participants=[])
    finally:
        await client.aclose()
    assert time.monotonic() - began < 0.9
    assert len(fake.requests) == 2
    assert summary.text.startswith("The team went through its topics.")


async def test_refusals_are_not_retried(gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    fake.enqueue(Refusal(403))
    client = GeminiSummarizer(fake.api_key, base_url=url, retry=FAST)
    try:
        with pytest.raises(SummaryError, match="403 PERMISSION_DENIED") as caught:
            await client.summarize(meeting(4), participants=[])
    finally:
        await client.aclose()
    assert not caught.value.transient
    assert len(fake.requests) == 1

    wrong_key = GeminiSummarizer("not-the-key", base_url=url, retry=FAST)
    try:
        with pytest.raises(SummaryError, match="API key not valid"):
            await wrong_key.summarize(meeting(4), participants=[])
    finally:
        await wrong_key.aclose()
    assert len(fake.requests) == 1  # refused before it was recorded: no retry either


async def test_long_meeting_is_summarized_in_sections_then_merged(
    gemini: tuple[FakeGemini, str],
) -> None:
    fake, url = gemini
    fake.default = Reply(first_line_per_speaker)
    budget = 3000
    timeline = meeting(600)
    sections = split_sections(timeline, budget)
    assert len(sections) > 10
    client = GeminiSummarizer(fake.api_key, base_url=url, retry=FAST, section_chars=budget)
    try:
        summary = await client.summarize(timeline, participants=["alice", "bob"])
    finally:
        await client.aclose()

    section_calls = [r for r in fake.requests if "MEETING TRANSCRIPT, PART" in r.prompt]
    merge_calls = [r for r in fake.requests if "PARTIAL SUMMARIES TO MERGE" in r.prompt]
    assert len(section_calls) == len(sections)
    assert len(section_calls) + len(merge_calls) == len(fake.requests)
    # The partials exceed the budget together, so they are merged in more than one round.
    assert len(merge_calls) >= 2
    assert fake.requests[-1] is merge_calls[-1]
    seen: set[str] = set()
    for request in section_calls:
        lines = LINE.findall(request.prompt)
        assert sum(len(m.group(0)) + 1 for m in LINE.finditer(request.prompt)) <= budget
        seen.update(seg_id for _, _, seg_id, _ in lines)
    assert seen == ids_of(timeline)
    # Every section's action items survive every merge round, with their citations.
    assert summary.text.startswith("Merged ")
    cited = {e for p in summary.action_items for a in p.actions for e in a.evidence}
    assert cited == {e.segment_id for section in sections for e in section[:2]}


async def test_openai_compatible_endpoint() -> None:
    calls: list[tuple[dict[str, str], dict[str, Any]]] = []
    answer = {
        "summary": "A local model summarized it.",
        "action_items": [{"participant": "bob", "actions": [{"text": "x", "evidence": []}]}],
    }

    async def models(_: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "llama3.1:8b", "object": "model"}]})

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        calls.append((dict(request.headers), body))
        if len(calls) == 1:
            return JSONResponse(
                {"error": {"message": "busy"}}, status_code=429, headers={"Retry-After": "0"}
            )
        cited = LINE.findall(body["messages"][1]["content"])[1][2]
        answer["action_items"][0]["actions"][0]["evidence"] = [cited]  # type: ignore[index]
        content = "```json\n" + json.dumps(answer) + "\n```"  # local models love fences
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )
    timeline = meeting(4)
    async with running(app) as url:
        client = OpenAICompatibleSummarizer(f"{url}/v1", api_key="sk-local", retry=FAST)
        try:
            summary = await client.summarize(timeline, participants=[])
        finally:
            await client.aclose()

    assert summary.model == "openai-compatible/llama3.1:8b"
    assert summary.text == "A local model summarized it."
    actions = {p.participant_identity: p.actions for p in summary.action_items}
    assert [a.evidence for a in actions["bob"]] == [[timeline[1].segment_id]]
    assert len(calls) == 2
    headers, body = calls[1]
    assert headers["authorization"] == "Bearer sk-local"
    assert body["model"] == "llama3.1:8b"
    assert body["response_format"] == {"type": "json_object"}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert render_timeline(timeline) in body["messages"][1]["content"]


async def test_extractive_fallback_is_labelled_and_cites_real_segments() -> None:
    said = [
        ("alice", "Welcome everyone, today we review the quarterly budget and the hiring plan."),
        ("bob", "The quarterly budget is over by ten percent because of cloud costs."),
        ("alice", "Bob, can you review the cloud costs before Friday?"),
        ("bob", "Sure. I will send the report with the cloud costs by Friday."),
        ("alice", "Hiring plan stays as it is for now."),
    ]
    segments = [
        segment(sid, who, i, text)
        for i, (who, text) in enumerate(said)
        for sid in ("TR_a" if who == "alice" else "TR_b",)
    ]
    timeline = build_timeline(segments, tracks())
    summary = await ExtractiveSummarizer().summarize(timeline, participants=["alice", "bob"])

    assert summary.model == EXTRACTIVE_MODEL
    assert summary.text.startswith("Automatic extract, not an AI summary")
    assert "Bob: The quarterly budget is over by ten percent" in summary.text
    actions = {p.participant_identity: p.actions for p in summary.action_items}
    assert actions["alice"] == []
    assert [(a.text, a.evidence) for a in actions["bob"]] == [
        ("Bob, can you review the cloud costs before Friday?", [segments[2].id]),
        ("I will send the report with the cloud costs by Friday.", [segments[3].id]),
    ]


async def test_extractive_quotes_short_remarks_when_nothing_longer_was_said() -> None:
    said = [("alice", "Ship it."), ("bob", "Agreed, ship it."), ("alice", "Thanks.")]
    segments = [
        segment("TR_a" if who == "alice" else "TR_b", who, i, text)
        for i, (who, text) in enumerate(said)
    ]
    timeline = build_timeline(segments, tracks())
    summary = await ExtractiveSummarizer().summarize(timeline, participants=["alice", "bob"])
    quoted = summary.text.split("\n\n", 1)[1].splitlines()
    assert len(quoted) == 3 and "Bob: Agreed, ship it." in summary.text


async def test_summarize_room_reads_the_best_transcript_of_every_track(
    tmp_path: Path, gemini: tuple[FakeGemini, str], summarizer: GeminiSummarizer
) -> None:
    fake, _ = gemini
    store = SQLiteTranscriptStore(tmp_path / "summary.db")
    await store.init()
    try:
        await store.register_room("standup", sid="RM_standup")
        for sid, who, name in SPEAKERS:
            offset = 1.5 if who == "bob" else 0.0
            await store.upsert_track(
                TrackCreate(
                    track_sid=sid,
                    room="standup",
                    participant_identity=who,
                    participant_name=name,
                    published_at=T0 + timedelta(seconds=offset),
                )
            )
            await store.append_realtime_segments(
                sid,
                [
                    SegmentIn(
                        id=f"{sid}-rt-{i:03d}",
                        start=2.0 * i,
                        end=2.0 * i + 1.5,
                        text=f"{who} live {i}",
                    )
                    for i in range(12)
                ],
            )
        # Whisper finished Bob's track: ``best`` reads its segments there, live ones elsewhere.
        await store.replace_whisper_segments(
            "TR_b",
            [
                SegmentIn(
                    id=f"TR_b-wh-{i:03d}", start=4.0 * i, end=4.0 * i + 3.0, text=f"bob whisper {i}"
                )
                for i in range(6)
            ],
            stats=WhisperStats(model="tiny", audio_s=24.0, real_time_factor=0.1),
        )
        await store.set_track_status("TR_b", TrackStatus.TRANSCRIBED)
        await store.add_participant("standup", "carol")
        fake.enqueue(Reply(first_line_per_speaker))
        summary = await summarize_room(store, "standup", summarizer, page_size=5)
    finally:
        await store.close()

    (request,) = fake.requests
    lines = LINE.findall(request.prompt)
    assert [seg_id for _, _, seg_id, _ in lines if seg_id.startswith("TR_a")] == [
        f"TR_a-rt-{i:03d}" for i in range(12)
    ]
    assert [seg_id for _, _, seg_id, _ in lines if seg_id.startswith("TR_b")] == [
        f"TR_b-wh-{i:03d}" for i in range(6)
    ]
    assert lines[:3] == [
        ("00:00:00", "Alice", "TR_a-rt-000", "alice live 0"),
        ("00:00:01", "Bob", "TR_b-wh-000", "bob whisper 0"),
        ("00:00:02", "Alice", "TR_a-rt-001", "alice live 1"),
    ]
    assert "- carol (shown as 'carol')" in request.prompt
    actions = {p.participant_identity: p.actions for p in summary.action_items}
    assert list(actions) == ["carol", "alice", "bob"]  # the room's participants come first
    assert [a.evidence for a in actions["bob"]] == [["TR_b-wh-000"]]
    assert [a.evidence for a in actions["alice"]] == [["TR_a-rt-000"]]


async def test_empty_meeting_needs_no_model(summarizer: GeminiSummarizer) -> None:
    summary = await summarizer.summarize([], participants=["alice"])
    assert summary.model.startswith("none")
    assert summary.action_items == []


async def test_summarizer_from_settings_picks_the_configured_provider() -> None:
    chosen = [
        summarizer_from_settings(
            SummarySettings(gemini_api_key=SecretStr("k"), llm_base_url="http://llm/v1")
        ),
        summarizer_from_settings(
            SummarySettings(
                gemini_api_key=SecretStr(""), llm_base_url="http://llm/v1", llm_model="m"
            )
        ),
        summarizer_from_settings(SummarySettings(gemini_api_key=SecretStr(" "), llm_base_url="")),
    ]
    try:
        assert [type(s) for s in chosen] == [
            GeminiSummarizer,
            OpenAICompatibleSummarizer,
            ExtractiveSummarizer,
        ]
        assert [s.model_label for s in chosen] == [
            "gemini/gemini-2.5-flash",
            "openai-compatible/m",
            EXTRACTIVE_MODEL,
        ]
    finally:
        for s in chosen:
            await s.aclose()


def test_summary_settings_come_from_the_documented_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    for name, value in {
        "GEMINI_API_KEY": "gk",
        "ROOMSCRIBE_GEMINI_MODEL": "gemini-x",
        "ROOMSCRIBE_GEMINI_BASE_URL": "http://gemini",
        "ROOMSCRIBE_GEMINI_API_VERSION": "v1",
        "ROOMSCRIBE_LLM_BASE_URL": "http://llm/v1",
        "ROOMSCRIBE_LLM_MODEL": "m",
        "ROOMSCRIBE_LLM_API_KEY": "lk",
        "ROOMSCRIBE_SUMMARY_SECTION_CHARS": "5000",
        "ROOMSCRIBE_SUMMARY_TIMEOUT_S": "7.5",
    }.items():
        monkeypatch.setenv(name, value)
    summary = OrchestratorSettings().summary

    assert summary.gemini_api_key is not None and summary.llm_api_key is not None
    assert (summary.gemini_api_key.get_secret_value(), summary.llm_api_key.get_secret_value()) == (
        "gk",
        "lk",
    )
    assert summary.model_dump(exclude={"gemini_api_key", "llm_api_key"}) == {
        "gemini_model": "gemini-x",
        "gemini_base_url": "http://gemini",
        "gemini_api_version": "v1",
        "llm_base_url": "http://llm/v1",
        "llm_model": "m",
        "section_chars": 5000,
        "timeout_s": 7.5,
    }
    with pytest.raises(ValidationError):
        summary.section_chars = 1  # type: ignore[misc]


def test_summary_settings_defaults_match_the_orchestrator_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in (*SummarySettings.model_fields, "summary_section_chars", "summary_timeout_s"):
        monkeypatch.delenv(f"ROOMSCRIBE_{name.upper()}", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    assert OrchestratorSettings().summary == SummarySettings()
