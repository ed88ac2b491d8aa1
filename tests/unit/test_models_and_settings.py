from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from roomscribe.errors import ConfigurationError
from roomscribe.models import PENDING_TRACK_STATUSES, Room, SegmentIn, Track, TrackStatus
from roomscribe.settings import PLACEHOLDER_SECRET, CoreSettings
from roomscribe.store import MongoTranscriptStore, SQLiteTranscriptStore, open_store

pytestmark = pytest.mark.unit

STRONG = "x" * 31 + "y"


def test_segment_validation() -> None:
    with pytest.raises(ValidationError, match="ends"):
        SegmentIn(id="s1", start=2.0, end=1.0, text="x")
    with pytest.raises(ValidationError):
        SegmentIn(id="", start=0.0, end=1.0, text="x")
    with pytest.raises(ValidationError):
        SegmentIn(id="s1", start=0.0, end=1.0, text="x", confidence=1.5)


def test_naive_datetimes_from_a_store_become_utc() -> None:
    track = Track.model_validate(
        {
            "track_sid": "TR_a",
            "room": "r",
            "participant_identity": "alice",
            "published_at": datetime(2026, 1, 1, 12, 0),
        }
    )
    assert track.published_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert track.status is TrackStatus.RECORDING
    assert Room(name="r").created_at.tzinfo is not None


def test_pending_statuses() -> None:
    assert TrackStatus.TRANSCRIBED not in PENDING_TRACK_STATUSES
    assert TrackStatus.FAILED not in PENDING_TRACK_STATUSES
    assert TrackStatus.RECORDED in PENDING_TRACK_STATUSES


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROOMSCRIBE_SQLITE_PATH", str(tmp_path / "t.db"))
    monkeypatch.setenv("ROOMSCRIBE_CHUNK_SIZE", "50")
    settings = CoreSettings()
    assert settings.sqlite_path == tmp_path / "t.db"
    assert settings.chunk_size == 50
    assert settings.secret.get_secret_value() == PLACEHOLDER_SECRET


@pytest.mark.parametrize("environment", ["test", "production"])
def test_placeholder_secret_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="ROOMSCRIBE_SECRET"):
        CoreSettings(environment=environment)
    with pytest.raises(ConfigurationError, match="ROOMSCRIBE_API_JWT_SECRET"):
        CoreSettings(
            environment=environment,
            secret=SecretStr(STRONG),
            api_jwt_secret=SecretStr(""),
        )
    with pytest.raises(ConfigurationError, match="32 bytes"):
        CoreSettings(environment=environment, secret=SecretStr("short-but-not-placeholder"))
    ok = CoreSettings(environment=environment, secret=SecretStr(STRONG))
    assert ok.environment == environment


@pytest.mark.parametrize("environment", ["test", "production"])
def test_the_orchestrator_refuses_livekit_dev_credentials_outside_development(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environment: str
) -> None:
    from orchestrator_service.settings import OrchestratorSettings

    monkeypatch.chdir(tmp_path)
    strong: dict[str, Any] = {"environment": environment, "secret": SecretStr(STRONG)}
    # The dev default would let anyone sign a room_finished webhook.
    with pytest.raises(ConfigurationError, match="LIVEKIT_API_SECRET"):
        OrchestratorSettings(**strong, livekit_api_key="APIprod")
    with pytest.raises(ConfigurationError, match="LIVEKIT_API_SECRET"):
        OrchestratorSettings(
            **strong, livekit_api_key="APIprod", livekit_api_secret=SecretStr("short")
        )
    with pytest.raises(ConfigurationError, match="LIVEKIT_API_KEY"):
        OrchestratorSettings(**strong, livekit_api_secret=SecretStr(STRONG))
    ok = OrchestratorSettings(
        **strong, livekit_api_key="APIprod", livekit_api_secret=SecretStr(STRONG)
    )
    assert ok.livekit_api_key == "APIprod"
    # Development keeps working with LiveKit's dev mode (devkey / secret).
    assert OrchestratorSettings().livekit_api_key == "devkey"


def test_s3_needs_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="ACCESS_KEY"):
        CoreSettings(s3_endpoint="localhost:9000")


def test_open_store_picks_the_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(
        open_store(CoreSettings(sqlite_path=tmp_path / "x.db")), SQLiteTranscriptStore
    )
    mongo = open_store(CoreSettings(mongodb_uri=SecretStr("mongodb://127.0.0.1:1/"), chunk_size=7))
    assert isinstance(mongo, MongoTranscriptStore) and mongo.chunk_size == 7
