"""Kokoro for the TTS service: the real download against a stand-in hub, and its fallback.

The hub is played by a stdlib HTTP server (the one test_model_fetch.py plays it with for
faster-whisper) serving ``hexgrad/Kokoro-82M`` in the real repository's layout, more voices
than are asked for and a README; the real hub client downloads from it through
``HF_ENDPOINT``. The weights served are a few bytes: what is checked is which files arrive,
where, and how they are marked, and that the TTS service then takes them for real. The
random-weight fallback is built for real once (``--synthetic``); elsewhere a recording
builder stands in for it, as test_model_fetch.py does for Whisper.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from devkit.__main__ import main as devkit_main
from devkit.fetch_progress import ModelFetchError
from devkit.kokoro_models import KOKORO_REPO, describe_kokoro, fetch_kokoro
from roomscribe.model_info import PROVENANCE_NAME
from tests.service.test_model_fetch import _COMMIT, _hub, _serve

pytestmark = pytest.mark.service

FILES = {
    "config.json": b'{"n_token": 178}',
    "kokoro-v1_0.pth": b"weights " * 64,
    "voices/af_heart.pt": b"heart pack",
    "voices/am_adam.pt": b"adam pack",
    "voices/bf_emma.pt": b"emma pack",
    "voices/zf_xiaobei.pt": b"not asked for",
    "README.md": b"not a file the service loads",
}


@pytest.fixture(autouse=True)
def _hub_reachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Undo the session's HF_HUB_OFFLINE (the Whisper fixtures set it); pip finds no index."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_fetch_kokoro_downloads_the_service_files_through_a_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "models" / "kokoro"
    with _serve(_hub(KOKORO_REPO, FILES)) as (url, requests):
        monkeypatch.setenv("HF_ENDPOINT", url)
        assert fetch_kokoro(target) == target
        asked = len(requests)
        assert fetch_kokoro(target, ["af_heart"]) == target  # already there
    assert len(requests) == asked
    got = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert [name for name in got if not name.startswith(".cache/")] == [
        "config.json",
        "kokoro-v1_0.pth",
        PROVENANCE_NAME,
        "voices/af_heart.pt",
        "voices/am_adam.pt",
        "voices/bf_emma.pt",
    ]
    for name in ("config.json", "kokoro-v1_0.pth", "voices/am_adam.pt"):
        assert (target / name).read_bytes() == FILES[name]
    marker = json.loads((target / PROVENANCE_NAME).read_text())
    assert marker["revision"] == _COMMIT and marker["voices"] == ["af_heart", "am_adam", "bf_emma"]
    info = describe_kokoro(target)
    assert info is not None and info.kind == "real"
    assert info.source == f"Hugging Face hub {KOKORO_REPO} via {url}"
    assert [p.name for p in target.parent.iterdir()] == ["kokoro"]  # no staging folder left
    # The TTS service finds it and says it is real, from where.
    from tts_service.kokoro_model import find_model

    files = find_model(target)
    assert not files.synthetic and sorted(files.voices) == ["af_heart", "am_adam", "bf_emma"]
    assert files.label() == f"kokoro (real, Hugging Face hub {KOKORO_REPO} via {url})"


def test_fetch_kokoro_refuses_a_voice_the_hub_does_not_have(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "kokoro"
    with _serve(_hub(KOKORO_REPO, FILES)) as (url, _):
        monkeypatch.setenv("HF_ENDPOINT", url)
        with pytest.raises(ModelFetchError, match=r"did not deliver voices/xx_nobody\.pt"):
            fetch_kokoro(target, ["af_heart", "xx_nobody"])
    assert not target.exists()


def test_fetch_kokoro_fails_fast_offline_and_without_a_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", _closed_port())
    started = time.monotonic()
    with pytest.raises(ModelFetchError, match=f"cannot download {KOKORO_REPO} from http://"):
        fetch_kokoro(tmp_path / "kokoro", timeout_s=2)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelFetchError, match="HF_HUB_OFFLINE is set"):
        fetch_kokoro(tmp_path / "kokoro")
    assert time.monotonic() - started < 5
    assert not (tmp_path / "kokoro").exists()


def _recording_builder(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the random-weight build with one that writes a marked stand-in, and records."""
    import devkit.kokoro_models

    calls: list[dict[str, Any]] = []

    def build(folder: Path, *, seed: int = 0, voices: tuple[str, ...] = ()) -> Path:
        calls.append({"seed": seed, "voices": voices})
        (folder / "voices").mkdir(parents=True)
        for name in ("config.json", "kokoro-v1_0.pth"):
            (folder / name).write_bytes(b"{}")
        for voice in voices:
            (folder / "voices" / f"{voice}.pt").write_bytes(b"")
        (folder / "roomscribe-synthetic.json").write_text(json.dumps({"seed": seed}))
        return folder

    monkeypatch.setattr(devkit.kokoro_models, "build_synthetic_kokoro", build)
    return calls


