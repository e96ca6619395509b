"""TFE wire shape of a user (HCP Terraform "Account" and "Users" APIs)."""

from __future__ import annotations

from terrapod.jsonapi.documents import Resource, resource
from terrapod.users.models import User


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
