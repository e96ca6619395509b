"""TFE wire shapes for organizations (HCP Terraform "Organizations" API)."""

from __future__ import annotations

from typing import Any

from terrapod.access.principal import Principal
from terrapod.jsonapi.documents import Resource, iso, ref, resource
from terrapod.jsonapi.parsing import Attributes
from terrapod.organizations.models import Organization
from terrapod.organizations.service import Entitlements, permissions_for


class OrganizationAttributes(Attributes):
    name: str | None = None
    email: str | None = None
    session_timeout: int | None = None
    session_remember: int | None = None
    collaborator_auth_policy: str | None = None
    cost_estimation_enabled: bool | None = None
    default_execution_mode: str | None = None
    allow_force_delete_workspaces: bool | None = None
    assessments_enforced: bool | None = None
    external_id: str | None = None


def serialize(org: Organization, principal: Principal) -> Resource:
    attributes: dict[str, Any] = {
        "name": org.name,
        "email": org.email,
        "external-id": org.external_id or org.id,
        "created-at": iso(org.created_at),
        "session-timeout": org.session_timeout,
        "session-remember": org.session_remember,
        "collaborator-auth-policy": org.collaborator_auth_policy,
        "cost-estimation-enabled": org.cost_estimation_enabled,
        "default-execution-mode": org.default_execution_mode,
        "allow-force-delete-workspaces": org.allow_force_delete_workspaces,
        "assessments-enforced": org.assessments_enforced,
        "saml-enabled": False,
        "two-factor-conformant": True,
        "send-passing-statuses-for-untriggered-speculative-plans": False,
        "speculative-plan-management-enabled": True,
        "aggregated-commit-status-enabled": False,
        "fair-run-queuing-enabled": False,
        "is-unified": False,
        "permissions": permissions_for(principal, org),
    }
    return resource(
        "organizations",
        org.name,
        attributes,
        relationships={
            "default-agent-pool": ref("agent-pools", None),
            "entitlement-set": ref("entitlement-sets", org.id),
            "subscription": ref("subscriptions", None),
        },
        links={"self": f"/api/v2/organizations/{org.name}"},
    )


def serialize_entitlements(org: Organization, entitlements: Entitlements) -> Resource:
    attributes = {name.replace("_", "-"): value for name, value in entitlements.__dict__.items()}
    attributes["user-limit"] = None
    return resource(
        "entitlement-sets",
        org.id,
        attributes,
        links={"self": f"/api/v2/entitlement-sets/{org.id}"},
    )
