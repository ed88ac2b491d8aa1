"""Speak text locally with espeak-ng (the ``espeakng-loader`` wheel ships the library).

Used by the demo to voice its built-in meeting script when real models are in use: a plain
robotic voice, but real speech that a real Vosk model and Whisper can transcribe.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Final

import numpy as np
import numpy.typing as npt

from roomscribe.audio import resample

_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_POS_CHARACTER: Final = 1
_ESPEAK_CHARS_UTF8: Final = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_lock = threading.Lock()  # espeak-ng keeps global state: one synthesis at a time


class VoiceError(Exception):
    """espeak-ng is not available or failed."""


def speak(text: str, *, voice: str = "en-us", rate_wpm: int = 160) -> npt.NDArray[np.int16]:
    """Synthesize ``text`` as 16 kHz mono int16 PCM."""
    try:
        import espeakng_loader
    except ImportError as exc:
        raise VoiceError("espeak-ng is not installed (pip install espeakng-loader)") from exc
    chunks: list[bytes] = []

    def collect(wav: ctypes._Pointer[ctypes.c_short], samples: int, _events: int) -> int:
        if samples > 0:
            chunks.append(ctypes.string_at(wav, samples * 2))
        return 0

    callback = _SYNTH_CALLBACK(collect)
    with _lock:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise VoiceError("espeak-ng failed to initialize")
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise VoiceError(f"espeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(1, rate_wpm, 0)  # espeakRATE
        encoded = text.encode() + b"\0"
        status = lib.espeak_Synth(
            encoded, len(encoded), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        lib.espeak_Synchronize()
        if status != 0:
            raise VoiceError(f"espeak-ng failed to speak (status {status})")
    pcm = np.frombuffer(b"".join(chunks), dtype=np.int16)
    return resample(pcm, rate, 16000) if rate != 16000 else pcm.copy()
