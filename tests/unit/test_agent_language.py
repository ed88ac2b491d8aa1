"""Which language the agent transcribes a participant in."""

from __future__ import annotations

import pytest

from agent.worker import LANGUAGE_ATTRIBUTE, track_language
from stt_service.jobs import whisper_language

pytestmark = pytest.mark.unit


def test_participant_attribute_wins_over_room_and_default() -> None:
    room = '{"roomscribe.language": "fr"}'
    assert track_language({LANGUAGE_ATTRIBUTE: "de"}, room, "en") == "de"
    assert track_language({}, room, "en") == "fr"
    assert track_language({}, "", "en") == "en"


@pytest.mark.parametrize(
    ("attributes", "metadata"),
    [
        ({LANGUAGE_ATTRIBUTE: "../../etc"}, ""),
        ({LANGUAGE_ATTRIBUTE: "x" * 40}, ""),
        ({LANGUAGE_ATTRIBUTE: ""}, "not json"),
        ({}, '["roomscribe.language", "de"]'),
        ({}, '{"roomscribe.language": 7}'),
    ],
)
def test_malformed_values_fall_back_to_the_default(
    attributes: dict[str, str], metadata: str
) -> None:
    assert track_language(attributes, metadata, "en") == "en"


def test_tags_with_regions_are_kept_live_and_reduced_for_whisper() -> None:
    assert track_language({LANGUAGE_ATTRIBUTE: "pt-BR"}, "", "en") == "pt-BR"
    assert whisper_language("pt-BR") == "pt"
    assert whisper_language("en_us") == "en"
    assert whisper_language(None) is None
    assert whisper_language("") is None
