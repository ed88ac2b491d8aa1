"""What the outgoing webhooks are built from (``OrchestratorSettings.webhooks`` gathers it).

The settings are flat ``webhook_*`` fields of the orchestrator's settings, so their
environment variables read ``ROOMSCRIBE_WEBHOOK_URLS``, ``ROOMSCRIBE_WEBHOOK_SECRET``,
``ROOMSCRIBE_WEBHOOK_EVENTS``, ``ROOMSCRIBE_WEBHOOK_ALLOW_PRIVATE``, ...; this model holds
them parsed.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from orchestrator_service.outbound.errors import TargetRefusedError
from orchestrator_service.outbound.events import EventType
from orchestrator_service.outbound.targets import WebhookTarget, parse_target
from roomscribe.errors import ConfigurationError
from roomscribe.settings import DEVELOPMENT_SECRETS, MIN_SECRET_BYTES, PLACEHOLDER_SECRET


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


class WebhookConfig(BaseModel):
    """The outgoing webhooks' settings, parsed.

    Attributes:
        urls: Target URLs; none turns outgoing webhooks off.
        secret: The HMAC-SHA256 key of ``Roomscribe-Signature``.
        events: The event types sent (all of them unless a filter was set).
        allow_private: Deliver to loopback and private addresses too.
        max_attempts: Attempts of one delivery before it is given up.
        retry_base_s: Wait before the first retry; it doubles with each later one.
        retry_max_s: The longest wait between two attempts (``Retry-After`` included).
        timeout_s: Time limit of one attempt, connection to answer.
        queue_max: Deliveries held at once (waiting, in flight or between retries); more
            are dropped, and logged as dropped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    urls: tuple[str, ...] = ()
    secret: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    events: frozenset[EventType] = frozenset(EventType)
    allow_private: bool = False
    max_attempts: int = Field(default=8, ge=1, le=20)
    retry_base_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    queue_max: int = Field(default=1000, ge=1, le=100_000)

    @classmethod
    def from_lists(
        cls,
        *,
        urls: str,
        events: str,
        secret: SecretStr,
        allow_private: bool,
        max_attempts: int,
        retry_base_s: float,
        retry_max_s: float,
        timeout_s: float,
        queue_max: int,
    ) -> WebhookConfig:
        """Build from the comma-separated settings (an empty ``events``: every type).

        Raises:
            ConfigurationError: ``events`` names a type that does not exist.
        """
        known = {t.value: t for t in EventType}
        wanted = _items(events)
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise ConfigurationError(
                f"ROOMSCRIBE_WEBHOOK_EVENTS names unknown event types {unknown}; "
                f"known: {sorted(known)}"
            )
        return cls(
            urls=tuple(_items(urls)),
            secret=secret,
            events=frozenset(known[name] for name in wanted) or frozenset(EventType),
            allow_private=allow_private,
            max_attempts=max_attempts,
            retry_base_s=retry_base_s,
            retry_max_s=retry_max_s,
            timeout_s=timeout_s,
            queue_max=queue_max,
        )

    @property
    def enabled(self) -> bool:
        """Whether any target is configured."""
        return bool(self.urls)

    def targets(self) -> list[WebhookTarget]:
        """The targets, checked for form (their addresses are checked at each delivery).

        Raises:
            ConfigurationError: a URL is malformed, not http(s), or carries credentials.
        """
        try:
            return [parse_target(url) for url in self.urls]
        except TargetRefusedError as exc:
            raise ConfigurationError(f"ROOMSCRIBE_WEBHOOK_URLS: {exc}") from exc

    def check(self, environment: str) -> None:
        """Refuse targets that cannot work, and a guessable secret outside development.

        Only when targets are configured: a deployment without webhooks needs no secret.

        Raises:
            ConfigurationError: a bad target, or (outside development) a development default
                or a secret shorter than 32 bytes, with which anyone could forge events.
        """
        if not self.enabled:
            return
        self.targets()
        secret = self.secret.get_secret_value()
        if not secret:
            raise ConfigurationError("ROOMSCRIBE_WEBHOOK_SECRET is empty")
        if environment != "development" and (
            secret in DEVELOPMENT_SECRETS or len(secret.encode()) < MIN_SECRET_BYTES
        ):
            raise ConfigurationError(
                f"ROOMSCRIBE_WEBHOOK_SECRET is a development default or shorter than "
                f"{MIN_SECRET_BYTES} bytes; set a real secret for the {environment!r} "
                "environment"
            )
