from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import SecretStr

from roomscribe.auth import (
    ApiPrincipal,
    ApiTokenVerifier,
    InternalClaims,
    issue_internal_token,
    verify_internal_token,
)
from roomscribe.errors import (
    AuthError,
    ConfigurationError,
    InvalidTokenError,
    PermissionDeniedError,
    TokenExpiredError,
)
from roomscribe.settings import CoreSettings

pytestmark = pytest.mark.unit

# 32+ bytes: PyJWT warns about shorter HS256 keys, and a real deployment uses long ones.
SECRET = "internal-test-secret-0123456789abcdef"
OTHER_SECRET = "someone-elses-secret-0123456789abcdef"
API_SECRET = "api-test-secret-0123456789abcdef-0123"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _hs256_by_hand(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    # PyJWT refuses to sign with a PEM key as HMAC secret, so an attacker's token is built here.
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _unsigned(payload: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}."


# Internal tokens ----------------------------------------------------------------------------
def test_internal_round_trip() -> None:
    token = issue_internal_token(SECRET, audience="stt", subject="agent", ttl_s=120)
    claims = verify_internal_token(SECRET, token, audience="stt")
    assert isinstance(claims, InternalClaims)
    assert (claims.subject, claims.audience) == ("agent", "stt")
    remaining = claims.expires_at.timestamp() - time.time()
    assert 115 < remaining <= 122


def test_internal_expired_token() -> None:
    token = issue_internal_token(
        SECRET, audience="stt", subject="agent", ttl_s=60, now=time.time() - 120
    )
    with pytest.raises(TokenExpiredError):
        verify_internal_token(SECRET, token, audience="stt")


def test_internal_leeway_accepts_small_clock_skew() -> None:
    token = issue_internal_token(
        SECRET, audience="stt", subject="agent", ttl_s=10, now=time.time() - 12
    )
    verify_internal_token(SECRET, token, audience="stt", leeway_s=5)
    with pytest.raises(TokenExpiredError):
        verify_internal_token(SECRET, token, audience="stt", leeway_s=0)


def test_internal_forged_with_other_secret() -> None:
    token = issue_internal_token(OTHER_SECRET, audience="stt", subject="agent")
    with pytest.raises(InvalidTokenError, match="signature"):
        verify_internal_token(SECRET, token, audience="stt")


def test_internal_wrong_audience() -> None:
    token = issue_internal_token(SECRET, audience="tts", subject="agent")
    with pytest.raises(InvalidTokenError, match="audience"):
        verify_internal_token(SECRET, token, audience="stt")


def test_internal_audience_list_refused() -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "agent", "aud": ["stt", "tts"], "iat": now, "exp": now + 60}, SECRET)
    with pytest.raises(InvalidTokenError):
        verify_internal_token(SECRET, token, audience="stt")


def test_internal_alg_none_refused() -> None:
    now = int(time.time())
    token = _unsigned({"sub": "agent", "aud": "stt", "iat": now, "exp": now + 60})
    with pytest.raises(InvalidTokenError, match="algorithm"):
        verify_internal_token(SECRET, token, audience="stt")


def test_internal_other_hmac_algorithm_refused() -> None:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "agent", "aud": "stt", "iat": now, "exp": now + 60},
        SECRET + SECRET,
        algorithm="HS512",
    )
    with pytest.raises(InvalidTokenError, match="algorithm"):
        verify_internal_token(SECRET + SECRET, token, audience="stt")


def test_internal_tampered_payload() -> None:
    token = issue_internal_token(SECRET, audience="stt", subject="agent")
    header, _, signature = token.split(".")
    forged = {"sub": "orchestrator", "aud": "stt", "exp": int(time.time()) + 60}
    tampered = f"{header}.{_b64(json.dumps(forged).encode())}.{signature}"
    with pytest.raises(InvalidTokenError):
        verify_internal_token(SECRET, tampered, audience="stt")


@pytest.mark.parametrize("ttl_s", [0, -1, 300.5, 3600])
def test_internal_ttl_out_of_range_refused_at_issue(ttl_s: float) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        issue_internal_token(SECRET, audience="stt", subject="agent", ttl_s=ttl_s)


def test_internal_longest_ttl_accepted() -> None:
    token = issue_internal_token(SECRET, audience="stt", subject="agent", ttl_s=300)
    verify_internal_token(SECRET, token, audience="stt", leeway_s=0)