def test_models_command_downloads_the_real_kokoro(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = _recording_builder(monkeypatch)
    models = tmp_path / "models"
    with _serve(_hub(KOKORO_REPO, FILES)) as (url, _):
        monkeypatch.setenv("HF_ENDPOINT", url)
        args = ["models", "--out", str(models), "--vosk-url", f"{_closed_port()}/m.zip"]
        status = devkit_main([*args, "--kokoro-voices", "am_adam"])
    out = capsys.readouterr().out
    assert status == 1  # Vosk and Whisper could not be had; Kokoro could
    assert built == []
    assert f"kokoro: downloading {KOKORO_REPO} from {url} (voices am_adam) ..." in out
    assert "kokoro: done in" in out
    assert f"  kokoro  real       Hugging Face hub {KOKORO_REPO} via {url} (voices am_adam)" in out


def test_models_command_falls_back_to_random_weights_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = _recording_builder(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = tmp_path / "models"
    args = ["models", "--out", str(models), "--vosk-url", f"{_closed_port()}/m.zip"]
    assert devkit_main(args) == 1
    captured = capsys.readouterr()
    assert built == [{"seed": 0, "voices": ("af_heart", "am_adam", "bf_emma")}]
    assert (
        f"note: kokoro: Kokoro is not in {models / 'kokoro'} and HF_HUB_OFFLINE is set; "
        "building the random-weight one instead"
    ) in captured.out
    assert "  kokoro  synthetic  random weights (devkit.synthetic_kokoro, seed 0)" in captured.out
    # The fallback is not a failure: only Vosk and Whisper are reported as failed.
    failures = [line for line in captured.err.splitlines() if line.startswith("devkit models:")]
    assert failures and not any("kokoro" in line for line in failures)


def test_models_command_keeps_a_real_kokoro(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = _recording_builder(monkeypatch)
    real = tmp_path / "kokoro"
    (real / "voices").mkdir(parents=True)
    for name in ("config.json", "kokoro-v1_0.pth", "voices/af_heart.pt"):
        (real / name).write_bytes(b"put there by hand")
    assert devkit_main(["models", "--synthetic", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "kokoro: keeping the real model there (unknown source" in out
    assert built == [] and (real / "kokoro-v1_0.pth").read_bytes() == b"put there by hand"


@pytest.mark.parametrize(
    ("voices", "message"),
    [("../etc", "is not a Kokoro voice name"), ("AF_heart", "is not a Kokoro voice name"),
     (",", "name at least one voice")],
)  # fmt: skip
def test_models_command_refuses_bad_voice_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], voices: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        devkit_main(["models", "--out", str(tmp_path), "--kokoro-voices", voices])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_models_command_builds_the_random_weight_kokoro(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("kokoro", reason="kokoro is not installed (pip install -e '.[tts]')")
    args = ["models", "--synthetic", "--out", str(tmp_path), "--whisper-size", "micro"]
    assert devkit_main([*args, "--kokoro-voices", "af_heart"]) == 0
    out = capsys.readouterr().out
    assert "kokoro: building the random-weight Kokoro-82M" in out
    assert re.search(
        r"^  kokoro +synthetic  random weights \(devkit\.synthetic_kokoro, seed 0\)", out, re.M
    )
    from tts_service.kokoro_model import find_model

    files = find_model(tmp_path / "kokoro")
    assert files.synthetic and list(files.voices) == ["af_heart"]
    assert devkit_main([*args, "--kokoro-voices", "af_heart"]) == 0
    assert "kokoro: random-weight model already built" in capsys.readouterr().out
