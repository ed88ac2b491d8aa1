"""Recordings over HTTP (single ranges, 416, presigned S3 redirects) and the page's files."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from orchestrator_service.live.audio import RangeNotSatisfiableError, parse_range
from roomscribe.models import EgressInfo, EgressStatus
from roomscribe.objectstore import LocalObjectStore, S3ObjectStore
from tests.service.live_stack import ADMIN, STANDUP_ONLY, Stack, make_settings, open_stack, running

pytestmark = pytest.mark.service


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with open_stack(tmp_path) as running_stack:
        yield running_stack


# Recordings -----------------------------------------------------------------------------------
AUDIO = bytes(range(256)) * 40  # 10240 bytes


async def record(stack: Stack, sid: str = "TR_a") -> str:
    key = f"rooms/standup/{sid}.ogg"
    await LocalObjectStore(stack.tmp / "objects").put_bytes(key, AUDIO, content_type="audio/ogg")
    await stack.store.update_egress(
        sid, EgressInfo(id="EG_1", status=EgressStatus.COMPLETE, object_key=key)
    )
    return f"{stack.url}/v1/rooms/standup/tracks/{sid}/audio"


SIZE = len(AUDIO)


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=10000-", (10000, SIZE - 1)),
        ("bytes=-50", (SIZE - 50, SIZE - 1)),
        ("bytes=10200-99999", (10200, SIZE - 1)),
        ("bytes=-99999", (0, SIZE - 1)),
        (" Bytes = 5 - 6 ", (5, 6)),
        ("items=0-5", None),  # a unit it does not know: ignored (RFC 9110)
    ],
)
def test_single_ranges(header: str | None, span: tuple[int, int] | None) -> None:
    assert parse_range(header, SIZE) == span


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=0-1,5-6", SIZE),
        ("bytes=10240-", SIZE),
        ("bytes=50-10", SIZE),
        ("bytes=-0", SIZE),
        ("bytes=abc", SIZE),
        ("bytes=-", SIZE),
        ("bytes=1-2-3", SIZE),
        ("bytes=0-", 0),
        ("bytes=-5", 0),
    ],
)
def test_multiple_invalid_or_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiableError):
        parse_range(header, size)


async def test_recordings_answer_ranges_over_http(stack: Stack) -> None:
    url = await record(stack)
    token = await stack.stream_token("standup")
    for header, status, first, last in (
        (None, 200, 0, SIZE - 1),
        ("bytes=0-99", 206, 0, 99),
        ("bytes=-50", 206, SIZE - 50, SIZE - 1),
        ("bytes=10000-", 206, 10000, SIZE - 1),
    ):
        headers = {"Range": header} if header else {}
        res = await stack.client.get(url, params={"token": token}, headers=headers)
        assert res.status_code == status, header
        assert res.content == AUDIO[first : last + 1]
        assert res.headers["content-type"] == "audio/ogg"
        assert res.headers["accept-ranges"] == "bytes"
        assert res.headers["content-length"] == str(last - first + 1)
        assert res.headers["cache-control"] == "private, no-store"
        if status == 206:
            assert res.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    for header in ("bytes=0-1,5-6", "bytes=10240-", "bytes=x"):
        res = await stack.client.get(url, headers={**ADMIN, "Range": header})
        assert res.status_code == 416, header
        assert res.headers["content-range"] == f"bytes */{SIZE}"
        assert res.json()["error"]["code"] == "range_not_satisfiable"


async def test_recordings_need_access_a_recording_and_the_right_room(stack: Stack) -> None:
    url = await record(stack)
    assert (await stack.client.get(url)).status_code == 401
    retro = await stack.stream_token("retro")
    assert (await stack.client.get(url, params={"token": retro})).status_code == 403
    unrecorded = f"{stack.url}/v1/rooms/standup/tracks/TR_b/audio"
    assert (await stack.client.get(unrecorded, headers=ADMIN)).status_code == 404
    elsewhere = f"{stack.url}/v1/rooms/standup/tracks/TR_r/audio"
    assert (await stack.client.get(elsewhere, headers=ADMIN)).status_code == 404
    assert (await stack.client.get(url, headers=STANDUP_ONLY)).status_code == 200


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


async def test_recordings_in_s3_redirect_to_a_presigned_url(
    tmp_path: Path, stack: Stack, moto_endpoint: str
) -> None:
    bucket = f"rec-{uuid.uuid4().hex[:12]}"
    s3 = S3ObjectStore(moto_endpoint, bucket=bucket, access_key="testing",
                       secret_key="testing", region="us-east-1")  # fmt: skip
    await s3.init()
    await s3.put_bytes("rooms/standup/TR_a.ogg", AUDIO, content_type="audio/ogg")
    await stack.store.update_egress("TR_a", EgressInfo(object_key="rooms/standup/TR_a.ogg"))
    with pytest.raises(ValueError):
        await s3.presigned_get_url("rooms/standup/TR_a.ogg", expires_s=0)
    settings = make_settings(
        tmp_path, s3_endpoint=moto_endpoint, s3_bucket=bucket, s3_access_key="testing",
        s3_secret_key="testing", s3_region="us-east-1",
    )  # fmt: skip
    async with running(Stack(stack.store, settings, tmp_path)) as on_s3:
        res = await on_s3.client.get(
            f"{on_s3.url}/v1/rooms/standup/tracks/TR_a/audio", headers=ADMIN
        )
        assert res.status_code == 307
        location = res.headers["location"]
        assert location.startswith(f"{moto_endpoint}/{bucket}/") and "X-Amz-Signature" in location
        part = await on_s3.client.get(location, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == AUDIO[100:200]
    await s3.close()


# The page ---------------------------------------------------------------------------------
async def test_the_page_and_its_files_are_served_without_a_cdn(stack: Stack) -> None:
    page = await stack.client.get(f"{stack.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "http" not in page.text.replace("http-equiv", "")
    script = await stack.client.get(f"{stack.url}/web/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    for missing in ("/web/nope.js", "/web/..%2Fsettings.py", "/web/%2E%2E%2Flive%2Fpage.py"):
        assert (await stack.client.get(f"{stack.url}{missing}")).status_code == 404, missing


def test_settings_bound_the_stream_token_lifetime(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_settings(tmp_path, stream_token_ttl_s=86400)
    assert timedelta(seconds=make_settings(tmp_path).stream_token_ttl_s) == timedelta(minutes=5)
