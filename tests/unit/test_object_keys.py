"""Names from outside as object key segments: contained, valid and collision-free."""

from __future__ import annotations

import pytest

from orchestrator_service.gateway import recording_key
from roomscribe.objectstore import key_component, validate_key

pytestmark = pytest.mark.unit

HOSTILE = [
    "",
    ".",
    "..",
    "../../../tmp/x",
    "a/b",
    "a%2Fb",
    "%2E",
    "+",
    "\x00",
    "line\nbreak",
    "back\\slash",
    "réunion",
    "会議",
    "x" * 500,
    "x" * 500 + "y",
    " spaced ",
    "~tilde",
]


def test_every_name_is_one_valid_segment_and_no_two_collide() -> None:
    encoded = [key_component(name) for name in HOSTILE]
    assert len(set(encoded)) == len(HOSTILE)
    for name, part in zip(HOSTILE, encoded, strict=True):
        assert "/" not in part and part not in (".", "..") and part
        assert validate_key(f"rooms/{part}") == f"rooms/{part}", name
        assert len(part.encode()) <= 200


def test_recording_keys_stay_under_rooms() -> None:
    key = recording_key("r/../../..", "../../../tmp/x", "TR_../a")
    assert validate_key(key) == key
    assert key.split("/")[0] == "rooms" and len(key.split("/")) == 4
    assert recording_key("standup", "alice", "TR_abc") == "rooms/standup/alice/TR_abc.ogg"