def test_internal_long_lived_token_refused() -> None:
    now = int(time.time())
    with_iat = jwt.encode({"sub": "agent", "aud": "stt", "iat": now, "exp": now + 3600}, SECRET)
    without_iat = jwt.encode({"sub": "agent", "aud": "stt", "exp": now + 3600}, SECRET)
    backdated = jwt.encode(
        {"sub": "agent", "aud": "stt", "iat": now - 3000, "exp": now + 60}, SECRET
    )
    for token in (with_iat, without_iat, backdated):
        with pytest.raises(InvalidTokenError, match="5 minutes"):
            verify_internal_token(SECRET, token, audience="stt")


@pytest.mark.parametrize("missing", ["sub", "exp", "aud"])
def test_internal_missing_claim(missing: str) -> None:
    now = int(time.time())
    claims = {"sub": "agent", "aud": "stt", "iat": now, "exp": now + 60}
    del claims[missing]
    token = jwt.encode(claims, SECRET)
    with pytest.raises(InvalidTokenError, match=missing):
        verify_internal_token(SECRET, token, audience="stt")


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "Bearer x.y.z"])
def test_internal_malformed(garbage: str) -> None:
    with pytest.raises(InvalidTokenError):
        verify_internal_token(SECRET, garbage, audience="stt")


def test_errors_never_echo_the_token() -> None:
    token = issue_internal_token(OTHER_SECRET, audience="tts", subject="agent")
    for audience in ("stt", "tts"):
        with pytest.raises(AuthError) as info:
            verify_internal_token(SECRET, token, audience=audience)
        message = str(info.value)
        assert token not in message
        assert all(part not in message for part in token.split("."))


def test_empty_internal_secret_refused() -> None:
    with pytest.raises(ConfigurationError):
        issue_internal_token("", audience="stt", subject="agent")
    with pytest.raises(ConfigurationError):
        verify_internal_token("", "x.y.z", audience="stt")


# Principals ---------------------------------------------------------------------------------
def _api_token(claims: dict[str, Any], secret: str = API_SECRET) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, secret, algorithm="HS256")


def test_admin_principal_reads_everything() -> None:
    verifier = ApiTokenVerifier(hs256_secret=API_SECRET)
    principal = verifier.verify(_api_token({"sub": "ops", "roles": ["viewer", "admin"]}))
    assert principal.is_admin and principal.subject == "ops"
    assert principal.can_read("a") and principal.can_read("anything")
    principal.require_admin()
    principal.require_room("b")


def test_room_scoped_principal_reads_only_its_rooms() -> None:
    verifier = ApiTokenVerifier(hs256_secret=API_SECRET)
    principal = verifier.verify(_api_token({"sub": "viewer", "rooms": ["a"]}))
    assert principal == ApiPrincipal(subject="viewer", is_admin=False, rooms=frozenset({"a"}))
    assert principal.can_read("a")
    assert not principal.can_read("b")
    principal.require_room("a")
    with pytest.raises(PermissionDeniedError, match="'b'"):
        principal.require_room("b")
    with pytest.raises(PermissionDeniedError, match="admin"):
        principal.require_admin()


def test_principal_without_roles_or_rooms_reads_nothing() -> None:
    verifier = ApiTokenVerifier(hs256_secret=API_SECRET)
    principal = verifier.verify(_api_token({"sub": "nobody", "roles": ["viewer"]}))
    assert not principal.is_admin and principal.rooms == frozenset()
    assert not principal.can_read("a")


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "x", "roles": "admin"},
        {"sub": "x", "roles": [1]},
        {"sub": "x", "rooms": "a"},
        {"sub": "x", "rooms": {"a": True}},
        {"sub": "x", "rooms": ["a", None]},
    ],
)
def test_wrongly_typed_roles_or_rooms_refused(claims: dict[str, Any]) -> None:
    verifier = ApiTokenVerifier(hs256_secret=API_SECRET)
    with pytest.raises(InvalidTokenError, match="list of strings"):
        verifier.verify(_api_token(claims))


def test_principal_is_frozen() -> None:
    principal = ApiPrincipal(subject="viewer", rooms=frozenset({"a"}))
    with pytest.raises(ValueError, match="frozen"):
        principal.is_admin = True  # type: ignore[misc]


