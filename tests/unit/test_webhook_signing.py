"""Roomscribe-Signature: Stripe's scheme, made and verified; forged and expired ones refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from orchestrator_service.outbound import (
    ExpiredSignatureError,
    ForgedSignatureError,
    SignatureError,
    sign,
    signature_header,
    verify_signature,
)

pytestmark = pytest.mark.unit

SECRET = "webhook-test-secret-0123456789abcdefgh"
BODY = b'{"id":"evt_1","type":"room.completed","room":"standup","data":{}}'
T = 1_795_251_900


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # Computed independently: any receiver following Stripe's recipe gets the same.
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, T) == expected
    assert signature_header(SECRET, BODY, timestamp=T) == f"t={T},v1={expected}"


def test_a_genuine_signature_verifies_and_gives_its_timestamp() -> None:
    header = signature_header(SECRET, BODY, timestamp=T)
    assert verify_signature(SECRET, BODY, header, now=T + 5) == T
    assert verify_signature(SECRET.encode(), BODY, header, now=T) == T
    # Without a pinned time it is checked against the clock.
    assert verify_signature(SECRET, BODY, signature_header(SECRET, BODY)) > T


@pytest.mark.parametrize(
    "case",
    ["wrong-secret", "tampered-body", "retimed", "missing", "empty-v1", "truncated"],
)
def test_forged_signatures_are_refused(case: str) -> None:
    header = signature_header(SECRET, BODY, timestamp=T)
    body = BODY
    if case == "wrong-secret":
        header = signature_header("another-secret-0123456789abcdefghijkl", BODY, timestamp=T)
    elif case == "tampered-body":
        body = BODY.replace(b"standup", b"standuq")
    elif case == "retimed":
        # A replayed capture with a fresh timestamp: the old v1 does not cover it.
        header = header.replace(f"t={T}", f"t={T + 600}")
    elif case == "missing":
        header = ""
    elif case == "empty-v1":
        header = f"t={T},v1="
    elif case == "truncated":
        header = header[:-1]
    with pytest.raises(ForgedSignatureError):
        verify_signature(SECRET, body, header, now=T)


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "v1=abc",
        "t=,v1=abc",
        "t=12x4,v1=abc",
        "t=-5,v1=abc",
        f"t={T},t={T},v1=abc",
        f"t={T}",
        f"t={T},v0=abc",
        f"t={T},v1=\u00e9\u00e9",
        f"t={T}," + "v1=ab," * 2000,
    ],
)
def test_malformed_headers_are_refused_as_forged(header: str) -> None:
    with pytest.raises(ForgedSignatureError):
        verify_signature(SECRET, BODY, header, now=T)


def test_a_missing_header_is_refused() -> None:
    with pytest.raises(ForgedSignatureError, match="missing"):
        verify_signature(SECRET, BODY, None, now=T)


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_signatures_outside_the_tolerance_are_expired(offset: int) -> None:
    header = signature_header(SECRET, BODY, timestamp=T)
    with pytest.raises(ExpiredSignatureError):
        verify_signature(SECRET, BODY, header, now=T + offset)
    # Both kinds are SignatureErrors: one except clause serves a receiver.
    with pytest.raises(SignatureError):
        verify_signature(SECRET, BODY, header, now=T + offset)


def test_the_tolerance_is_the_callers() -> None:
    header = signature_header(SECRET, BODY, timestamp=T)
    assert verify_signature(SECRET, BODY, header, tolerance_s=3600, now=T + 3000) == T
    with pytest.raises(ExpiredSignatureError):
        verify_signature(SECRET, BODY, header, tolerance_s=10, now=T + 11)


def test_a_forged_signature_is_forged_even_when_also_expired() -> None:
    header = signature_header("another-secret-0123456789abcdefghijkl", BODY, timestamp=T)
    with pytest.raises(ForgedSignatureError):
        verify_signature(SECRET, BODY, header, now=T + 86_400)


def test_one_matching_v1_among_several_is_enough_and_other_schemes_are_ignored() -> None:
    # A secret being rotated: the sender signs with both, the receiver knows one.
    old = sign("old-secret-0123456789abcdefghijklmnop", BODY, T)
    new = sign(SECRET, BODY, T)
    header = f"t={T}, v0=deadbeef, v1={old}, v1={new}"
    assert verify_signature(SECRET, BODY, header, now=T) == T


def test_an_empty_secret_signs_and_verifies_nothing() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign("", BODY, T)
    with pytest.raises(ValueError, match="empty"):
        verify_signature(b"", BODY, f"t={T},v1=00", now=T)
