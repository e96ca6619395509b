"""``terraform login``: the OAuth 2.0 authorization-code flow with PKCE that the CLI drives.

Terraform (a public client) opens ``/oauth/authorize`` in the user's browser with a
``redirect_uri`` on a loopback port from the ``login.v1`` discovery entry and an S256 code
challenge. The user signs in with their Terrapod username and password; the browser is sent
back to the loopback address with a one-time code, which Terraform exchanges at
``/oauth/token`` (proving the PKCE verifier) for an ordinary user API token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.principal import SYSTEM
from terrapod.auth.models import OAuthCode
from terrapod.auth.service import TokenService
from terrapod.errors import Invalid
from terrapod.users import service as users

CLIENT_ID = "terraform-cli"
LOGIN_PORTS = range(10000, 10011)  # the login.v1 "ports" range, inclusive
CODE_TTL = timedelta(minutes=2)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    state: str
    code_challenge: str


class OAuthError(Exception):
    """An OAuth protocol error (RFC 6749 5.2): ``error`` is the standard code."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def parse_authorization_request(params: dict[str, str]) -> AuthorizationRequest:
    """Validate what Terraform puts in the authorize URL; Invalid names the bad parameter."""
    if params.get("response_type") != "code":
        raise Invalid("response_type must be code")
    if params.get("client_id") != CLIENT_ID:
        raise Invalid(f"client_id must be {CLIENT_ID}")
    redirect_uri = params.get("redirect_uri", "")
    parts = urlsplit(redirect_uri)
    if (
        parts.scheme != "http"
        or parts.hostname not in LOOPBACK_HOSTS
        or parts.port not in LOGIN_PORTS
    ):
        raise Invalid(
            "redirect_uri must be http://localhost:<port>/… with a port from 10000 to 10010"
        )
    if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
        raise Invalid("a PKCE code_challenge with code_challenge_method S256 is required")
    return AuthorizationRequest(
        client_id=CLIENT_ID,
        redirect_uri=redirect_uri,
        state=params.get("state", ""),
        code_challenge=params["code_challenge"],
    )


def sign_request(key: bytes, req: AuthorizationRequest) -> str:
    """A MAC over the request the login form carries, so a posted form cannot redirect a
    code to an address the authorize URL did not name."""
    payload = "\n".join((req.client_id, req.redirect_uri, req.state, req.code_challenge))
    return hmac.new(key, payload.encode(), "sha256").hexdigest()


def verify_request(key: bytes, req: AuthorizationRequest, mac: str) -> bool:
    return hmac.compare_digest(sign_request(key, req), mac)


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


async def issue_code(
    session: AsyncSession, req: AuthorizationRequest, username: str, password: str
) -> str | None:
    """A one-time code for the user, or None when the credentials are wrong."""
    user = await users.authenticate(session, username, password)
    if user is None:
        return None
    code = secrets.token_urlsafe(32)
    session.add(
        OAuthCode(
            code_hash=_hash(code),
            user_id=user.id,
            client_id=req.client_id,
            redirect_uri=req.redirect_uri,
            code_challenge=req.code_challenge,
            expires_at=datetime.now(UTC) + CODE_TTL,
        )
    )
    await session.flush()
    return code


def _pkce_matches(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return hmac.compare_digest(expected, challenge)


async def exchange_code(session: AsyncSession, tokens: TokenService, form: dict[str, str]) -> str:
    """Redeem a code for a new API token; raises OAuthError as RFC 6749 describes."""
    if form.get("grant_type") != "authorization_code":
        raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code")
    code = form.get("code", "")
    row = await session.get(OAuthCode, _hash(code)) if code else None
    if row is None or row.used or row.expires_at <= datetime.now(UTC):
        raise OAuthError("invalid_grant", "the authorization code is unknown, used or expired")
    if form.get("client_id") != row.client_id or form.get("redirect_uri") != row.redirect_uri:
        raise OAuthError("invalid_grant", "client_id or redirect_uri differ from the request")
    if not _pkce_matches(form.get("code_verifier", ""), row.code_challenge):
        raise OAuthError("invalid_grant", "code_verifier does not match the code challenge")
    # One redemption only, even when two requests race for the same code.
    claimed = await session.execute(
        update(OAuthCode)
        .where(OAuthCode.code_hash == row.code_hash, OAuthCode.used.is_(False))
        .values(used=True)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise OAuthError("invalid_grant", "the authorization code was already used")
    issued = await tokens.create_user_token(
        session, SYSTEM, row.user_id, description="terraform login"
    )
    issued.token.created_by_id = row.user_id  # the user created it, by signing in
    return issued.plaintext
