"""The public REST API over real HTTP: JWT scopes, rooms, transcripts, paging, exports."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
import srt
import webvtt

from orchestrator_service.app import create_app
from orchestrator_service.settings import OrchestratorSettings
from roomscribe.models import RoomStatus, SegmentIn, TrackCreate, TrackStatus, WhisperStats
from roomscribe.store import SQLiteTranscriptStore
from tests.servers import serve

pytestmark = pytest.mark.service

API_SECRET = "api-test-secret-0123456789abcdefghijkl"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def token(*, secret: str = API_SECRET, exp_in: float = 300, **claims: Any) -> str:
    payload = {"sub": "tester", "exp": int(time.time() + exp_in), **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


ADMIN = token(roles=["admin"])
VIEWER = token(rooms=["standup"])


def auth(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def seed(store: SQLiteTranscriptStore) -> None:
    for name in ("standup", "retro", "planning"):
        await store.register_room(name, sid=f"RM_{name}")
    await store.transition_room("retro", to=RoomStatus.ACTIVE, from_={RoomStatus.REGISTERED})
    for sid, who, name, offset in (("TR_a", "alice", "Alice", 0.0), ("TR_b", "bob", "Bob", 1.5)):
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
                    id=f"{sid}-{i:09d}",
                    start=2.0 * i,
                    end=2.0 * i + 1.5,
                    text=f"{who} says {i}",
                    confidence=0.5 + (i % 5) / 10,
                )
                for i in range(30)
            ],
        )
        await store.add_live_stats(sid, received_s=61.0, dropped_s=0.2)
    await store.upsert_track(
        TrackCreate(track_sid="TR_r", room="retro", participant_identity="carol", published_at=T0)
    )


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, SQLiteTranscriptStore]]:
    store = SQLiteTranscriptStore(tmp_path / "api.db")
    await store.init()
    await seed(store)
    settings = OrchestratorSettings(
        api_jwt_secret=API_SECRET,
        sqlite_path=tmp_path / "api.db",
    )
    async with (
        serve(create_app(settings, store=store)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield client, store
    await store.close()


async def pages(
    client: httpx.AsyncClient, path: str, who: str, **params: Any
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        res = await client.get(path, params=query, headers=auth(who))
        assert res.status_code == 200, res.text
        body = res.json()
        out.extend(body["segments"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": "Basic abc"}, "unauthorized"),
        (auth("not-a-jwt"), "unauthorized"),
        (
            auth(token(secret="someone-elses-secret-0123456789abcdef", roles=["admin"])),
            "unauthorized",
        ),
        (auth(token(exp_in=-60, roles=["admin"])), "token_expired"),
    ],
)
async def test_requests_without_a_valid_token_are_refused(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore], headers: dict[str, str], code: str
) -> None:
    client, _ = api
    res = await client.get("/v1/rooms", headers=headers)
    assert res.status_code == 401
    assert res.json()["error"]["code"] == code
    assert res.headers["www-authenticate"] == "Bearer"


async def test_admin_sees_every_room_and_pages_through_them(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore],
) -> None:
    client, _ = api
    first = (await client.get("/v1/rooms", params={"limit": 2}, headers=auth(ADMIN))).json()
    assert len(first["rooms"]) == 2 and first["next_cursor"]
    second = (
        await client.get(
            "/v1/rooms", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth(ADMIN)
        )
    ).json()
    names = [r["name"] for r in first["rooms"] + second["rooms"]]
    assert sorted(names) == ["planning", "retro", "standup"]
    assert second["next_cursor"] is None
    active = (await client.get("/v1/rooms?status=active", headers=auth(ADMIN))).json()
    assert [r["name"] for r in active["rooms"]] == ["retro"]
    bad = await client.get("/v1/rooms?status=sleeping", headers=auth(ADMIN))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


async def test_a_viewer_sees_only_their_rooms(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore],
) -> None:
    client, _ = api
    rooms = (await client.get("/v1/rooms", headers=auth(VIEWER))).json()["rooms"]
    assert [r["name"] for r in rooms] == ["standup"]
    for path in (
        "/v1/rooms/retro",
        "/v1/rooms/retro/transcript",
        "/v1/rooms/retro/transcript.srt",
        "/v1/rooms/retro/tracks/TR_r/transcript",
        "/v1/rooms/nonexistent",
    ):
        res = await client.get(path, headers=auth(VIEWER))
        assert res.status_code == 403, path
        assert res.json()["error"]["code"] == "forbidden"
    nobody = token()  # a valid token that grants no room
    assert (await client.get("/v1/rooms", headers=auth(nobody))).json()["rooms"] == []
    assert (await client.get("/v1/rooms/standup", headers=auth(nobody))).status_code == 403


async def test_room_detail_has_tracks_and_live_stats(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore],
) -> None:
    client, _ = api
    room = (await client.get("/v1/rooms/standup", headers=auth(VIEWER))).json()
    assert room["status"] == "registered" and room["sid"] == "RM_standup"
    assert [t["track_sid"] for t in room["tracks"]] == ["TR_a", "TR_b"]
    live = room["tracks"][0]["live"]
    assert (live["audio_received_s"], live["audio_dropped_s"], live["segments"]) == (61.0, 0.2, 30)
    missing = await client.get("/v1/rooms/nope", headers=auth(ADMIN))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_transcript_pages_filters_and_errors(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore],
) -> None:
    client, _ = api
    everything = await pages(client, "/v1/rooms/standup/transcript", VIEWER, limit=7)
    assert len(everything) == 60
    starts = [s["abs_start"] for s in everything]
    assert starts == sorted(starts)
    assert {s["participant_identity"] for s in everything} == {"alice", "bob"}

    bob = await pages(client, "/v1/rooms/standup/transcript", VIEWER, participant="bob")
    assert len(bob) == 30 and {s["track_sid"] for s in bob} == {"TR_b"}
    t0 = T0.timestamp()
    window = await pages(
        client, "/v1/rooms/standup/transcript", VIEWER, **{"from": t0 + 10, "to": t0 + 20}
    )
    assert window and all(s["abs_end"] > t0 + 10 and s["abs_start"] < t0 + 20 for s in window)
    confident = await pages(client, "/v1/rooms/standup/transcript", VIEWER, min_confidence=0.85)
    assert confident and all(s["confidence"] >= 0.85 for s in confident)
    track = await pages(client, "/v1/rooms/standup/tracks/TR_a/transcript", VIEWER, limit=9)
    assert len(track) == 30 and {s["participant_identity"] for s in track} == {"alice"}

    first = (await client.get("/v1/rooms/standup/transcript?limit=5", headers=auth(VIEWER))).json()
    reused = await client.get(
        "/v1/rooms/standup/transcript",
        params={"cursor": first["next_cursor"], "participant": "bob"},
        headers=auth(VIEWER),
    )
    assert reused.status_code == 400 and reused.json()["error"]["code"] == "invalid_cursor"
    backwards = await client.get("/v1/rooms/standup/transcript?from=20&to=10", headers=auth(VIEWER))
    assert backwards.status_code == 422
    assert "from" in backwards.json()["error"]["message"]
    bad_conf = await client.get(
        "/v1/rooms/standup/transcript?min_confidence=2", headers=auth(VIEWER)
    )
    assert bad_conf.status_code == 422
    other_room = await client.get("/v1/rooms/retro/tracks/TR_a/transcript", headers=auth(ADMIN))
    assert other_room.status_code == 404


async def test_best_source_prefers_whisper_once_transcribed(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore],
) -> None:
    client, store = api
    await store.replace_whisper_segments(
        "TR_a",
        [SegmentIn(id="TR_a-w1", start=0.0, end=30.0, text="corrected alice")],
        stats=WhisperStats(model="tiny", audio_s=60, real_time_factor=0.05, segments=1),
    )
    await store.set_track_status("TR_a", TrackStatus.TRANSCRIBED)
    best = await pages(client, "/v1/rooms/standup/transcript", VIEWER)
    assert [s["text"] for s in best if s["track_sid"] == "TR_a"] == ["corrected alice"]
    assert len([s for s in best if s["track_sid"] == "TR_b"]) == 30
    live = await pages(client, "/v1/rooms/standup/transcript", VIEWER, source="realtime")
    assert len(live) == 60


async def test_paging_stays_stable_while_segments_arrive(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore],
) -> None:
    client, store = api
    seen: list[str] = []
    cursor = None
    extra = 0
    while True:
        params: dict[str, Any] = {"limit": 8, "source": "realtime"}
        if cursor:
            params["cursor"] = cursor
        body = (
            await client.get("/v1/rooms/standup/transcript", params=params, headers=auth(VIEWER))
        ).json()
        seen.extend(s["id"] for s in body["segments"])
        # Live captions keep landing while the client pages.
        await store.append_realtime_segments(
            "TR_b",
            [
                SegmentIn(
                    id=f"TR_b-late-{extra:03d}", start=100.0 + extra, end=100.5 + extra, text="late"
                )
            ],
        )
        extra += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert len(seen) >= 60


async def test_exports_parse_with_standard_parsers(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore],
) -> None:
    client, _ = api
    res = await client.get("/v1/rooms/standup/transcript.srt", headers=auth(VIEWER))
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("application/x-subrip")
    assert 'filename="standup.srt"' in res.headers["content-disposition"]
    subs = list(srt.parse(res.text))
    assert len(subs) == 60
    assert subs[0].content == "Alice: alice says 0" and subs[0].start.total_seconds() == 0.0
    assert subs[1].content == "Bob: bob says 0" and subs[1].start.total_seconds() == 1.5

    vtt = await client.get("/v1/rooms/standup/transcript.vtt?participant=bob", headers=auth(VIEWER))
    captions = webvtt.from_string(vtt.text).captions
    assert len(captions) == 30 and {c.voice for c in captions} == {"Bob"}

    txt = await client.get("/v1/rooms/standup/transcript.txt", headers=auth(VIEWER))
    assert txt.text.splitlines()[0] == "[00:00:00] Alice: alice says 0"
    data = json.loads(
        (await client.get("/v1/rooms/standup/transcript.json", headers=auth(ADMIN))).text
    )
    assert len(data["segments"]) == 60 and data["room"] == "standup"
    unknown = await client.get("/v1/rooms/standup/transcript.docx", headers=auth(ADMIN))
    assert unknown.status_code == 422


async def test_from_and_to_take_iso_8601_as_well_as_epoch_seconds(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore],
) -> None:
    client, _ = api
    t0 = T0.timestamp()
    path = "/v1/rooms/standup/transcript"
    by_epoch = await pages(client, path, VIEWER, **{"from": t0 + 10, "to": t0 + 20})
    iso = {"from": (T0 + timedelta(seconds=10)).isoformat(), "to": "2026-11-20T09:00:20Z"}
    assert await pages(client, path, VIEWER, **iso) == by_epoch
    # Another zone, and no zone at all (read as UTC), name the same instants.
    zoned = {"from": "2026-11-20T10:00:10+01:00", "to": "2026-11-20T09:00:20"}
    assert await pages(client, path, VIEWER, **zoned) == by_epoch
    for bad in ("yesterday", "2026-13-01T00:00:00Z", "nan", "1e300"):
        res = await client.get(path, params={"from": bad}, headers=auth(VIEWER))
        assert res.status_code == 422, bad
        assert res.json()["error"]["message"].startswith("from: "), res.text


async def test_exports_refuse_paging_rather_than_ignore_it(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore],
) -> None:
    client, _ = api
    for params in ({"limit": "5"}, {"cursor": "abc"}):
        res = await client.get(
            "/v1/rooms/standup/transcript.srt", params=params, headers=auth(VIEWER)
        )
        assert res.status_code == 422 and res.json()["error"]["code"] == "invalid_request"
        assert "never paged" in res.json()["error"]["message"]


async def test_json_export_times_are_rounded_to_the_millisecond(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore],
) -> None:
    client, store = api
    noisy = 0.2999999523162842  # what a float32 time looks like as a double
    await store.append_realtime_segments(
        "TR_a",
        [
            SegmentIn(
                id="TR_a-noisy", start=100 + noisy, end=101 + noisy, text="x", confidence=noisy
            )
        ],
    )
    res = await client.get("/v1/rooms/standup/transcript.json", headers=auth(VIEWER))
    assert "0.2999999" not in res.text and "9999999" not in res.text
    seg = next(s for s in json.loads(res.text)["segments"] if s["id"] == "TR_a-noisy")
    assert seg["start"] == 100.3 and seg["confidence"] == 0.3


async def test_ops_endpoints_and_openapi(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore],
) -> None:
    client, _ = api
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    assert (await client.get("/metrics")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert "/v1/rooms/{room}/transcript" in schema["paths"]
    assert schema["components"]["schemas"]["RoomPublic"]["examples"]
    assert (await client.get("/docs")).status_code == 200


class BrokenStore(SQLiteTranscriptStore):
    """A store with a bug: an error outside the core's tree."""

    async def list_rooms(self, **kwargs: Any) -> Any:
        raise RuntimeError("internal detail: /srv/secret/path")


