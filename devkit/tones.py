"""Pure tones that the synthetic Vosk model hears as words (no vosk needed to import this).

The synthetic model (:mod:`devkit.synthetic_vosk`) maps one word to one Kaldi mel bin: a pure
tone at the bin's centre puts nearly all of its energy into that bin, so the model's detector
for that word fires and no other does. This module owns the vocabulary, the word-to-frequency
map and the audio synthesis, so tests can produce audio with exact ground truth (which words,
at which times) and check what the real recognizer makes of it.

Every tone lies below 3.7 kHz, so audio at 8 kHz carries the whole vocabulary: synthesize at
8000 Hz and resample to 16 kHz before feeding the recognizer (the model is 16 kHz, and libvosk
only downsamples). Audio at 16 kHz feeds it directly, and 48 kHz after
:func:`roomscribe.audio.resample`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

#: The vocabulary, in word-id order (word id = index + 1 in the model's ``words.txt``).
TONE_WORDS: Final[tuple[str, ...]] = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
)

# The filterbank of the model's conf/mfcc.conf. The tone frequencies are derived from it, so
# the two must not drift apart: devkit.synthetic_vosk writes its mfcc.conf from these.
#: Sample rate the synthetic model expects, in Hz.
MODEL_SAMPLE_RATE: Final = 16000
#: Number of triangular mel filters (and of cepstra: the DCT is square, hence invertible).
NUM_MEL_BINS: Final = 40
#: Lower edge of the first mel filter, in Hz.
MEL_LOW_HZ: Final = 20.0
#: Upper edge of the last mel filter, in Hz.
MEL_HIGH_HZ: Final = 7600.0

# Mel bin of each word (parallel to TONE_WORDS). Bins two apart barely see each other's tone,
# so the low end uses every other bin; above ~2.9 kHz one mel step is 7+ FFT bins wide, so
# neighbouring bins still separate cleanly (detector margin ~3 nats vs ~7 two bins apart),
# which keeps the top tone at bin 29 (3607 Hz), below what 8 kHz audio can carry. Bins under 2
# (below ~150 Hz) are avoided: they span only 1-2 FFT bins, and pre-emphasis cuts a tone there
# by ~27 dB, so little is left after a voice path's high-pass filter.
_WORD_BINS: Final[tuple[int, ...]] = (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 27, 28, 29)

# Raised-cosine ramps at each end of a tone: an abrupt start splatters energy over every mel
# bin for a frame, which could make a neighbouring word's detector fire.
_FADE_S: Final = 0.01

_WORD_INDEX: Final[dict[str, int]] = {word: i for i, word in enumerate(TONE_WORDS)}


def mel_scale(hz: float) -> float:
    """Kaldi's mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * math.log1p(hz / 700.0)


def inverse_mel_scale(mel: float) -> float:
    """The inverse of :func:`mel_scale`, in Hz."""
    return 700.0 * math.expm1(mel / 1127.0)


def mel_bin_centre(index: int) -> float:
    """Centre frequency in Hz of one of the model's mel filters, computed as Kaldi does.

    Args:
        index: Filter index, 0 to ``NUM_MEL_BINS - 1``.

    Returns:
        The frequency where the filter's triangle peaks.

    Raises:
        ValueError: ``index`` is out of range.
    """
    if not 0 <= index < NUM_MEL_BINS:
        raise ValueError(f"mel bin index must be in 0..{NUM_MEL_BINS - 1}, got {index!r}")
    low, high = mel_scale(MEL_LOW_HZ), mel_scale(MEL_HIGH_HZ)
    # Kaldi's MelBanks: NUM_MEL_BINS + 2 equally spaced mel points; filter i peaks at point i+1.
    delta = (high - low) / (NUM_MEL_BINS + 1)
    return inverse_mel_scale(low + (index + 1) * delta)


def tone_mel_bin(word: str) -> int:
    """Return the index of the mel filter that ``word``'s tone falls into.

    Raises:
        ValueError: ``word`` is not in :data:`TONE_WORDS`.
    """
    index = _WORD_INDEX.get(word)
    if index is None:
        raise ValueError(
            f"unknown tone word {word!r}; the synthetic vocabulary is {', '.join(TONE_WORDS)}"
        )
    return _WORD_BINS[index]


def tone_frequency(word: str) -> float:
    """Return the frequency in Hz of the pure tone that the synthetic model hears as ``word``.

    The tone sits at the centre of the word's mel filter, where that filter's weight is 1 and
    its neighbours' weights are 0.

    Raises:
        ValueError: ``word`` is not in :data:`TONE_WORDS`.
    """
    return mel_bin_centre(tone_mel_bin(word))


