"""``python -m devkit``'s small commands and checks: token, settings, demo usage, captions."""

from __future__ import annotations

import argparse
import asyncio
import io
import re
from pathlib import Path

import jwt
import pytest

from agent.captions import Caption
from devkit.__main__ import main as devkit_main
from devkit.cli_tokens import MAX_TTL_S, parse_ttl
from devkit.demo_outcome import reserve_hint
from devkit.live_captions import TerminalCaptions
from devkit.meetings import SCRIPT_TURNS, tone_meeting
from roomscribe.auth import ApiTokenVerifier

pytestmark = pytest.mark.unit

SECRET = "a-test-api-secret-0123456789abcdefghij"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name in ("API_JWT_SECRET", "API_JWKS_URL", "API_JWT_AUDIENCE", "API_JWT_ISSUER"):
        monkeypatch.delenv(f"ROOMSCRIBE_{name}", raising=False)


def _token(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = devkit_main(["token", *args])
    captured = capsys.readouterr()
    return status, captured.out.strip(), captured.err.strip()


def test_token_admin_is_accepted_by_the_api_verifier(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROOMSCRIBE_API_JWT_SECRET", SECRET)
    status, token, note = _token(capsys, "--admin", "--ttl", "2h", "--sub", "ops")
    assert status == 0 and "\n" not in token
    principal = ApiTokenVerifier(hs256_secret=SECRET).verify(token)
    assert principal.is_admin and principal.subject == "ops"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 7200
    assert note.startswith("token for ops: every room (admin); expires ")


def test_token_for_rooms_with_the_audience_and_issuer_the_api_requires(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROOMSCRIBE_API_JWT_SECRET", SECRET)
    monkeypatch.setenv("ROOMSCRIBE_API_JWT_AUDIENCE", "roomscribe")
    monkeypatch.setenv("ROOMSCRIBE_API_JWT_ISSUER", "https://id.example")
    status, token, _ = _token(capsys, "--room", "standup", "--room", "retro")
    assert status == 0
    verifier = ApiTokenVerifier(
        hs256_secret=SECRET, audience="roomscribe", issuer="https://id.example"
    )
    principal = verifier.verify(token)
    assert not principal.is_admin and principal.rooms == {"standup", "retro"}
    assert principal.can_read("standup") and not principal.can_read("other")


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, ["--admin"], "ROOMSCRIBE_API_JWT_SECRET is not set"),
        ({"ROOMSCRIBE_API_JWKS_URL": "https://id.example/jwks"}, ["--admin"], "identity provider"),
        ({"ROOMSCRIBE_API_JWT_SECRET": SECRET}, ["--room", " "], "--room needs a room name"),
    ],
)
def test_token_refusals_are_one_line_with_status_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    args: list[str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, out, err = _token(capsys, *args)
    assert status == 2 and out == ""
    assert err.startswith("devkit token: ") and message in err and "\n" not in err


@pytest.mark.parametrize("args", [[], ["--admin", "--room", "x"], ["--admin", "--ttl", "0"]])
def test_token_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        devkit_main(["token", *args])
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_ttl_units() -> None:
    assert [parse_ttl(v) for v in ("90", "90s", "15m", "12h", "7d", "1.5h")] == [
        90,
        90,
        900,
        43200,
        604800,
        5400,
    ]
    for bad in ("", "soon", "-5", "1w", f"{MAX_TTL_S + 1}"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"lifetime|at most"):
            parse_ttl(bad)


def test_settings_lists_every_service_with_env_vars_and_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert devkit_main(["settings"]) == 0
    out = capsys.readouterr().out
    for title in (
        "### shared",
        "### orchestrator",
        "### stt",
        "### worker",
        "### tts",
        "### agent",
    ):
        assert title in out
    # Every service entry point of the repository is listed.
    root = Path(__file__).resolve().parents[2]
    for main in root.glob("*/__main__.py"):
        if main.parent.name != "devkit":
            assert f": python -m {main.parent.name}" in out, main.parent.name
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert all(line.count(" | ") >= 3 for line in rows)
    assert re.search(r"\| `secret` \| `ROOMSCRIBE_SECRET` \| \(a development placeholder\) \|", out)
    assert "changethis" not in out  # a secret's default is not printed
    assert "`LIVEKIT_API_KEY`, `ROOMSCRIBE_LIVEKIT_API_KEY`" in out  # aliases as they are read
    assert "| `whisper_model` | `ROOMSCRIBE_WHISPER_MODEL` | `unset` |" in out
    assert "(>= 1)" in out  # constraints are given
    # Each service lists only what it adds to the shared settings.
    assert out.count("`ROOMSCRIBE_SQLITE_PATH`") == 1


def test_settings_of_one_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert devkit_main(["settings", "--service", "worker"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### worker: python -m stt_service.worker")
    assert "### shared" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--turns", "0"], f"--turns 0: the built-in script has turns 1 to {SCRIPT_TURNS}"),
        (["--turns", "9"], f"--turns 9: the built-in script has turns 1 to {SCRIPT_TURNS}"),
        (["--turns", "2", "--audio", "x.flac"], "--audio plays all of its audio"),
        (["--speed", "0"], "--speed must be > 0"),
        (["--port", "70000"], "not a TCP port"),
        (["--whisper-size", "micro"], "real sizes are tiny"),
    ],
)
def test_demo_refuses_what_it_cannot_play(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert devkit_main(["demo", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("devkit demo: ") and message in err and err.count("\n") == 1


def test_tone_meeting_refuses_zero_turns() -> None:
    with pytest.raises(ValueError, match="turns must be 1 to 8"):
        tone_meeting(0)


def test_reserve_hint_names_the_store_the_secret_and_the_token_command() -> None:
    hint = reserve_hint(Path("var/demo"), 0, "demo-standup", "s3cret")
    assert "ROOMSCRIBE_SQLITE_PATH=var/demo/roomscribe.db" in hint
    assert "ROOMSCRIBE_OBJECTS_DIR=var/demo/objects" in hint
    assert "ROOMSCRIBE_API_JWT_SECRET=s3cret" in hint
    assert "ROOMSCRIBE_ORCHESTRATOR_PORT=8000" in hint and "-m orchestrator_service" in hint
    assert "-m devkit token --admin" in hint
    assert "http://127.0.0.1:8000/v1/rooms/demo-standup" in hint


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _screen(stream: str) -> list[str]:
    """Replay what a terminal does with the codes TerminalCaptions writes."""
    lines = [""]
    row = col = 0
    for token in re.findall(r"\x1b\[\d*[AJK]|\r|\n|[^\x1b\r\n]", stream):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif token.endswith("A"):
            row -= int(token[2:-1] or 1)
        elif token.endswith("J"):
            lines[row] = lines[row][:col]
            del lines[row + 1 :]
        elif token.endswith("K"):
            lines[row] = lines[row][:col]
        else:
            lines[row] = lines[row][:col].ljust(col) + token + lines[row][col + 1 :]
            col += 1
    return lines


def _caption(who: str, text: str, final: bool = False) -> Caption:
    return Caption(
        participant=who,
        track_sid=f"TR_{who}",
        caption_id=f"{who}-1",
        text=text,
        final=final,
        start_s=1.0,
        end_s=2.0,
    )


def test_overlapping_speakers_each_keep_their_own_live_line() -> None:
    out = _Tty()
    sink = TerminalCaptions(out, width=80)

    async def play() -> None:
        await sink.publish(_caption("alice", "alpha"))
        await sink.publish(_caption("bob", "delta"))
        await sink.publish(_caption("alice", "alpha bravo"))
        assert _screen(out.getvalue()) == ["  ...     alice: alpha bravo", "  ...       bob: delta"]
        await sink.publish(_caption("alice", "alpha bravo charlie", final=True))
        assert _screen(out.getvalue()) == [
            "  [00:01.0]  alice: alpha bravo charlie",
            "  ...       bob: delta",
        ]
        await sink.publish(_caption("bob", "delta echo" + " x" * 60 + " newest"))
        # A long partial is cut to the width, keeping its newest words: no line wraps.
        live = _screen(out.getvalue())[1]
        assert len(live) == 79 and live.endswith("x x newest") and "…" in live
        sink.close()

    asyncio.run(play())
    assert _screen(out.getvalue()) == ["  [00:01.0]  alice: alpha bravo charlie", ""]


def test_captions_off_a_terminal_are_finals_only() -> None:
    out = io.StringIO()
    sink = TerminalCaptions(out)

    async def play() -> None:
        await sink.publish(_caption("alice", "alpha"))
        await sink.publish(_caption("alice", "alpha bravo", final=True))

    asyncio.run(play())
    assert out.getvalue() == "  [00:01.0]  alice: alpha bravo\n"
