from __future__ import annotations

import json

import pytest

from roomscribe.errors import ProtocolError
from roomscribe.protocol import (
    EndMessage,
    ErrorCode,
    ErrorMessage,
    FinalMessage,
    FlushMessage,
    StartMessage,
    StatsMessage,
    WireWord,
    decode_audio_frame,
    encode_audio_frame,
    parse_client_message,
    parse_server_message,
)

pytestmark = pytest.mark.unit

START = {
    "type": "start",
    "room": "standup",
    "participant": "alice",
    "track_sid": "TR_a",
    "language": "en",
    "sample_rate": 48000,
    "track_started_at": 1_700_000_000.25,
}


def test_client_messages_parse_by_type() -> None:
    start = parse_client_message(json.dumps(START))
    assert isinstance(start, StartMessage) and start.sample_rate == 48000
    assert isinstance(parse_client_message(b'{"type":"flush"}'), FlushMessage)
    assert isinstance(parse_client_message('{"type":"end"}'), EndMessage)


@pytest.mark.parametrize(
    ("raw", "code", "needle"),
    [
        ("{not json", ErrorCode.BAD_MESSAGE, "json"),
        ('{"type":"dance"}', ErrorCode.BAD_MESSAGE, "dance"),
        ('{"room":"x"}', ErrorCode.BAD_MESSAGE, "type"),
        (json.dumps({**START, "room": ""}), ErrorCode.BAD_MESSAGE, "room"),
        (json.dumps({**START, "extra": 1}), ErrorCode.BAD_MESSAGE, "extra"),
        (json.dumps({**START, "sample_rate": 44100}), ErrorCode.UNSUPPORTED_SAMPLE_RATE, "44100"),
        ("[1, 2]", ErrorCode.BAD_MESSAGE, ""),
    ],
)
def test_bad_client_messages_name_the_problem(raw: str, code: ErrorCode, needle: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw)
    assert caught.value.code == code
    assert needle.lower() in caught.value.message.lower()


def test_server_messages_round_trip() -> None:
    final = FinalMessage(
        segment_id="TR_a-000001",
        text="alpha bravo",
        start_ms=1200,
        end_ms=2400,
        confidence=0.91,
        words=[WireWord(word="alpha", start_ms=1200, end_ms=1700, confidence=1.0)],
    )
    assert parse_server_message(final.model_dump_json()) == final
    stats = StatsMessage(received_ms=5000, dropped_ms=40, queue_depth=3)
    assert parse_server_message(stats.model_dump_json()) == stats
    err = ErrorMessage(code=ErrorCode.BREAKER_OPEN, message="too many failures", retryable=True)
    assert parse_server_message(err.model_dump_json()) == err
    with pytest.raises(ProtocolError):
        parse_server_message('{"type":"final"}')


def test_audio_frames_carry_offsets() -> None:
    pcm = b"\x01\x00\xff\x7f" * 160
    frame = encode_audio_frame(2**40 + 7, pcm)
    assert decode_audio_frame(frame, sample_rate=16000) == (2**40 + 7, pcm)
    assert decode_audio_frame(encode_audio_frame(0, b""), sample_rate=16000) == (0, b"")
    with pytest.raises(ValueError):
        encode_audio_frame(-1, pcm)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00" * 7, ErrorCode.BAD_AUDIO),
        (encode_audio_frame(0, b"\x00" * 3), ErrorCode.BAD_AUDIO),
        (encode_audio_frame(0, b"\x00" * (16000 * 2 + 2)), ErrorCode.FRAME_TOO_LARGE),
    ],
)
def test_bad_audio_frames(frame: bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_audio_frame(frame, sample_rate=16000)
    assert caught.value.code == code


def test_one_second_frame_is_the_limit() -> None:
    one_second = encode_audio_frame(0, b"\x00" * 96000)
    assert len(decode_audio_frame(one_second, sample_rate=48000)[1]) == 96000
