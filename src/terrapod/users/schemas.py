"""TFE wire shape of a user (HCP Terraform "Account" and "Users" APIs)."""

from __future__ import annotations

from pydantic import Field

from terrapod.jsonapi.documents import Resource, resource
from terrapod.jsonapi.models import Omitted, WireModel, single
from terrapod.users.models import User


class TwoFactor(WireModel):
    enabled: bool
    verified: bool


class UserPermissions(WireModel):
    can_create_organizations: bool
    can_change_email: bool
    can_change_username: bool
    can_manage_user_tokens: bool


# Member for member what serialize() sends.
class UserResponseAttributes(WireModel):
    """A user; ``email`` and ``unconfirmed-email`` only for the user themselves and for
    platform administrators."""

    username: str
    is_service_account: bool
    is_site_admin: bool
    is_admin: bool
    avatar_url: str | None
    v2_only: bool
    two_factor: TwoFactor
    permissions: UserPermissions
    email: str | Omitted = None
    unconfirmed_email: str | None = None


class UserLinks(WireModel):
    self_: str = Field(alias="self")


UserDocument = single("users", UserResponseAttributes, links=UserLinks)


def serialize(user: User, *, include_email: bool) -> Resource:
    attributes = {
        "username": user.username,
        "is-service-account": user.is_service_account,
        "is-site-admin": user.is_admin,
        "is-admin": user.is_admin,
        "avatar-url": None,
        "v2-only": True,
        "two-factor": {"enabled": False, "verified": False},
        "permissions": {
            "can-create-organizations": user.is_admin,
            "can-change-email": False,
            "can-change-username": False,
            "can-manage-user-tokens": True,
        },
    }
    if include_email:
        attributes["email"] = user.email
        attributes["unconfirmed-email"] = None
    return resource(
        "users",
        user.id,
        attributes,
        links={"self": f"/api/v2/users/{user.id}"},
    )