# API verifier, HS256 ------------------------------------------------------------------------
def test_api_hs256_rejections() -> None:
    verifier = ApiTokenVerifier(hs256_secret=API_SECRET)
    with pytest.raises(InvalidTokenError, match="signature"):
        verifier.verify(_api_token({"sub": "x", "rooms": ["a"]}, secret=OTHER_SECRET))
    with pytest.raises(TokenExpiredError):
        verifier.verify(_api_token({"sub": "x", "exp": int(time.time()) - 60}))
    with pytest.raises(InvalidTokenError, match="sub"):
        verifier.verify(_api_token({"rooms": ["a"]}))
    with pytest.raises(InvalidTokenError, match="exp"):
        verifier.verify(jwt.encode({"sub": "x", "roles": ["admin"]}, API_SECRET))
    with pytest.raises(InvalidTokenError, match="algorithm"):
        verifier.verify(_unsigned({"sub": "x", "roles": ["admin"], "exp": time.time() + 60}))


def test_api_audience_and_issuer_checked_when_configured() -> None:
    verifier = ApiTokenVerifier(hs256_secret=API_SECRET, audience="roomscribe", issuer="idp")
    ok = _api_token({"sub": "x", "rooms": ["a"], "aud": "roomscribe", "iss": "idp"})
    assert verifier.verify(ok).rooms == frozenset({"a"})
    with pytest.raises(InvalidTokenError, match="audience"):
        verifier.verify(_api_token({"sub": "x", "aud": "other", "iss": "idp"}))
    with pytest.raises(InvalidTokenError, match="issuer"):
        verifier.verify(_api_token({"sub": "x", "aud": "roomscribe", "iss": "evil"}))
    with pytest.raises(InvalidTokenError, match="aud"):
        verifier.verify(_api_token({"sub": "x", "iss": "idp"}))


def test_api_verifier_from_settings() -> None:
    settings = CoreSettings(api_jwt_secret=SecretStr(API_SECRET))
    verifier = ApiTokenVerifier.from_settings(settings)
    assert verifier.verify(_api_token({"sub": "x", "roles": ["admin"]})).is_admin
    with pytest.raises(ConfigurationError):
        ApiTokenVerifier.from_settings(CoreSettings(api_jwt_secret=None, api_jwks_url=None))


def test_verifier_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        ApiTokenVerifier()
    with pytest.raises(ConfigurationError, match="exactly one"):
        ApiTokenVerifier(hs256_secret=API_SECRET, jwks_url="http://127.0.0.1:1/jwks.json")
    with pytest.raises(ConfigurationError, match="empty"):
        ApiTokenVerifier(hs256_secret="")
    with pytest.raises(ConfigurationError, match="JWKS URL"):
        ApiTokenVerifier(jwks_url="file:///etc/passwd")


# API verifier, JWKS -------------------------------------------------------------------------
@dataclass
class JwksServer:
    """A JWKS served over real HTTP from a thread, counting how often it is fetched."""

    keys: list[dict[str, Any]]
    url: str = ""
    fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class SigningKeys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey

    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture(scope="module")
def signing_keys() -> SigningKeys:
    return SigningKeys(
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
    )