async def test_an_unexpected_error_still_answers_the_json_error_shape(tmp_path: Path) -> None:
    store = BrokenStore(tmp_path / "broken.db")
    await store.init()
    settings = OrchestratorSettings(api_jwt_secret=API_SECRET, sqlite_path=tmp_path / "b.db")
    async with (
        serve(create_app(settings, store=store)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        res = await client.get("/v1/rooms", headers=auth(token(roles=["admin"])))
        assert res.status_code == 500
        assert res.json()["error"]["code"] == "internal"
        assert "secret" not in res.text
        assert (await client.get("/healthz")).status_code == 200  # the service goes on
    await store.close()


@pytest.mark.parametrize("name", ["team/daily", "a%2Fb", "50% done", "x/transcript", "..a/b"])
async def test_room_names_with_slash_or_percent_are_one_segment(
    api: tuple[httpx.AsyncClient, SQLiteTranscriptStore], name: str
) -> None:
    client, store = api
    await store.register_room(name, sid="RM_odd")
    await store.upsert_track(
        TrackCreate(track_sid="TR_odd", room=name, participant_identity="dan", published_at=T0)
    )
    await store.append_realtime_segments(
        "TR_odd", [SegmentIn(id="TR_odd-000000001", start=0.0, end=1.0, text="hi", confidence=1)]
    )
    segment = quote(name, safe="")
    room = await client.get(f"/v1/rooms/{segment}", headers=auth(ADMIN))
    assert room.status_code == 200, room.text
    assert room.json()["name"] == name
    for path in (
        f"/v1/rooms/{segment}/transcript",
        f"/v1/rooms/{segment}/tracks/TR_odd/transcript",
    ):
        res = await client.get(path, headers=auth(ADMIN))
        assert res.status_code == 200, res.text
        assert [s["text"] for s in res.json()["segments"]] == ["hi"]
    export = await client.get(f"/v1/rooms/{segment}/transcript.txt", headers=auth(ADMIN))
    assert export.status_code == 200 and "hi" in export.text
    # A room-scoped token names the room as it is, and opens nothing else.
    viewer = token(rooms=[name])
    assert (await client.get(f"/v1/rooms/{segment}", headers=auth(viewer))).status_code == 200
    assert (await client.get("/v1/rooms/standup", headers=auth(viewer))).status_code == 403
