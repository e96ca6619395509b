"""TFE wire shapes for notification configurations (seed 003, "Notification Configurations";
HCP Terraform's Notification Configurations API; go-tfe notification_configuration.go).

Quirks kept here: the token is write-only, so responses carry ``has-token`` (a Terrapod
addition) and never ``token``; ``delivery-responses`` keep TFE's string ``code`` and
``successful`` ("true"/"false") that go-tfe and pytfe decode as strings; the workspace is the
``subscribable`` relationship, and ``users`` (TFE's email recipients among the organization's
users) is always empty because Terrapod mails ``email-addresses`` only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from terrapod.jsonapi.documents import Resource, iso, resource
from terrapod.jsonapi.models import (
    Omitted,
    Timestamp,
    WireModel,
    listing,
    single,
    to_many,
)
from terrapod.jsonapi.parsing import Attributes
from terrapod.notifications.models import DESTINATION_TYPES, NotificationConfiguration
from terrapod.notifications.payloads import TRIGGERS
from terrapod.notifications.service import (
    MAX_EMAIL_ADDRESSES,
    MAX_NAME_LENGTH,
    MAX_TOKEN_LENGTH,
    MAX_URL_LENGTH,
)


class NotificationConfigurationAttributes(Attributes):
    """Attributes a client may send (name and destination-type are required to create)."""

    name: str | Omitted = Field(default=None, json_schema_extra={"maxLength": MAX_NAME_LENGTH})
    destination_type: str | Omitted = Field(
        default=None, json_schema_extra={"enum": list(DESTINATION_TYPES)}
    )
    url: str | None = Field(
        default=None,
        json_schema_extra={
            "maxLength": MAX_URL_LENGTH,
            "description": "Absolute http(s) URL (generic and slack); its host must not be a "
            "private address unless the server allows it",
        },
    )
    token: str | None = Field(
        default=None,
        json_schema_extra={
            "maxLength": MAX_TOKEN_LENGTH,
            "description": "Write-only HMAC-SHA512 key for X-TFE-Notification-Signature "
            "(generic only); null or empty removes it",
        },
    )
    enabled: bool | Omitted = None
    triggers: list[str] | Omitted = Field(
        default=None, json_schema_extra={"items": {"enum": list(TRIGGERS)}}
    )
    email_addresses: list[str] | Omitted = Field(
        default=None, json_schema_extra={"maxItems": MAX_EMAIL_ADDRESSES}
    )


def domain_values(attrs: NotificationConfigurationAttributes) -> dict[str, Any]:
    """The attributes the client sent, by domain name (null included, absent left out)."""
    return attrs.model_dump(exclude_unset=True)


# -- responses ------------------------------------------------------------------------------


class DeliveryResponse(WireModel):
    url: str
    body: str
    code: str | None
    headers: dict[str, list[str]]
    sent_at: Timestamp
    successful: Literal["true", "false"]


class NotificationConfigurationResponseAttributes(WireModel):
    name: str
    destination_type: Literal["generic", "slack", "email"]
    url: str | None
    enabled: bool
    has_token: bool
    triggers: list[str]
    email_addresses: list[str]
    delivery_responses: list[DeliveryResponse]
    created_at: Timestamp
    updated_at: Timestamp


class WorkspaceIdentifier(WireModel):
    type: Literal["workspaces"]
    id: str


class SubscribableRelationship(WireModel):
    data: WorkspaceIdentifier


class NotificationConfigurationRelationships(WireModel):
    subscribable: SubscribableRelationship
    users: to_many("users")  # type: ignore[valid-type]


class NotificationConfigurationLinks(WireModel):
    self_: str = Field(alias="self")


NotificationConfigurationDocument = single(
    "notification-configurations",
    NotificationConfigurationResponseAttributes,
    relationships=NotificationConfigurationRelationships,
    links=NotificationConfigurationLinks,
)
NotificationConfigurationList = listing(
    "notification-configurations",
    NotificationConfigurationResponseAttributes,
    relationships=NotificationConfigurationRelationships,
    links=NotificationConfigurationLinks,
)


def _response(entry: dict[str, Any]) -> dict[str, Any]:
    code = entry.get("code")
    return {
        "url": entry.get("url") or "",
        "body": entry.get("body") or "",
        "code": None if code is None else str(code),
        "headers": entry.get("headers") or {},
        "sent-at": entry.get("sent_at"),
        "successful": "true" if entry.get("successful") else "false",
    }


def serialize(nc: NotificationConfiguration) -> Resource:
    return resource(
        "notification-configurations",
        nc.id,
        {
            "name": nc.name,
            "destination-type": nc.destination_type,
            "url": nc.url,
            "enabled": nc.enabled,
            # Never the token, nor its ciphertext.
            "has-token": nc.token_encrypted is not None,
            "triggers": nc.triggers,
            "email-addresses": list(nc.email_addresses or []),
            "delivery-responses": [_response(e) for e in nc.delivery_responses or []],
            "created-at": iso(nc.created_at),
            "updated-at": iso(nc.updated_at),
        },
        relationships={
            "subscribable": {"data": {"type": "workspaces", "id": nc.workspace_id}},
            "users": {"data": []},
        },
        links={"self": f"/api/v2/notification-configurations/{nc.id}"},
    )
