"""Settings shared by every service.

Each service subclasses :class:`CoreSettings` with its own fields; all read the environment
(prefix ``ROOMSCRIBE_``) and a ``.env`` file. ``__main__`` builds the settings once and passes
them down, so nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from roomscribe.errors import ConfigurationError

#: The secret a fresh checkout runs with. Accepted only when ``environment`` is ``development``.
PLACEHOLDER_SECRET = "changethis"
#: Defaults that ship with the code (and LiveKit's dev mode); refused outside development.
DEVELOPMENT_SECRETS = frozenset({PLACEHOLDER_SECRET, "secret", "devkey"})
#: Shortest HMAC secret accepted outside development (RFC 7518 asks for the hash's size).
MIN_SECRET_BYTES = 32
#: Seconds a client has to send a request head before the server answers 408 and closes.
DEFAULT_HEADER_TIMEOUT_S = 10.0


class CoreSettings(BaseSettings):
    """Settings every service needs: secrets, transcript store and object store."""

    model_config = SettingsConfigDict(
        env_prefix="ROOMSCRIBE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    environment: Literal["development", "test", "production"] = "development"

    header_timeout_s: float = Field(
        default=DEFAULT_HEADER_TIMEOUT_S,
        gt=0,
        le=3600,
        description="Seconds a client has to send each request's line and headers (else 408).",
    )

    secret: SecretStr = Field(
        default=SecretStr(PLACEHOLDER_SECRET),
        description="Signs the short-lived internal tokens between services.",
    )
    api_jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 secret of the public REST API's bearer tokens."
    )
    api_jwks_url: str | None = Field(
        default=None, description="JWKS URL for RS256 bearer tokens of the public REST API."
    )
    api_jwt_audience: str | None = Field(
        default=None, description="Required ``aud`` of public API tokens (unset: not checked)."
    )
    api_jwt_issuer: str | None = Field(
        default=None, description="Required ``iss`` of public API tokens (unset: not checked)."
    )

    mongodb_uri: SecretStr | None = Field(
        default=None, description="MongoDB URI; unset selects the embedded SQLite store."
    )
    mongodb_database: str = "roomscribe"
    sqlite_path: Path = Path("var/roomscribe.db")
    chunk_size: int = Field(
        default=200, ge=1, le=10_000, description="Most segments stored in one chunk."
    )

    objects_dir: Path = Path("var/objects")
    s3_endpoint: str | None = Field(
        default=None, description="S3 endpoint as host[:port] or URL; set selects the S3 store."
    )
    s3_bucket: str = "roomscribe"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str | None = None
    s3_secure: bool = True

    #: Secret fields checked outside development, with the variable that sets each; services
    #: add their own (the orchestrator its LiveKit API secret).
    checked_secrets: ClassVar[dict[str, str]] = {
        "secret": "ROOMSCRIBE_SECRET",
        "api_jwt_secret": "ROOMSCRIBE_API_JWT_SECRET",
    }

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Self:
        """Outside development, a placeholder or short secret would let anyone mint tokens."""
        if self.environment != "development":
            for name, variable in self.checked_secrets.items():
                value: SecretStr | None = getattr(self, name)
                if value is None:
                    continue
                secret = value.get_secret_value()
                if secret in DEVELOPMENT_SECRETS or len(secret.encode()) < MIN_SECRET_BYTES:
                    raise ConfigurationError(
                        f"{variable} is a development default or shorter than "
                        f"{MIN_SECRET_BYTES} bytes; set a real secret for the "
                        f"{self.environment!r} environment"
                    )
        if self.s3_endpoint and not (self.s3_access_key and self.s3_secret_key):
            raise ConfigurationError(
                "ROOMSCRIBE_S3_ENDPOINT is set but ROOMSCRIBE_S3_ACCESS_KEY or "
                "ROOMSCRIBE_S3_SECRET_KEY is missing"
            )
        return self
