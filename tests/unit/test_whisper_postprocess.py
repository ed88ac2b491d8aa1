from __future__ import annotations

import math

import pytest

from roomscribe.models import Word
from stt_service.whisper import (
    MAX_COMPRESSION_RATIO,
    RawSegment,
    Transcript,
    compression_ratio,
    confidence,
    postprocess,
)

pytestmark = pytest.mark.unit


def raw(start: float, end: float, text: str, logprob: float = -0.1) -> RawSegment:
    return RawSegment(
        start,
        end,
        text,
        logprob,
        [Word(word=text.split()[0] if text.split() else "x", start=start, end=end)],
    )


def test_confidence_maps_logprob_to_unit_interval() -> None:
    assert confidence(0.0) == 1.0
    assert confidence(-math.log(2)) == pytest.approx(0.5)
    assert confidence(-50) == pytest.approx(0.0, abs=1e-9)
    assert confidence(0.3) == 1.0


def test_noise_markers_and_blank_text_are_dropped() -> None:
    segs = postprocess(
        [
            raw(0, 1, "  Hello   there. "),
            raw(1, 2, "[Music]"),
            raw(2, 3, "(coughs)"),
            raw(3, 4, "♪♪"),
            raw(4, 5, "   "),
            raw(5, 6, "..."),
            raw(6, 8, "Second sentence here."),
        ],
        track_sid="TR_a",
        min_s=0.3,
    )
    assert [s.text for s in segs] == ["Hello there.", "Second sentence here."]
    assert [s.id for s in segs] == ["TR_a-w000000", "TR_a-w000001"]


def test_short_fragments_merge_into_their_neighbour() -> None:
    segs = postprocess(
        [raw(0, 2, "A long enough one.", -0.1), raw(2, 2.2, "Yes.", -2.0), raw(3, 5, "Next.")],
        track_sid="TR_a",
        min_s=0.5,
    )
    assert [s.text for s in segs] == ["A long enough one. Yes.", "Next."]
    assert segs[0].start == 0 and segs[0].end == 2.2
    assert [w.word for w in segs[0].words] == ["A", "Yes."]
    # Duration-weighted: the long segment dominates the merged confidence.
    assert confidence(-2.0) < segs[0].confidence < confidence(-0.1)


def test_a_short_first_segment_absorbs_the_next() -> None:
    segs = postprocess([raw(0, 0.1, "Um"), raw(0.1, 2, "so anyway.")], track_sid="T", min_s=0.5)
    assert [s.text for s in segs] == ["Um so anyway."]


def test_real_time_factor() -> None:
    assert Transcript([], "en", audio_s=10.0, elapsed_s=2.5).real_time_factor == 0.25
    assert Transcript([], "en", audio_s=0.0, elapsed_s=1.0).real_time_factor == 0.0


def test_repetition_loops_are_dropped_and_speech_is_kept() -> None:
    speech = (
        "Mister Quilter is the apostle of the middle classes, and we are glad to welcome his "
        "gospel. Nor is Mister Quilter's manner less interesting than his matter."
    )
    loop = "Thank you. " * 40
    stuck = "tyq" * 60 + " irc" * 50
    assert compression_ratio(speech) < MAX_COMPRESSION_RATIO < compression_ratio(loop)
    segs = postprocess(
        [raw(0, 6, speech), raw(6, 30, loop), raw(30, 40, stuck), raw(40, 41, "Yes, yes.")],
        track_sid="TR_a",
        min_s=0.3,
    )
    assert [s.text for s in segs] == [speech, "Yes, yes."]
    # The ids stay dense: a re-run that keeps other segments replaces them all.
    assert [s.id for s in segs] == ["TR_a-w000000", "TR_a-w000001"]
