"""Where webhooks may go: target URLs, and the SSRF rules every delivery attempt applies.

A webhook target is configured by an operator, but the host in it is resolved by whatever
DNS answers at delivery time, so the checks run then, on every attempt, and not only when
the settings are read:

- only ``http`` and ``https`` URLs, without credentials in them (they would show in the
  delivery log; the signature is what authenticates a delivery);
- the host is resolved, and the delivery is refused when *any* of its addresses is
  loopback, private (RFC 1918, carrier-grade NAT, unique-local IPv6, documentation
  ranges), link-local (which holds the cloud metadata service at 169.254.169.254),
  multicast, reserved or unspecified. IPv4 addresses embedded in IPv6 ones (IPv4-mapped
  ``::ffff:a.b.c.d``, 6to4, NAT64) are judged as the IPv4 address they reach;
- ``ROOMSCRIBE_WEBHOOK_ALLOW_PRIVATE`` lets loopback and private addresses through (a
  receiver on the same host or network); link-local, multicast, reserved and unspecified
  addresses stay refused whatever it says;
- the connection goes to the address that was checked (:func:`pinned_url`), so a second
  DNS answer (DNS rebinding) cannot move it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import httpx

from orchestrator_service.outbound.errors import TargetRefusedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Resolves a host name (and port) to its addresses, as text. Tests pass their own.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_SCHEMES: Final = {"http": 80, "https": 443}
# "This network": Linux connects 0.0.0.0 (and more of 0/8) to the local host.
_THIS_NETWORK: Final = ipaddress.IPv4Network("0.0.0.0/8")
# RFC 6052's well-known NAT64 prefix: the last 32 bits are the IPv4 address reached.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class WebhookTarget:
    """A target URL that passed the checks that need no DNS.

    Attributes:
        url: The URL as configured.
        scheme: ``http`` or ``https``.
        host: The host as sent in DNS queries, ``Host`` and TLS SNI (IDNA-encoded; an IPv6
            literal without brackets).
        port: The port, explicit or the scheme's default.
        netloc: ``host[:port]`` as the URL writes it (the ``Host`` header).
        redacted: The URL without its query: what logs and the delivery log show (a query
            may hold a receiver's token).
    """

    url: str
    scheme: str
    host: str
    port: int
    netloc: str
    redacted: str


def parse_target(url: str) -> WebhookTarget:
    """Check a target URL's form: scheme, host, no credentials.

    Args:
        url: The configured URL.

    Returns:
        The target.

    Raises:
        TargetRefusedError: the URL is malformed, not ``http(s)``, has no host, or carries
            credentials.
    """
    text = url.strip()
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise TargetRefusedError(f"webhook target {text[:80]!r} is not a valid URL") from exc
    scheme = parsed.scheme.lower()
    if scheme not in _SCHEMES:
        raise TargetRefusedError(f"webhook target {text[:80]!r} is not an http(s) URL")
    host = parsed.raw_host.decode("ascii").lower()
    if not host:
        raise TargetRefusedError(f"webhook target {text[:80]!r} has no host")
    netloc = parsed.netloc.decode("ascii")
    redacted = f"{scheme}://{netloc}{parsed.path}"
    if parsed.userinfo:
        raise TargetRefusedError(
            f"webhook target {redacted} carries credentials; the signature authenticates "
            "deliveries, and a URL's credentials would show in the delivery log"
        )
    return WebhookTarget(
        url=text,
        scheme=scheme,
        host=host,
        port=parsed.port or _SCHEMES[scheme],
        netloc=netloc,
        redacted=redacted,
    )


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches, where it embeds one."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def refusal(address: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why a delivery to ``address`` is refused, or ``None`` when it may go there.

    Args:
        address: A resolved address.
        allow_private: Let loopback and private addresses through.

    Returns:
        The kind of address that is refused (``"loopback"``, ``"link-local"``, ...).
    """
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        reason = refusal(embedded, allow_private=allow_private)
        return None if reason is None else f"{reason} (as {embedded})"
    # Python before 3.13 does not see through IPv4-mapped addresses in these properties;
    # that case is handled above, so each property is judged on a plain address here.
    if address.is_unspecified or address in _THIS_NETWORK:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_link_local:
        return "link-local"
    if address.is_loopback:
        kind = "loopback"
    elif address.is_reserved:
        return "reserved"
    elif address.is_private or not address.is_global:
        kind = "private"
    else:
        return None
    return None if allow_private else kind


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """Every address the system resolver gives ``host`` for a TCP connection."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve_target(
    target: WebhookTarget, *, resolver: Resolver, allow_private: bool
) -> IPAddress:
    """Resolve the target's host and check every address it has.

    Args:
        target: The target.
        resolver: What resolves host names.
        allow_private: Let loopback and private addresses through.

    Returns:
        The address to connect to (the first one given).

    Raises:
        TargetRefusedError: an address of the host is refused; no retry is worth making.
        OSError: the name does not resolve now (``socket.gaierror``); a retry may succeed.
    """
    literal = _literal(target.host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        addresses = []
        for text in await resolver(target.host, target.port):
            try:
                addresses.append(ipaddress.ip_address(text))
            except ValueError as exc:
                raise TargetRefusedError(
                    f"{target.redacted}: the resolver answered {text[:60]!r}, not an address"
                ) from exc
        if not addresses:
            raise OSError(f"{target.host} has no address")
    # Any refused address refuses the host: a name that answers both a public and a
    # private address would otherwise reach the private one on some attempt.
    for address in addresses:
        reason = refusal(address, allow_private=allow_private)
        if reason is not None:
            allowable = not allow_private and refusal(address, allow_private=True) is None
            raise TargetRefusedError(
                f"{target.redacted}: {target.host} is {address}, a {reason} address"
                + (" (ROOMSCRIBE_WEBHOOK_ALLOW_PRIVATE is off)" if allowable else "")
            )
    return addresses[0]


def pinned_url(target: WebhookTarget, address: IPAddress) -> httpx.URL:
    """The target URL with its host replaced by the checked address.

    The request then goes to exactly that address; the caller sends ``Host`` and, for
    https, the TLS server name (``sni_hostname``) as the target's host, so virtual hosts
    and certificate checks still see the name.
    """
    return httpx.URL(target.url).copy_with(host=str(address))
