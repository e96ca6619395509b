"""TFE wire shapes for API tokens (HCP Terraform "User Tokens" and "Organization Tokens")."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import field_validator

from terrapod.auth.models import Token
from terrapod.jsonapi.documents import Resource, iso, ref, resource
from terrapod.jsonapi.parsing import Attributes


class TokenAttributes(Attributes):
    description: str | None = None
    expired_at: datetime | None = None

    @field_validator("expired_at", mode="before")
    @classmethod
    def _parse_time(cls, value: object) -> object:
        # strict mode refuses strings for datetimes; TFE clients send RFC 3339 strings.
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("must be an RFC 3339 timestamp") from None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return value

    @field_validator("description")
    @classmethod
    def _short(cls, value: str | None) -> str | None:
        if value is not None and len(value) > 255:
            raise ValueError("must be at most 255 characters")
        return value


def serialize(token: Token, *, plaintext: str | None = None) -> Resource:
    """``token`` holds the secret only in the response that created it."""
    return resource(
        "authentication-tokens",
        token.id,
        {
            "created-at": iso(token.created_at),
            "last-used-at": iso(token.last_used_at),
            "description": token.description,
            "token": plaintext,
            "expired-at": iso(token.expired_at),
        },
        relationships={"created-by": ref("users", token.created_by_id)},
    )
