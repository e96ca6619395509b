"""Signed object URLs: the only credential terraform and go-tfe present for uploads, log reads
and archive downloads (DESIGN.md, "Signed URLs").

The signature lives in the URL **path** (``/objects/<token>``), never in the query string:
go-tfe's log reader replaces the query of the URL it is given with ``?limit=N&offset=M``, and
terraform PUTs state to upload URLs without an Authorization header.

A token is ``base64url(payload) "." base64url(mac)`` without padding, where ``payload`` is
``"<METHOD>\\n<expiry unix seconds>\\n<key>"`` and ``mac`` is HMAC-SHA256 over a version tag
and the payload. It uses only ``[A-Za-z0-9_.-]``: safe in a path segment, never containing
``/`` or ``?``. A token is bound to one key, one HTTP method and one expiry; changing any of
them invalidates the MAC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time

from terrapod.storage.base import InvalidKey
from terrapod.storage.keys import validate_key

# Mount point of terrapod.storage.api.router; include that router without a prefix.
OBJECTS_PATH = "/objects"

_VERSION = b"terrapod-signed-url-v1\n"
_METHODS = frozenset({"GET", "PUT"})
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAC_BYTES = hashlib.sha256().digest_size
# An upper bound on token size: a 1 KiB key is about 1.4 KiB of base64. Anything longer is
# rejected before decoding so a hostile path cannot make us decode megabytes.
_MAX_TOKEN_CHARS = 4096


class SignedUrlError(Exception):
    """A signed URL was refused."""


class SignatureInvalid(SignedUrlError):
    """Malformed token, wrong MAC, or a token signed for another HTTP method."""

    def __init__(self, detail: str = "invalid signature") -> None:
        super().__init__(detail)


class SignatureExpired(SignedUrlError):
    """The token was genuine but its expiry has passed."""

    def __init__(self, detail: str = "signed URL expired") -> None:
        super().__init__(detail)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise SignatureInvalid()
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid() from exc
    # Only the canonical spelling is accepted: the decoder ignores unused trailing bits, and
    # a token should have exactly one form.
    if _b64encode(data) != text:
        raise SignatureInvalid()
    return data


class UrlSigner:
    """Issues and checks signed object tokens.

    ``secret`` should be at least 32 random bytes (see :func:`terrapod.keys.derive_key`);
    ``default_ttl`` is the lifetime in seconds of a token signed without an explicit ``ttl``.
    """

    def __init__(self, secret: bytes, default_ttl: int) -> None:
        if len(secret) < 16:
            raise ValueError("the signing secret must be at least 16 bytes")
        if default_ttl <= 0:
            raise ValueError("default_ttl must be positive")
        self._secret = secret
        self.default_ttl = default_ttl

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, _VERSION + payload, hashlib.sha256).digest()

    def sign(
        self, key: str, method: str, *, ttl: int | None = None, now: float | None = None
    ) -> str:
        """A token allowing ``method`` (GET or PUT) on ``key`` for ``ttl`` seconds from
        ``now`` (default: the current time and ``default_ttl``)."""
        method = method.upper()
        if method not in _METHODS:
            raise ValueError(f"cannot sign for method {method!r}")
        validate_key(key)
        lifetime = self.default_ttl if ttl is None else ttl
        if lifetime <= 0:
            raise ValueError("ttl must be positive")
        issued = time.time() if now is None else now
        expires = math.ceil(issued + lifetime)
        payload = f"{method}\n{expires}\n{key}".encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def verify(self, token: str, method: str, *, now: float | None = None) -> str:
        """The key ``token`` grants ``method`` on.

        Raises :class:`SignatureInvalid` for a malformed or altered token or one signed for
        another method, and :class:`SignatureExpired` for a genuine token whose expiry has
        passed (checked after the MAC, so an expired forgery is still "invalid").
        """
        if len(token) > _MAX_TOKEN_CHARS or token.count(".") != 1:
            raise SignatureInvalid()
        payload_b64, mac_b64 = token.split(".")
        payload = _b64decode(payload_b64)
        mac = _b64decode(mac_b64)
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise SignatureInvalid()
        # The MAC is genuine, so the payload is one we wrote; parse it defensively anyway.
        try:
            signed_method, expires_text, key = payload.decode().split("\n", 2)
            expires = int(expires_text)
            validate_key(key)
        except (UnicodeDecodeError, ValueError, InvalidKey) as exc:
            raise SignatureInvalid() from exc
        if not hmac.compare_digest(signed_method, method.upper()):
            raise SignatureInvalid()
        current = time.time() if now is None else now
        if current >= expires:
            raise SignatureExpired()
        return key

    def signed_path(self, key: str, method: str, ttl: int | None = None) -> str:
        """The absolute path of a signed URL, e.g. ``/objects/<token>``."""
        return f"{OBJECTS_PATH}/{self.sign(key, method, ttl=ttl)}"

    def signed_url(self, base_url: str, key: str, method: str, ttl: int | None = None) -> str:
        """``base_url`` (scheme and host, e.g. ``https://terrapod.example.com``) joined with
        :meth:`signed_path`; clients such as go-tfe need absolute upload URLs."""
        return base_url.rstrip("/") + self.signed_path(key, method, ttl)