def _check_words(words: Sequence[str]) -> list[float]:
    if isinstance(words, str):
        # A bare string is a Sequence[str] of characters: almost certainly a mistake.
        raise TypeError(f"words must be a sequence of words, not a string: use {words!r}.split()")
    return [tone_frequency(word) for word in words]


def _check_timing(word_s: float, gap_s: float, lead_s: float) -> None:
    if word_s < 2 * _FADE_S:
        raise ValueError(f"word_s must be at least {2 * _FADE_S} s (two fades), got {word_s!r}")
    if gap_s < 0 or lead_s < 0:
        raise ValueError(f"gap_s and lead_s must not be negative, got {gap_s!r} and {lead_s!r}")


def word_times(
    words: Sequence[str], *, word_s: float = 0.4, gap_s: float = 0.3, lead_s: float = 0.3
) -> list[tuple[str, float, float]]:
    """Return where each word's tone lies in :func:`synthesize`'s output.

    Args:
        words: The words, as given to :func:`synthesize`.
        word_s: Tone length in seconds (fades included).
        gap_s: Silence between tones in seconds.
        lead_s: Silence before the first tone in seconds.

    Returns:
        ``(word, start_s, end_s)`` per word, in seconds from the start of the audio.

    Raises:
        ValueError: A word is not in :data:`TONE_WORDS`, or a duration is out of range.
        TypeError: ``words`` is a string rather than a sequence of words.
    """
    _check_words(words)
    _check_timing(word_s, gap_s, lead_s)
    times: list[tuple[str, float, float]] = []
    for i, word in enumerate(words):
        start = lead_s + i * (word_s + gap_s)
        times.append((word, start, start + word_s))
    return times


def synthesize(
    words: Sequence[str],
    *,
    sample_rate: int = 16000,
    word_s: float = 0.4,
    gap_s: float = 0.3,
    lead_s: float = 0.3,
    tail_s: float = 1.2,
    amplitude: float = 0.3,
) -> npt.NDArray[np.int16]:
    """Synthesize the tones that the synthetic Vosk model recognizes as ``words``.

    The audio is ``lead_s`` of silence, then each word's tone for ``word_s`` with ``gap_s`` of
    silence between tones, then ``tail_s`` of silence (long enough by default for the model's
    endpointer, which wants 0.5-1 s of trailing silence, to close the utterance).

    Args:
        words: Words from :data:`TONE_WORDS`; may be empty (silence only).
        sample_rate: Output rate in Hz. 16000 feeds the model directly; 8000 and 48000 (any
            rate of at least 8000) need resampling to 16 kHz first.
        word_s: Tone length in seconds, including 10 ms fades at each end.
        gap_s: Silence between tones in seconds.
        lead_s: Silence before the first tone in seconds.
        tail_s: Silence after the last tone in seconds.
        amplitude: Peak of each tone as a fraction of int16 full scale, in (0, 1].

    Returns:
        Mono int16 PCM at ``sample_rate``.

    Raises:
        ValueError: A word is unknown, the rate is under 8000 Hz (it could not carry every
            tone), or a duration or the amplitude is out of range.
        TypeError: ``words`` is a string rather than a sequence of words.
    """
    frequencies = _check_words(words)
    _check_timing(word_s, gap_s, lead_s)
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz, got {sample_rate!r}")
    if tail_s < 0:
        raise ValueError(f"tail_s must not be negative, got {tail_s!r}")
    if not 0 < amplitude <= 1:
        raise ValueError(f"amplitude must be in (0, 1], got {amplitude!r}")

    def at(seconds: float) -> int:
        return round(seconds * sample_rate)

    times = word_times(words, word_s=word_s, gap_s=gap_s, lead_s=lead_s)
    end_s = times[-1][2] + tail_s if times else lead_s + tail_s
    out = np.zeros(at(end_s), dtype=np.float64)
    fade = max(at(_FADE_S), 1)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)
    for (_, start_s, stop_s), frequency in zip(times, frequencies, strict=True):
        start, stop = at(start_s), at(stop_s)
        t = np.arange(stop - start) / sample_rate
        tone = np.sin(2 * np.pi * frequency * t)
        tone[:fade] *= ramp
        tone[-fade:] *= ramp[::-1]
        out[start:stop] = tone
    # Full scale is 32767 so amplitude 1.0 never wraps; rounding (not truncating) keeps the
    # quantization noise white, which the model treats as silence.
    return np.round(out * (amplitude * 32767.0)).astype(np.int16)
