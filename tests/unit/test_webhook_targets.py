"""Webhook targets: URL form, the SSRF address rules, resolution, and the settings."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from orchestrator_service.outbound import EventType, TargetRefusedError
from orchestrator_service.outbound.delivery import parse_retry_after
from orchestrator_service.outbound.targets import (
    parse_target,
    pinned_url,
    refusal,
    resolve_target,
)
from orchestrator_service.settings import OrchestratorSettings
from roomscribe.errors import ConfigurationError

pytestmark = pytest.mark.unit

STRONG = "webhook-test-secret-0123456789abcdefgh"


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # carrier-grade NAT
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback (as 127.0.0.1)"),
        ("::ffff:169.254.169.254", "link-local (as 169.254.169.254)"),
        ("::ffff:10.0.0.1", "private (as 10.0.0.1)"),
        ("2002:7f00:1::", "loopback (as 127.0.0.1)"),  # 6to4
        ("64:ff9b::a00:1", "private (as 10.0.0.1)"),  # NAT64
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "::1", "::ffff:192.168.0.2"])
def test_allowing_private_targets_lets_loopback_and_private_through(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_private=True) is None


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "fe80::1", "0.0.0.0", "224.0.0.1", "240.0.0.1"]
)
def test_metadata_multicast_and_reserved_stay_refused_whatever_the_setting(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_private=True) is not None


class Resolver:
    """Answers the addresses it was given and counts the questions."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        return self.answers.get(host, [])


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = Resolver({"hooks.example.com": ["10.0.0.7"]})
    target = parse_target("https://hooks.example.com/roomscribe")
    with pytest.raises(TargetRefusedError, match=r"10\.0\.0\.7, a private address"):
        await resolve_target(target, resolver=resolver, allow_private=False)
    assert resolver.asked == ["hooks.example.com"]
    allowed = await resolve_target(target, resolver=resolver, allow_private=True)
    assert str(allowed) == "10.0.0.7"


async def test_one_private_address_among_public_ones_refuses_the_name() -> None:
    resolver = Resolver({"mixed.example.com": ["93.184.215.14", "127.0.0.1"]})
    target = parse_target("https://mixed.example.com/")
    with pytest.raises(TargetRefusedError, match="loopback"):
        await resolve_target(target, resolver=resolver, allow_private=False)


async def test_address_literals_are_checked_without_asking_dns() -> None:
    resolver = Resolver({})
    for url in ("http://127.0.0.1:9/", "http://[::1]:9/", "http://[::ffff:127.0.0.1]/"):
        with pytest.raises(TargetRefusedError):
            await resolve_target(parse_target(url), resolver=resolver, allow_private=False)
    assert resolver.asked == []
    public = await resolve_target(
        parse_target("https://93.184.215.14/x"), resolver=resolver, allow_private=False
    )
    assert str(public) == "93.184.215.14"


async def test_a_name_without_addresses_is_a_network_error_not_a_refusal() -> None:
    with pytest.raises(OSError, match="no address"):
        await resolve_target(
            parse_target("https://gone.example.com/"), resolver=Resolver({}), allow_private=False
        )


async def test_a_resolver_answer_that_is_not_an_address_is_refused() -> None:
    resolver = Resolver({"odd.example.com": ["localhost"]})
    with pytest.raises(TargetRefusedError, match="not an address"):
        await resolve_target(
            parse_target("https://odd.example.com/"), resolver=resolver, allow_private=False
        )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "http:///no-host",
        "https://user:pass@hooks.example.com/",
        "not a url",
    ],
)
def test_target_urls_that_are_not_plain_http_are_refused(url: str) -> None:
    with pytest.raises(TargetRefusedError):
        parse_target(url)


def test_a_target_keeps_its_name_for_host_and_sni_and_hides_its_query() -> None:
    target = parse_target("https://Hooks.Example.com:8443/in/roomscribe?token=s3cret")
    assert (target.host, target.port, target.netloc) == (
        "hooks.example.com",
        8443,
        "hooks.example.com:8443",
    )
    assert target.redacted == "https://hooks.example.com:8443/in/roomscribe"
    pinned = pinned_url(target, ipaddress.ip_address("2606:4700::1111"))
    assert str(pinned) == "https://[2606:4700::1111]:8443/in/roomscribe?token=s3cret"
    assert parse_target("http://hooks.example.com/").port == 80


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 21, 9, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Sat, 21 Nov 2026 09:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Sat, 21 Nov 2026 08:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# Settings ------------------------------------------------------------------------------------
def settings(**values: object) -> OrchestratorSettings:
    base: dict[str, object] = {
        "environment": "production",
        "secret": STRONG,
        "api_jwt_secret": STRONG,
        "livekit_api_key": "APIprodkey",
        "livekit_api_secret": STRONG,
    }
    return OrchestratorSettings(**(base | values))  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", ["changethis", "secret", "short-but-not-default"])
def test_production_refuses_a_default_or_short_webhook_secret(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="ROOMSCRIBE_WEBHOOK_SECRET"):
        settings(webhook_urls="https://hooks.example.com/", webhook_secret=secret)


def test_without_targets_no_webhook_secret_is_needed() -> None:
    assert not settings().webhooks.enabled


def test_webhook_settings_are_parsed() -> None:
    config = settings(
        webhook_urls=" https://a.example.com/in , https://b.example.com/in ",
        webhook_secret=STRONG,
        webhook_events="room.completed, summary.ready",
    ).webhooks
    assert config.urls == ("https://a.example.com/in", "https://b.example.com/in")
    assert config.events == {EventType.ROOM_COMPLETED, EventType.SUMMARY_READY}
    assert settings(
        webhook_urls="https://a.example.com/", webhook_secret=STRONG
    ).webhooks.events == set(EventType)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"webhook_events": "room.finished"}, "unknown event types"),
        ({"webhook_urls": "ftp://hooks.example.com/"}, "not an http"),
        ({"webhook_urls": "https://u:p@hooks.example.com/"}, "credentials"),
    ],
)
def test_unusable_webhook_settings_are_refused_at_start(values: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        settings(
            **({"webhook_urls": "https://hooks.example.com/", "webhook_secret": STRONG} | values)
        )
