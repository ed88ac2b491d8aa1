"""Download the real models into the models folder (``vosk/en``, ``whisper/<size>``).

Vosk's small English model comes from alphacephei.com as a zip; Whisper from the Hugging Face
hub through faster-whisper's own downloader. Progress goes to the terminal. Anything that
fails (offline, a proxy, a full disk) raises :class:`ModelFetchError` with the reason, so a
caller can fall back to synthetic models and say so.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Final

VOSK_EN_URL: Final = "https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip"
_CHUNK = 1 << 16


class ModelFetchError(Exception):
    """A real model could not be downloaded."""


def vosk_ready(folder: Path) -> bool:
    """Whether ``folder`` holds a Vosk model (its acoustic model file)."""
    return (folder / "am" / "final.mdl").is_file()


def whisper_ready(folder: Path) -> bool:
    """Whether ``folder`` holds a CTranslate2 Whisper with its tokenizer."""
    return (folder / "model.bin").is_file() and (folder / "tokenizer.json").is_file()


def fetch_vosk(target: Path, url: str = VOSK_EN_URL, timeout_s: float = 15.0) -> Path:
    """Download and unpack a Vosk model zip into ``target`` (a progress bar on stderr)."""
    if vosk_ready(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "model.zip"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as res, archive.open("wb") as out:
                total = int(res.headers.get("Content-Length") or 0)
                done = 0
                while chunk := res.read(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    _progress(f"vosk {target.name}", done, total)
            print(file=sys.stderr)
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ModelFetchError(f"cannot download {url}: {exc}") from exc
        unpacked = next((p for p in Path(tmp).iterdir() if p.is_dir()), None)
        if unpacked is None or not vosk_ready(unpacked):
            raise ModelFetchError(f"{url} did not contain a Vosk model")
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    return target


def fetch_whisper(target: Path, size: str = "small") -> Path:
    """Download ``Systran/faster-whisper-<size>`` into ``target`` (hub progress bars)."""
    if whisper_ready(target):
        return target
    try:
        from faster_whisper.utils import download_model

        download_model(size, output_dir=str(target))
    except Exception as exc:  # the hub client raises many types; all mean "not fetched"
        raise ModelFetchError(f"cannot download Whisper {size}: {exc}") from exc
    if not whisper_ready(target):
        raise ModelFetchError(f"the Whisper {size} download in {target} is incomplete")
    return target


def _progress(label: str, done: int, total: int) -> None:
    if total:
        filled = int(30 * done / total)
        bar = "#" * filled + "-" * (30 - filled)
        line = f"\r{label}: [{bar}] {done / 1e6:6.1f} / {total / 1e6:.1f} MB"
    else:
        line = f"\r{label}: {done / 1e6:6.1f} MB"
    print(line, end="", file=sys.stderr, flush=True)
