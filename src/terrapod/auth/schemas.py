"""TFE wire shapes for API tokens (HCP Terraform "User Tokens" and "Organization Tokens")."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field, field_validator

from terrapod.auth.models import Token
from terrapod.jsonapi.documents import Resource, iso, ref, resource
from terrapod.jsonapi.models import Timestamp, WireModel, listing, single, to_one
from terrapod.jsonapi.parsing import Attributes


class TokenAttributes(Attributes):
    # The schema extras describe the validators below (and the service's "must be in the
    # future"); they change nothing at run time.
    description: str | None = Field(default=None, json_schema_extra={"maxLength": 255})
    expired_at: datetime | None = Field(
        default=None,
        json_schema_extra={"description": "RFC 3339 timestamp in the future; null: never"},
    )

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


# Member for member what serialize() sends.
class TokenResponseAttributes(WireModel):
    """An API token; ``token`` (the secret) is null except in the response that created it."""

    created_at: Timestamp
    last_used_at: Timestamp | None
    description: str | None
    token: str | None
    expired_at: Timestamp | None


class TokenRelationships(WireModel):
    created_by: to_one("users")  # type: ignore[valid-type]


TokenDocument = single(
    "authentication-tokens", TokenResponseAttributes, relationships=TokenRelationships
)
TokenList = listing(
    "authentication-tokens", TokenResponseAttributes, relationships=TokenRelationships
)


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