@pytest.fixture
def jwks_server(signing_keys: SigningKeys) -> Iterator[JwksServer]:
    rsa_jwk = RSAAlgorithm.to_jwk(signing_keys.rsa.public_key(), as_dict=True)
    ec_jwk = ECAlgorithm.to_jwk(signing_keys.ec.public_key(), as_dict=True)
    state = JwksServer(
        keys=[
            {**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS256"},
            {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES256"},
        ]
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.fetches += 1
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll interval lets shutdown() return quickly instead of after the default 0.5 s.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _rs256(signing_keys: SigningKeys, claims: dict[str, Any], kid: str = "rsa-1") -> str:
    payload = {"exp": int(time.time()) + 600, **claims}
    return jwt.encode(payload, signing_keys.rsa, algorithm="RS256", headers={"kid": kid})


def test_jwks_rs256_and_es256_round_trip_with_cached_keys(
    jwks_server: JwksServer, signing_keys: SigningKeys
) -> None:
    verifier = ApiTokenVerifier(jwks_url=jwks_server.url, audience="roomscribe")
    rs = _rs256(signing_keys, {"sub": "ops", "roles": ["admin"], "aud": "roomscribe"})
    assert verifier.verify(rs).is_admin
    es = jwt.encode(
        {"sub": "viewer", "rooms": ["a", "b"], "aud": "roomscribe", "exp": time.time() + 60},
        signing_keys.ec,
        algorithm="ES256",
        headers={"kid": "ec-1"},
    )
    assert verifier.verify(es).rooms == frozenset({"a", "b"})
    assert verifier.verify(rs).subject == "ops"
    assert jwks_server.fetches == 1


async def test_jwks_averify_runs_off_the_loop(
    jwks_server: JwksServer, signing_keys: SigningKeys
) -> None:
    verifier = ApiTokenVerifier(jwks_url=jwks_server.url)
    principal = await verifier.averify(_rs256(signing_keys, {"sub": "viewer", "rooms": ["a"]}))
    assert principal.can_read("a") and not principal.can_read("b")
    with pytest.raises(TokenExpiredError):
        await verifier.averify(_rs256(signing_keys, {"sub": "x", "exp": int(time.time()) - 60}))


def test_jwks_unknown_kid(jwks_server: JwksServer, signing_keys: SigningKeys) -> None:
    verifier = ApiTokenVerifier(jwks_url=jwks_server.url)
    with pytest.raises(InvalidTokenError, match="kid 'rotated-away'"):
        verifier.verify(_rs256(signing_keys, {"sub": "x"}, kid="rotated-away"))
    no_kid = jwt.encode({"sub": "x", "exp": time.time() + 60}, signing_keys.rsa, "RS256")
    with pytest.raises(InvalidTokenError, match="kid"):
        verifier.verify(no_kid)


def test_jwks_refuses_hs256_signed_with_the_public_key(
    jwks_server: JwksServer, signing_keys: SigningKeys
) -> None:
    verifier = ApiTokenVerifier(jwks_url=jwks_server.url)
    claims = {"sub": "attacker", "roles": ["admin"], "exp": int(time.time()) + 600}
    token = _hs256_by_hand({"alg": "HS256", "kid": "rsa-1"}, claims, signing_keys.rsa_public_pem())
    with pytest.raises(InvalidTokenError, match="HS256"):
        verifier.verify(token)
    # The refusal comes from the header alone: the attacker cannot even make us fetch keys.
    assert jwks_server.fetches == 0


def test_jwks_refuses_alg_none_and_mismatched_key(
    jwks_server: JwksServer, signing_keys: SigningKeys
) -> None:
    verifier = ApiTokenVerifier(jwks_url=jwks_server.url)
    with pytest.raises(InvalidTokenError, match="algorithm"):
        verifier.verify(_unsigned({"sub": "x", "roles": ["admin"], "exp": time.time() + 60}))
    # An ES256 token naming the RSA key's kid must not verify against that key.
    es = jwt.encode(
        {"sub": "x", "exp": time.time() + 60},
        signing_keys.ec,
        algorithm="ES256",
        headers={"kid": "rsa-1"},
    )
    with pytest.raises(InvalidTokenError, match="algorithm"):
        verifier.verify(es)


def test_jwks_forged_signature(jwks_server: JwksServer) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        {"sub": "x", "roles": ["admin"], "exp": time.time() + 60},
        other,
        algorithm="RS256",
        headers={"kid": "rsa-1"},
    )
    with pytest.raises(InvalidTokenError, match="signature"):
        ApiTokenVerifier(jwks_url=jwks_server.url).verify(token)


def test_jwks_unreachable_is_an_auth_error(signing_keys: SigningKeys) -> None:
    # Bind then close a socket: nothing listens on that port for the lifetime of this test.
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    verifier = ApiTokenVerifier(jwks_url=f"http://127.0.0.1:{port}/jwks.json")
    with pytest.raises(AuthError, match="could not fetch") as info:
        verifier.verify(_rs256(signing_keys, {"sub": "x"}))
    assert not isinstance(info.value, InvalidTokenError)


@pytest.mark.parametrize("exp", ["9999999999", "1e12", None, [1], {"n": 1}], ids=repr)
def test_time_claims_must_be_json_numbers(exp: Any) -> None:
    # PyJWT alone would take "9999999999" through int(): a token that never expires.
    payload = {"sub": "mallory", "exp": exp, "roles": ["admin"]}
    token = _hs256_by_hand({"alg": "HS256", "typ": "JWT"}, payload, API_SECRET.encode())
    with pytest.raises(InvalidTokenError):
        ApiTokenVerifier(hs256_secret=API_SECRET).verify(token)
    internal = {"sub": "svc", "aud": "stt", "exp": exp}
    token = _hs256_by_hand({"alg": "HS256", "typ": "JWT"}, internal, SECRET.encode())
    with pytest.raises(InvalidTokenError):
        verify_internal_token(SECRET, token, audience="stt")
