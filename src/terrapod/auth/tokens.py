"""Token material: generation, hashing and the short-lived principal cache.

A token is ``tpod.`` plus 32 random bytes (base64url). Only ``sha256(token)`` is stored, so a
lookup is one indexed equality query; 256 bits of entropy make a slow hash pointless here.
Resolved principals are cached for a few seconds so that a hot API path costs no query at
all; revoking a token or changing a membership clears the cache in this process, and the
short TTL bounds how long another replica may still accept a revoked token.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from terrapod.access.principal import Principal

TOKEN_PREFIX = "tpod."  # noqa: S105 - a marker for secret scanners, not a secret


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class _Entry:
    principal: Principal
    fresh_until: float


class PrincipalCache:
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, _Entry] = {}

    def get(self, token_hash: str) -> Principal | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry.fresh_until < time.monotonic():
            self._entries.pop(token_hash, None)
            return None
        expires = entry.principal.expires_at
        if expires is not None and expires <= datetime.now(UTC):
            self._entries.pop(token_hash, None)
            return None
        return entry.principal

    def put(self, token_hash: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[token_hash] = _Entry(principal, time.monotonic() + self.ttl)

    def clear(self) -> None:
        self._entries.clear()


class UsageRecorder:
    """Collects "token X was used at T" off the request path; flushed in batches."""

    def __init__(self) -> None:
        self._pending: dict[str, datetime] = {}

    def touch(self, token_id: str) -> None:
        self._pending[token_id] = datetime.now(UTC)

    def drain(self) -> dict[str, datetime]:
        pending, self._pending = self._pending, {}
        return pending
