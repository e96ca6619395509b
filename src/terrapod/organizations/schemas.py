"""TFE wire shapes for organizations (HCP Terraform "Organizations" API)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import Field, create_model

from terrapod.access.principal import Principal
from terrapod.jsonapi.documents import Resource, iso, ref, resource
from terrapod.jsonapi.models import Omitted, Timestamp, WireModel, listing, single, to_one
from terrapod.jsonapi.parsing import Attributes
from terrapod.organizations.models import Organization
from terrapod.organizations.service import Entitlements, permissions_for


# The json_schema_extra values describe service.py's checks (and column widths) for the OpenAPI
# schema only; the service enforces them with TFE's messages. Attributes whose column is NOT
# NULL are offered without null: `str | Omitted` (SkipJsonSchema) still parses null, so the service
# can tell "absent" from "null" and refuse it.
class OrganizationAttributes(Attributes):
    """Organization settings a client may set (name and email are required to create one)."""

    name: str | Omitted = Field(
        default=None, json_schema_extra={"pattern": "^[A-Za-z0-9_-]{1,100}$"}
    )
    email: str | Omitted = Field(
        default=None, json_schema_extra={"pattern": r"^[^@\s]+@[^@\s]+$", "maxLength": 255}
    )
    session_timeout: int | None = Field(
        default=None, json_schema_extra={"minimum": 1, "maximum": 20160}
    )
    session_remember: int | None = Field(
        default=None, json_schema_extra={"minimum": 1, "maximum": 20160}
    )
    collaborator_auth_policy: str | Omitted = Field(
        default=None, json_schema_extra={"enum": ["password", "two_factor_mandatory"]}
    )
    cost_estimation_enabled: bool | Omitted = None
    default_execution_mode: str | Omitted = Field(
        default=None,
        json_schema_extra={
            "enum": ["remote", "local", "agent"],
            "description": "agent needs a default agent pool (the default-agent-pool "
            "relationship, or default-agent-pool-id)",
        },
    )
    # pytfe sends the pool this way; TFE documents the default-agent-pool relationship, which
    # the router also takes (api.py).
    default_agent_pool_id: str | None = Field(
        default=None,
        json_schema_extra={
            "description": "The organization's default agent pool (apool-…), with "
            "default-execution-mode agent; also accepted as the default-agent-pool relationship"
        },
    )
    allow_force_delete_workspaces: bool | Omitted = None
    assessments_enforced: bool | Omitted = None
    external_id: str | None = Field(default=None, json_schema_extra={"maxLength": 100})


# -- responses ------------------------------------------------------------------------------


# permissions_for() in service.py.
class OrganizationPermissions(WireModel):
    """What the caller may do with the organization."""

    can_update: bool
    can_destroy: bool
    can_access_via_teams: bool
    can_create_module: bool
    can_create_team: bool
    can_create_workspace: bool
    can_manage_users: bool
    can_manage_subscription: bool
    can_manage_sso: bool
    can_update_oauth: bool
    can_update_sentinel: bool
    can_update_ssh_keys: bool
    can_update_api_token: bool
    can_traverse: bool
    can_start_trial: bool
    can_update_agent_pools: bool
    can_manage_tags: bool
    can_manage_varsets: bool
    can_read_varsets: bool
    can_manage_public_providers: bool
    can_create_provider: bool
    can_manage_public_modules: bool
    can_manage_custom_providers: bool
    can_manage_run_tasks: bool
    can_read_run_tasks: bool
    can_create_project: bool


# Member for member what serialize() sends.
class OrganizationResponseAttributes(WireModel):
    """An organization."""

    name: str
    email: str
    external_id: str
    created_at: Timestamp
    session_timeout: int | None
    session_remember: int | None
    collaborator_auth_policy: Literal["password", "two_factor_mandatory"]
    cost_estimation_enabled: bool
    default_execution_mode: Literal["remote", "local", "agent"]
    allow_force_delete_workspaces: bool
    assessments_enforced: bool
    saml_enabled: bool
    two_factor_conformant: bool
    send_passing_statuses_for_untriggered_speculative_plans: bool
    speculative_plan_management_enabled: bool
    aggregated_commit_status_enabled: bool
    fair_run_queuing_enabled: bool
    is_unified: bool
    permissions: OrganizationPermissions


class OrganizationRelationships(WireModel):
    default_agent_pool: to_one("agent-pools")  # type: ignore[valid-type]
    entitlement_set: to_one("entitlement-sets")  # type: ignore[valid-type]
    subscription: to_one("subscriptions")  # type: ignore[valid-type]


class SelfLink(WireModel):
    self_: str = Field(alias="self")


OrganizationDocument = single(
    "organizations",
    OrganizationResponseAttributes,
    relationships=OrganizationRelationships,
    links=SelfLink,
)
OrganizationList = listing(
    "organizations",
    OrganizationResponseAttributes,
    relationships=OrganizationRelationships,
    links=SelfLink,
)

# One boolean per Entitlements field (so a new entitlement cannot be forgotten here), plus
# user-limit, which Terrapod does not enforce.
_ENTITLEMENT_FIELDS: dict[str, Any] = {
    f.name: (bool, ...) for f in dataclasses.fields(Entitlements)
}
EntitlementSetResponseAttributes = create_model(
    "EntitlementSetResponseAttributes",
    __base__=WireModel,
    user_limit=(int | None, ...),
    **_ENTITLEMENT_FIELDS,
)
EntitlementSetDocument = single(
    "entitlement-sets", EntitlementSetResponseAttributes, links=SelfLink
)


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
            "default-agent-pool": ref("agent-pools", org.default_agent_pool_id),
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
