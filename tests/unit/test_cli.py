"""Service entry points: --help, --host/--port, one clear line (exit 2) when they cannot start."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator_service.__main__ import main as orchestrator_main
from roomscribe.cli import check_port_free, parse_service_args
from stt_service.__main__ import main as stt_main


@pytest.fixture(autouse=True)
def never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that got as far as serving would hang: fail it instead."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the service started serving; it should have refused to start")

    monkeypatch.setattr("roomscribe.cli.serve", refuse)


def one_line_exit(capsys: pytest.CaptureFixture[str], exc: pytest.ExceptionInfo[SystemExit]) -> str:
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("module", "port_env"),
    [
        ("orchestrator_service", "ROOMSCRIBE_ORCHESTRATOR_PORT"),
        ("stt_service", "ROOMSCRIBE_STT_PORT"),
        ("tts_service", "ROOMSCRIBE_TTS_PORT"),
    ],
)
def test_help_prints_usage_and_serves_nothing(module: str, port_env: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--host" in out and "--port" in out and port_env in out


def test_stt_without_models_is_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("ROOMSCRIBE_MODELS_DIR", str(tmp_path))
    monkeypatch.delenv("ROOMSCRIBE_STT_MODELS", raising=False)
    with socket.socket() as probe:  # a free port: the check before models passes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SystemExit) as exc:
        stt_main(["--port", str(port)])
    assert "model" in one_line_exit(capsys, exc).lower()


def test_a_busy_port_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(SystemExit) as exc:
            orchestrator_main(["--port", str(port)])
    err = one_line_exit(capsys, exc)
    assert f"127.0.0.1:{port}" in err and "in use" in err


def test_a_bad_setting_names_itself(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROOMSCRIBE_ORCHESTRATOR_PORT", "eighty")
    with pytest.raises(SystemExit) as exc:
        orchestrator_main([])
    assert "orchestrator_port" in one_line_exit(capsys, exc)


def test_production_with_default_secrets_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROOMSCRIBE_ENVIRONMENT", "production")
    with pytest.raises(SystemExit) as exc:
        orchestrator_main([])
    assert "secret" in one_line_exit(capsys, exc).lower()


def test_flags_override_and_bad_ports_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_service_args(
        "svc",
        "d",
        host_env="H",
        port_env="P",
        default_port=1,
        argv=["--host", "::1", "--port", "9"],
    )
    assert (args.host, args.port, args.log_format) == ("::1", 9, "text")
    with pytest.raises(SystemExit):
        parse_service_args(
            "svc", "d", host_env="H", port_env="P", default_port=1, argv=["--port", "0"]
        )
    assert "not a TCP port" in capsys.readouterr().err


def test_a_free_port_passes_the_check() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_port_free("127.0.0.1", port)
