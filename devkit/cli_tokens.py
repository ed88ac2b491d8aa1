"""``python -m devkit token``: mint a bearer token for the public REST API.

Signed with ``ROOMSCRIBE_API_JWT_SECRET`` (read as the services read it: the environment,
then ``.env``), in the form :mod:`roomscribe.auth` verifies: ``--admin`` for every room, or
``--room R`` (repeatable) for those rooms, ``aud``/``iss`` when the deployment requires them.
The token alone goes to stdout (``export TOKEN=$(python -m devkit token --admin)``); what it
grants and until when goes to stderr.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime

from pydantic import ValidationError

from devkit.api_tokens import mint_api_token
from devkit.cli_common import Commands, refuse
from roomscribe.auth import ApiTokenVerifier
from roomscribe.errors import AuthError, ConfigurationError
from roomscribe.settings import CoreSettings

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest lifetime accepted: a token that outlives this is one nobody remembers issuing.
MAX_TTL_S = 365 * 86400


def parse_ttl(value: str) -> float:
    """``--ttl``: seconds, or a number with ``s``, ``m``, ``h`` or ``d`` (``90m``, ``7d``)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a lifetime (e.g. 3600, 90m, 12h, 7d)")
    seconds = float(match[1]) * _UNITS[match[2]]
    if not 0 < seconds <= MAX_TTL_S:
        raise argparse.ArgumentTypeError(f"{value!r}: give more than 0 s and at most 365d")
    return seconds


def add_command(commands: Commands) -> None:
    """Register ``token``."""
    parser = commands.add_parser(
        "token",
        help="mint a REST API token from ROOMSCRIBE_API_JWT_SECRET",
        description=(
            "Print a bearer token for the public REST API, signed with "
            "ROOMSCRIBE_API_JWT_SECRET (environment or .env): --admin reads every room, "
            "--room R (repeatable) only those rooms. ROOMSCRIBE_API_JWT_AUDIENCE and "
            "_ISSUER, when set, go into it. The token alone goes to stdout."
        ),
    )
    grant = parser.add_mutually_exclusive_group(required=True)
    grant.add_argument("--admin", action="store_true", help="grant every room (role admin)")
    grant.add_argument(
        "--room", action="append", metavar="ROOM", help="grant this room (repeat for more)"
    )
    parser.add_argument(
        "--ttl",
        type=parse_ttl,
        default=3600.0,
        metavar="TIME",
        help="lifetime: seconds, or 90m, 12h, 7d (default 1h, at most 365d)",
    )
    parser.add_argument(
        "--sub", default="devkit", metavar="NAME", help="the token's subject (%(default)s)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the token; the exit status."""
    rooms: list[str] = [r.strip() for r in args.room or []]
    if any(not room for room in rooms):
        return refuse("token", "--room needs a room name")
    if not args.sub.strip():
        return refuse("token", "--sub needs a name")
    try:
        settings = CoreSettings()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        return refuse("token", f"setting {where}: {err['msg']}")
    except ConfigurationError as exc:
        return refuse("token", str(exc))
    if settings.api_jwt_secret is None:
        if settings.api_jwks_url:
            return refuse(
                "token",
                "the API verifies tokens against ROOMSCRIBE_API_JWKS_URL: get them from that "
                "identity provider",
            )
        return refuse(
            "token",
            "ROOMSCRIBE_API_JWT_SECRET is not set (the secret the API verifies tokens with)",
        )
    token = mint_api_token(
        settings.api_jwt_secret.get_secret_value(),
        subject=args.sub.strip(),
        admin=args.admin,
        rooms=rooms,
        ttl_s=args.ttl,
        audience=settings.api_jwt_audience,
        issuer=settings.api_jwt_issuer,
    )
    try:
        # What the API will do with it: a settings mix-up (both a secret and a JWKS URL)
        # shows here, not as a 401 later.
        principal = ApiTokenVerifier.from_settings(settings).verify(token)
    except (ConfigurationError, AuthError) as exc:
        return refuse("token", str(exc))
    until = datetime.fromtimestamp(int(datetime.now(UTC).timestamp() + args.ttl), UTC).isoformat(
        timespec="seconds"
    )
    grants = "every room (admin)" if principal.is_admin else "rooms " + ", ".join(rooms)
    print(token)
    print(f"token for {principal.subject}: {grants}; expires {until}", file=sys.stderr)
    return 0
