"""The web app in real headless Chromium, against a running stack while a meeting goes on.

Live segments written to the store (as the STT service writes them) appear on the page, the
Whisper pass replaces a track's live segments in place, a citation of the summary scrolls
to its segment and seeks that participant's recording, and a token for one room cannot open
another. The room page's screenshot is saved; with ``ROOMSCRIBE_UPDATE_SCREENSHOTS=1`` it
replaces ``docs/screenshots/room.png``, the one the README shows.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devkit.livekit_emulator import ManualClock
from roomscribe.models import SegmentIn, TrackStatus, WhisperStats, Word
from tests.browser.cdp import Page, chromium, find_chromium
from tests.world import World, api_token, make_world, tone

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "room.png"


def words(text: str, start: float, step: float = 0.45) -> list[Word]:
    return [
        Word(word=w, start=start + i * step, end=start + i * step + step * 0.9)
        for i, w in enumerate(text.split())
    ]


def said(sid: str, n: int, start: float, text: str) -> SegmentIn:
    end = start + 0.45 * len(text.split())
    return SegmentIn(
        id=f"{sid}-{n:09d}", start=start, end=end, text=text, confidence=0.8,
        words=words(text, start),
    )  # fmt: skip


def js(value: object) -> str:
    return json.dumps(value)


async def count(page: Page, selector: str) -> int:
    return int(await page.evaluate(f"document.querySelectorAll({js(selector)}).length"))


async def sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(f"{url}/#/")
    await page.wait_for("document.getElementById('signout').hidden === false || "
                        "!!document.getElementById('token')")  # fmt: skip
    await page.evaluate("document.getElementById('signout').hidden || "
                        "document.getElementById('signout').click()", gesture=True)  # fmt: skip
    await page.wait_for("!!document.getElementById('token')")
    await page.evaluate(
        f"document.getElementById('token').value = {js(token)};"
        "document.getElementById('signin').requestSubmit()"
    )
    await page.wait_for("!!document.getElementById('rooms')")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(
        tmp_path,
        clock=ManualClock(),
        events_poll_s=0.1,
    ) as running:
        yield running


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    assert CHROMIUM is not None
    async with chromium(CHROMIUM, tmp_path / "profile") as browser:
        tab = await browser.new_page(1360, 1000)
        yield tab
        assert tab.errors == [], tab.errors


async def test_a_meeting_live_then_corrected_then_summarized(
    world: World, page: Page, tmp_path: Path
) -> None:
    lk, store = world.lk, world.store
    await lk.create_room("standup")
    await world.register("standup")
    await store.register_room("retro")
    await lk.join("standup", "alice", "Alice Chen")
    await lk.join("standup", "bob", "Bob Okafor")
    alice = await lk.publish_audio("standup", "alice", tone(9.0, 440))
    bob = await lk.publish_audio("standup", "bob", tone(9.0, 660))
    await world.settle()

    await sign_in(page, world.url, api_token(roles=["admin"]))
    assert await page.evaluate("document.getElementById('rooms').textContent.includes('standup')")
    await page.evaluate("document.querySelector('a.room-link[href=\"#/rooms/standup\"]').click()")
    await page.wait_for("document.getElementById('stream-state').dataset.state === 'live'")

    # The meeting goes on: finals land in the store and appear on the open page.
    await store.append_realtime_segments(
        alice,
        [
            said(alice, 1, 0.4, "good morning everyone"),
            said(alice, 2, 3.0, "i will send the release notes by friday"),
        ],
    )
    await page.wait_for("document.querySelectorAll('.seg.src-realtime').length === 2")
    await store.append_realtime_segments(
        bob, [said(bob, 1, 1.6, "morning alice the build is green again")]
    )
    await page.wait_for("document.querySelectorAll('.seg.src-realtime').length === 3")
    order = await page.evaluate("[...document.querySelectorAll('.seg')].map(e => e.dataset.track)")
    assert order == [alice, bob, alice]  # one timeline, by time
    assert (
        await page.evaluate(
            f"document.querySelector('.seg[data-track={js(bob)}] .who').textContent"
        )
        == "Bob Okafor"
    )
    await store.append_realtime_segments(
        bob, [said(bob, 2, 4.6, "then i will tag the release on monday")]
    )
    await page.wait_for("document.querySelectorAll('.seg.src-realtime').length === 4")
    for sid, dropped in ((alice, 0.04), (bob, 0.0)):
        await store.add_live_stats(sid, received_s=8.0, dropped_s=dropped, committed_s=7.8)

    # The meeting ends; the recordings are stored; Whisper corrects Alice's track.
    assert isinstance(world.clock, ManualClock)
    world.clock.advance(8.0)
    await lk.end_room("standup")
    await world.settle()
    await page.wait_for(f"document.querySelector('audio[data-track={js(alice)}]')?.readyState >= 1")
    await store.replace_whisper_segments(
        alice,
        [
            said(f"{alice}-w", 1, 0.5, "Good morning, everyone."),
            said(f"{alice}-w", 2, 3.0, "I will send the release notes by Friday."),
        ],
        stats=WhisperStats(model="tiny.en", audio_s=8.0, real_time_factor=0.08),
    )
    await store.set_track_status(alice, TrackStatus.TRANSCRIBED)
    await page.wait_for(f"document.querySelectorAll('.seg.src-whisper[data-track={js(alice)}]')"
                        ".length === 2")  # fmt: skip
    assert await count(page, f".seg.src-realtime[data-track={js(alice)}]") == 0
    assert await count(page, f".seg.src-realtime[data-track={js(bob)}]") == 2
    order = await page.evaluate("[...document.querySelectorAll('.seg')].map(e => e.dataset.track)")
    assert order == [alice, bob, alice, bob]  # replaced in place, still one timeline
    # The live view still has what the captions heard.
    await page.evaluate("document.getElementById('view-realtime').click()")
    await page.wait_for("document.querySelectorAll('.seg.src-realtime').length === 4")
    await page.evaluate("document.getElementById('view-best').click()")

    await store.replace_whisper_segments(
        bob,
        [
            said(f"{bob}-w", 1, 1.6, "Morning, Alice. The build is green again."),
            said(f"{bob}-w", 2, 4.6, "Then I will tag the release on Monday."),
        ],
        stats=WhisperStats(model="tiny.en", audio_s=8.0, real_time_factor=0.08),
    )
    await store.set_track_status(bob, TrackStatus.TRANSCRIBED)
    await world.lifecycle.check_and_complete_room("standup")
    await world.lifecycle.idle()
    await page.wait_for("!!document.querySelector('#summary .cite')")
    assert await page.evaluate("document.getElementById('whisper-progress').value") == 2

    # Search highlights, then a citation clears it, scrolls to the segment and seeks.
    await page.evaluate("const s = document.getElementById('search'); s.value = 'release';"
                        "s.dispatchEvent(new Event('input'))")  # fmt: skip
    await page.wait_for("document.querySelectorAll('.seg').length === 2")
    marks = await page.evaluate(
        "[...document.querySelectorAll('.seg mark')].map(m => m.textContent)"
    )
    assert marks == ["release", "release"]
    cited = f"{alice}-w-000000002"
    cite = f"document.querySelector('#summary .cite[data-evidence={js(cited)}]')"
    await page.evaluate(f"{cite}.click()", gesture=True)
    await page.wait_for(f"!!document.querySelector('.seg.flash[data-id={js(cited)}]')")
    assert await count(page, ".seg") == 4
    position = await page.wait_for(
        f"(a => a.currentTime >= 2.9 && a.currentTime)"
        f"(document.querySelector('audio[data-track={js(alice)}]'))"
    )
    assert position < 4.5  # sought to 3.0 s (and maybe playing on from there)
    box = await page.evaluate(
        f"document.querySelector('.seg[data-id={js(cited)}]').getBoundingClientRect().toJSON()"
    )
    assert 0 <= box["top"] < 1000
    await page.wait_for(f"!!document.querySelector('.seg.playing[data-id={js(cited)}]')")
    await page.evaluate("document.querySelectorAll('audio').forEach(a => a.pause())")

    shot = tmp_path / "room.png"
    await page.screenshot(shot)
    assert shot.stat().st_size > 20_000
    if os.environ.get("ROOMSCRIBE_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)

    # A token for one room: that room only, on the page and through its stream tokens.
    await sign_in(page, world.url, api_token(rooms=["standup"]))
    rooms = await page.evaluate(
        "[...document.querySelectorAll('a.room-link')].map(a => a.textContent)"
    )
    assert rooms == ["standup"]
    await page.evaluate("location.hash = '#/rooms/retro'")
    message = await page.wait_for("document.getElementById('error')?.textContent")
    assert "does not grant access to room 'retro'" in message
    assert await count(page, "#transcript") == 0
    status = await page.evaluate(
        "fetch('/v1/rooms/retro/stream-token', {method: 'POST', headers: {Authorization: "
        "'Bearer ' + sessionStorage.getItem('roomscribe.token')}}).then(r => r.status)"
    )
    assert status == 403

    # A sign-in link (what the demo prints) replaces that token: its room opens, and the
    # token leaves the address bar.
    await page.goto(f"{world.url}/#/rooms/retro?token={api_token(roles=['admin'])}")
    await page.wait_for("!!document.getElementById('transcript')")
    assert "token" not in await page.evaluate("location.href")
    assert await page.evaluate("location.hash") == "#/rooms/retro"
