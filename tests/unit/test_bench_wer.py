"""The word error rate the end-to-end benchmark reports."""

from __future__ import annotations

import pytest

from bench.demo import normalize, wer, word_errors

pytestmark = pytest.mark.unit


def test_normalize_keeps_apostrophes_and_splits_hyphens() -> None:
    assert normalize("Mister Quilter's well-known, MANNER!") == [
        "mister",
        "quilter's",
        "well",
        "known",
        "manner",
    ]


@pytest.mark.parametrize(
    ("reference", "hypothesis", "errors"),
    [
        ("a b c", "a b c", 0),
        ("a b c", "a x c", 1),  # substitution
        ("a b c", "a c", 1),  # deletion
        ("a b c", "a b c d", 1),  # insertion
        ("a b c", "", 3),
        ("", "a b", 2),
        ("the cat sat", "cat sat on", 2),
    ],
)
def test_word_errors_counts_edits(reference: str, hypothesis: str, errors: int) -> None:
    assert word_errors(reference.split(), hypothesis.split()) == errors


def test_wer_pools_channels_and_counts_a_silent_one() -> None:
    references = {"speaker1": ["a", "b"], "speaker2": ["c", "d"]}
    assert wer(references, {"speaker1": "A, b."}) == 0.5
