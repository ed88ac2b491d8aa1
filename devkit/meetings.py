"""The demo's meetings: the built-in script as tracks, or a meeting read from audio files.

The built-in script exists in two forms, turn for turn: :data:`TONE_SCRIPT` (tone words the
synthetic Vosk model hears exactly, :mod:`devkit.tones`) and :data:`SPOKEN_SCRIPT` (English,
voiced with espeak-ng). Three ways to play it, one per combination of models the demo runs:

- :func:`tone_meeting`: tones only, for the synthetic Vosk model and a random-weight Whisper;
- :func:`spoken_meeting`: speech only, for a real Vosk model;
- :func:`captioned_meeting`: speech with each turn's tone words played under it, for the
  synthetic Vosk model beside a real Whisper: the live captions show the tone words, exactly,
  while Whisper transcribes the speech.

Every track of a meeting has the same length, and a participant is silent while others speak.
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from devkit.tones import synthesize, tone_frequency
from roomscribe.audio import decode_channels, decode_file
from roomscribe.errors import AudioDecodeError

RATE: Final = 16000

#: The built-in meeting in tone words: (speaker, words), one turn after another.
TONE_SCRIPT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("alice", ("alpha", "bravo", "charlie")),
    ("bob", ("delta", "echo")),
    ("carol", ("foxtrot", "golf", "hotel")),
    ("dave", ("india", "juliett")),
    ("alice", ("kilo", "lima")),
    ("bob", ("mike", "november", "oscar")),
    ("carol", ("papa", "alpha")),
    ("dave", ("bravo", "charlie", "delta")),
)

#: The built-in meeting in words, voiced with espeak-ng. People say what they will do the
#: way people do ("I will ...", "Carol, could you ..."), which is what the summary's action
#: items are taken from; the sentences are ones tiny.en transcribes well in espeak's voice.
SPOKEN_SCRIPT: tuple[tuple[str, str], ...] = (
    ("alice", "Good morning everyone. First, the release status."),
    ("bob", "The build is green. I will tag the release candidate today."),
    ("carol", "The documentation still needs the new export formats."),
    ("dave", "I will review the documentation tomorrow morning."),
    ("alice", "Great. Carol, could you send the document to Dave by noon?"),
    ("bob", "One more thing. The load test passed with thirty streams."),
    ("carol", "I will add those figures to the benchmark page."),
    ("dave", "Then we are done. Thanks everyone."),
)

#: Turns in the built-in script (both forms have the same speakers, turn for turn).
SCRIPT_TURNS: Final = len(TONE_SCRIPT)

#: The most participants the demo plays: each is a live track transcriber and STT stream.
MAX_PARTICIPANTS = 16

# Speech peaks here in a captioned meeting, leaving room for the tones under it.
_SPEECH_PEAK: Final = 0.5
# Tone RMS over speech RMS under a captioned turn, and the tones' floor (fraction of full
# scale) where the speech pauses. Measured on the built-in script (8 turns, 16 kHz, synthetic
# Vosk tiny, the real tiny.en greedy): turns whose tone words come out exactly / tiny.en's
# word error rate were 4/8 / 0.16 at 0.7, 8/8 / 0.17 at 1.0, 8/8 / 0.19 at 1.2, 8/8 / 0.23
# at 1.5, against 0.14 on the bare speech. 1.2 leaves the live path a margin for the trip
# through WebRTC and Opus at little cost to Whisper.
_TONE_TO_SPEECH: Final = 1.2
_TONE_FLOOR: Final = 0.02
_ENVELOPE_S: Final = 0.05
# A tone's gain is ((700 + f) / 1700) ** this (see overlay_tone_words).
_GAIN_EXP: Final = 0.5
# Consecutive tones cross-fade over this long (see _held_tones).
_CROSSFADE_S: Final = 0.02


def _check_turns(turns: int) -> None:
    if not 1 <= turns <= SCRIPT_TURNS:
        raise ValueError(f"turns must be 1 to {SCRIPT_TURNS} (the built-in script), not {turns}")


def tone_meeting(turns: int = SCRIPT_TURNS) -> dict[str, npt.NDArray[np.int16]]:
    """The first ``turns`` turns of :data:`TONE_SCRIPT` as one track per participant.

    Raises:
        ValueError: ``turns`` is not 1 to :data:`SCRIPT_TURNS`.
    """
    _check_turns(turns)
    script = TONE_SCRIPT[:turns]
    pieces = [synthesize(list(words), lead_s=0.3, tail_s=1.0) for _, words in script]
    return _turns_to_tracks([who for who, _ in script], pieces)


def spoken_meeting(turns: int = SCRIPT_TURNS) -> dict[str, npt.NDArray[np.int16]]:
    """The first ``turns`` turns of :data:`SPOKEN_SCRIPT`, voiced, one track per participant.

    Raises:
        ValueError: ``turns`` is not 1 to :data:`SCRIPT_TURNS`.
        devkit.voice.VoiceError: espeak-ng is not installed.
    """
    from devkit.voice import speak

    _check_turns(turns)
    script = SPOKEN_SCRIPT[:turns]
    return _speech_tracks([(who, speak(text)) for who, text in script])


def captioned_meeting(turns: int = SCRIPT_TURNS) -> dict[str, npt.NDArray[np.int16]]:
    """The spoken script with each turn's tone words under the speech (see the module doc).

    The tones follow the speech's loudness (:func:`overlay_tone_words`), so the synthetic
    Vosk model hears the turn's tone words and nothing of the speech, while Whisper hears the
    speech over a steady, quieter tone.

    Raises:
        ValueError: ``turns`` is not 1 to :data:`SCRIPT_TURNS`.
        devkit.voice.VoiceError: espeak-ng is not installed.
    """
    from devkit.voice import speak

    _check_turns(turns)
    turns_played = zip(SPOKEN_SCRIPT[:turns], TONE_SCRIPT[:turns], strict=True)
    return _speech_tracks(
        [(who, overlay_tone_words(speak(text), words)) for (who, text), (_, words) in turns_played]
    )


def overlay_tone_words(
    speech: npt.NDArray[np.int16], words: tuple[str, ...]
) -> npt.NDArray[np.int16]:
    """Play ``words``' tones under ``speech``, one after another, spanning it.

    The speech is scaled to peak at half of full scale; each word's tone holds for an equal
    share of it (:func:`_held_tones`), at 1.2 times the speech's RMS over the surrounding
    50 ms (and at least 2 % of full scale), so the tone outweighs the speech in the model's
    tone detectors at every frame, without drowning the speech for Whisper. A tone is raised
    by ``sqrt((700 + f) / 1700)``: the detectors are calibrated against white noise, whose
    energy in a mel bin grows with the bin's width (``700 + f`` on Kaldi's mel scale) while a
    pure tone's does not, so a high word needs more power to stand out as much.

    Args:
        speech: Mono int16 PCM at 16 kHz.
        words: Tone words (:data:`devkit.tones.TONE_WORDS`).

    Returns:
        The mix, as long as ``speech``.
    """
    n = len(speech)
    voice = speech.astype(np.float64)
    peak = float(np.abs(voice).max()) if n else 0.0
    if n == 0 or peak == 0.0 or not words:
        return speech.copy()
    voice *= _SPEECH_PEAK * 32767 / peak
    tone = _held_tones(words, n)
    # Moving RMS over the envelope window, by cumulative sums (O(n) for any window).
    window = round(_ENVELOPE_S * RATE)
    energy = np.concatenate([[0.0], np.cumsum(voice**2)])
    ends = np.minimum(np.arange(n) + window // 2, n)
    starts = np.maximum(ends - window, 0)
    rms = np.sqrt((energy[ends] - energy[starts]) / np.maximum(ends - starts, 1))
    # The tones peak at 1 (full scale): sqrt(2) * rms makes a tone's RMS that rms.
    level = np.maximum(_TONE_FLOOR, _TONE_TO_SPEECH * math.sqrt(2) * rms / 32767)
    mixed: npt.NDArray[np.float64] = voice + tone * level * 32767
    return np.clip(np.round(mixed), -32768, 32767).astype(np.int16)


def _held_tones(words: tuple[str, ...], n: int) -> npt.NDArray[np.float64]:
    """``words``' tones, each held for ``n / len(words)`` samples, peak 1 (before gains).

    Consecutive tones cross-fade (equal power, 20 ms) instead of fading out and in: in a dip
    between two tones the speech alone would reach the model, which would hear a word in it.
    """
    t = np.arange(n) / RATE
    share = n / len(words)
    fade = _CROSSFADE_S * RATE
    out = np.zeros(n)
    for k, word in enumerate(words):
        start, end = k * share, (k + 1) * share
        # Weight 1 inside the word's share, rising and falling over `fade` samples centred on
        # its edges; sin/cos halves, so two neighbours' squared weights sum to 1.
        rise = np.clip((np.arange(n) - start + fade / 2) / fade, 0.0, 1.0)
        fall = np.clip((end + fade / 2 - np.arange(n)) / fade, 0.0, 1.0)
        weight = np.sin(0.5 * np.pi * np.minimum(rise, fall))
        gain = ((700 + tone_frequency(word)) / 1700) ** _GAIN_EXP
        out += gain * weight * np.sin(2 * np.pi * tone_frequency(word) * t)
    return out


def _speech_tracks(
    turns: list[tuple[str, npt.NDArray[np.int16]]],
) -> dict[str, npt.NDArray[np.int16]]:
    pause = np.zeros(RATE * 6 // 10, dtype=np.int16)
    pieces = [np.concatenate([pause, pcm, pause]) for _, pcm in turns]
    return _turns_to_tracks([who for who, _ in turns], pieces)


def _turns_to_tracks(
    speakers: list[str], pieces: list[npt.NDArray[np.int16]]
) -> dict[str, npt.NDArray[np.int16]]:
    people = list(dict.fromkeys(speakers))
    total = sum(len(p) for p in pieces)
    tracks = {who: np.zeros(total + RATE, dtype=np.int16) for who in people}
    at = 0
    for who, piece in zip(speakers, pieces, strict=True):
        tracks[who][at : at + len(piece)] = piece
        at += len(piece)
    return tracks


def audio_meeting(path: Path) -> dict[str, npt.NDArray[np.int16]]:
    """A meeting from audio: one participant per file of a folder, or per channel of a file.

    A folder gives one participant per audio file in it, named after the file (see
    :func:`_identity`); hidden files are passed over, and other files that are not audio are
    skipped with a warning on stderr. A file gives one participant per channel, ``speaker1``,
    ``speaker2``, ... in channel order (a mono file is a meeting of one). Tracks are decoded
    to 16 kHz mono and padded with silence to the longest, as the tracks of one room are.

    Args:
        path: A folder of audio files, or one audio file.

    Returns:
        Identity -> int16 16 kHz track, all of the same length.

    Raises:
        SystemExit: ``path`` does not exist, holds no audio (a folder) or is not audio (a
            file), two files make the same identity, or there are more than
            :data:`MAX_PARTICIPANTS` participants.
    """
    if path.is_dir():
        tracks = _folder_tracks(path)
    elif path.exists():
        tracks = _channel_tracks(path)
    else:
        raise SystemExit(f"--audio {path}: no such file or folder")
    longest = max(len(t) for t in tracks.values())
    return {k: np.pad(v, (0, longest - len(v))) for k, v in tracks.items()}


def _folder_tracks(folder: Path) -> dict[str, npt.NDArray[np.int16]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    tracks: dict[str, npt.NDArray[np.int16]] = {}
    sources: dict[str, Path] = {}
    for file in files:
        try:
            pcm = decode_file(file)
        except AudioDecodeError as exc:
            # Skipped, not fatal: speech corpora are often read-only folders that carry a
            # README, a manifest or a licence beside the recordings.
            print(f"--audio: skipping {file.name}: {exc}", file=sys.stderr)
            continue
        who = _identity(file.stem) or f"speaker{len(tracks) + 1}"
        if who in sources:
            raise SystemExit(
                f"--audio {folder}: {sources[who].name} and {file.name} would both be "
                f"participant {who!r}; rename one of them"
            )
        if len(tracks) == MAX_PARTICIPANTS:  # said before decoding the rest of a big folder
            raise SystemExit(
                f"--audio {folder}: more than {MAX_PARTICIPANTS} audio files; "
                f"the demo plays at most {MAX_PARTICIPANTS} participants"
            )
        sources[who], tracks[who] = file, pcm
    if not tracks:
        raise SystemExit(f"--audio {folder}: no audio files there (one per participant)")
    return tracks


def _channel_tracks(file: Path) -> dict[str, npt.NDArray[np.int16]]:
    try:
        channels = decode_channels(file)
    except AudioDecodeError as exc:
        raise SystemExit(
            f"--audio: {exc}; give a folder with one audio file per participant, "
            "or one audio file with one channel per participant"
        ) from exc
    if len(channels) > MAX_PARTICIPANTS:
        raise SystemExit(
            f"--audio {file}: {len(channels)} channels; "
            f"the demo plays at most {MAX_PARTICIPANTS} participants"
        )
    return {f"speaker{n}": pcm for n, pcm in enumerate(channels, start=1)}


def _identity(stem: str) -> str:
    """A file stem as a participant identity: letters, digits, ``-`` and ``_`` only.

    LiveKit takes any string, but the identity shows in captions, REST paths and logs, where
    simple ones read and quote best. Accents are dropped rather than their letters; any other
    run of characters becomes one ``-``. Empty when nothing is left (the caller numbers it).
    """
    ascii_only = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9_-]+", "-", ascii_only).strip("-")
