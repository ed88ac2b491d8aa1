"""Log lines name what they speak of, stay one line, and parse as JSON when asked."""

from __future__ import annotations

import json
import logging

from roomscribe.logs import JsonFormatter, TextFormatter, record_extras


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.getLogger("orchestrator_service.rooms").makeRecord(
        "orchestrator_service.rooms", logging.WARNING, __file__, 1, msg, (), None, extra=extra
    )
    return rec


def test_text_lines_carry_the_extras_the_message_leaves_out() -> None:
    line = TextFormatter().format(record("track failed", room="standup", track_sid="TR_a"))
    assert line.endswith("track failed room=standup track_sid=TR_a")


def test_a_hostile_value_cannot_forge_a_second_line_or_field() -> None:
    rec = record("room registered", room="evil\n2026-01-01 INFO forged line", who="a b=c")
    line = TextFormatter().format(rec)
    assert "\n" not in line
    assert 'room="evil\\n2026-01-01 INFO forged line"' in line and 'who="a b=c"' in line


def test_json_lines_are_one_object_each_with_extras() -> None:
    line = JsonFormatter().format(record("summary failed", room="r\n1", attempt=2))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "summary failed" and entry["level"] == "WARNING"
    assert entry["room"] == "r\n1" and entry["attempt"] == 2
    assert entry["logger"] == "orchestrator_service.rooms"


def test_only_extras_count_as_extras() -> None:
    assert record_extras(record("plain")) == {}
