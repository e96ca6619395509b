"""Organization rules: who may see, create, change and delete organizations."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize, can
from terrapod.access.principal import Principal
from terrapod.db.hooks import AgentPoolUse, fire
from terrapod.db.ids import new_id
from terrapod.errors import Conflict, Invalid, NotFound
from terrapod.organizations.models import Membership, Organization
from terrapod.users.service import validate_email

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
# "agent" goes with a default agent pool (default_agent_pool_id), which new workspaces get.
EXECUTION_MODES = ("remote", "local", "agent")
# The organization's default-agent-pool is TFE's relationship of that name; pytfe sends it as
# the default-agent-pool-id attribute, which the router also accepts.
POOL_POINTER = "/data/relationships/default-agent-pool"
AUTH_POLICIES = ("password", "two_factor_mandatory")

# The organization attributes a caller may set (domain names, not wire names).
SETTABLE = (
    "name",
    "email",
    "session_timeout",
    "session_remember",
    "collaborator_auth_policy",
    "cost_estimation_enabled",
    "default_execution_mode",
    "allow_force_delete_workspaces",
    "assessments_enforced",
    "external_id",
    "default_agent_pool_id",
)


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise Invalid(
            "name must be 1-100 characters of letters, digits, '-' and '_'",
            pointer="/data/attributes/name",
        )
    return name


# Settable attributes whose columns are NOT NULL: an explicit null is refused by name.
NOT_NULL = (
    "name",
    "email",
    "collaborator_auth_policy",
    "cost_estimation_enabled",
    "default_execution_mode",
    "allow_force_delete_workspaces",
    "assessments_enforced",
)


def _refuse_nulls(values: dict[str, Any]) -> None:
    for key in NOT_NULL:
        if key in values and values[key] is None:
            attribute = key.replace("_", "-")
            raise Invalid(f"{attribute} cannot be null", pointer=f"/data/attributes/{attribute}")


def _validate(values: dict[str, Any]) -> None:
    if "name" in values:
        validate_name(values["name"])
    if "email" in values:
        validate_email(values["email"])
    mode = values.get("default_execution_mode")
    if mode is not None and mode not in EXECUTION_MODES:
        raise Invalid(
            f"default-execution-mode must be one of {', '.join(EXECUTION_MODES)}",
            pointer="/data/attributes/default-execution-mode",
        )
    policy = values.get("collaborator_auth_policy")
    if policy is not None and policy not in AUTH_POLICIES:
        raise Invalid(
            f"collaborator-auth-policy must be one of {', '.join(AUTH_POLICIES)}",
            pointer="/data/attributes/collaborator-auth-policy",
        )
    for minutes in ("session_timeout", "session_remember"):
        value = values.get(minutes)
        if value is not None and not 1 <= value <= 20160:
            raise Invalid(
                f"{minutes.replace('_', '-')} must be between 1 and 20160 minutes",
                pointer=f"/data/attributes/{minutes.replace('_', '-')}",
            )


async def _settle_default_agent_pool(
    session: AsyncSession, org: Organization, values: dict[str, Any], *, new: bool = False
) -> None:
    """Default execution mode ``agent`` needs a default agent pool: an organization-scoped
    pool of this organization (the agent pools domain answers through the ``agent_pool_use``
    hook, so this domain never imports it). Any other mode has none, so switching away from
    ``agent`` clears it. ``values`` gets the pool to store (``default_agent_pool_id``) when
    it changes. ``new``: ``org`` is being created (its columns are not set yet)."""
    current_mode = None if new else org.default_execution_mode
    current_pool = None if new else org.default_agent_pool_id
    mode = values.get("default_execution_mode") or current_mode or "remote"
    sent = "default_agent_pool_id" in values
    if mode != "agent":
        if values.get("default_agent_pool_id") is not None:
            raise Invalid(
                "default-agent-pool needs default-execution-mode agent (the organization's "
                f"is {mode}); set default-execution-mode to agent, or leave the pool out",
                pointer=POOL_POINTER,
            )
        if current_pool is not None or sent:
            values["default_agent_pool_id"] = None
        return
    pool = values["default_agent_pool_id"] if sent else current_pool
    if not pool:
        raise Invalid(
            "default-execution-mode agent needs a default-agent-pool: set the "
            "default-agent-pool relationship (or default-agent-pool-id) to one of the "
            "organization's agent pools",
            pointer=POOL_POINTER,
        )
    if pool == current_pool and current_mode == "agent":
        return
    use = AgentPoolUse(
        organization_id=org.id, workspace_id=None, pool_id=pool, organization_default=True
    )
    await fire(session, "agent_pool_use", use)
    if not use.allowed:
        raise Invalid(
            use.reason or f"agent pool {pool} cannot be used (agent pools are not available)",
            pointer=POOL_POINTER,
        )
    values["default_agent_pool_id"] = pool


@dataclass(frozen=True)
class Entitlements:
    """What Terrapod really does for an organization; every flag is backed by a feature.

    The terraform CLI reads ``operations`` to decide between remote and local execution:
    Terrapod runs plans and applies on its agents, so it is True, and each workspace's
    ``execution-mode`` (remote or local) decides. ``state-storage``: workspaces keep their
    state versions in Terrapod. ``run-tasks``: organizations' run tasks run at the pre-plan,
    post-plan and pre-apply stages (terrapod.runtasks). ``agents``: agent pools, their
    tokens and ``execution-mode: agent`` workspaces (terrapod.agentpools).
    """

    operations: bool = True
    state_storage: bool = True
    private_module_registry: bool = False
    private_run_tasks: bool = False
    run_tasks: bool = True
    sentinel: bool = False
    policy_enforcement: bool = False
    cost_estimation: bool = False
    teams: bool = False
    vcs_integrations: bool = False
    agents: bool = True
    audit_logging: bool = False
    sso: bool = False
    configuration_designer: bool = False
    usage_reporting: bool = False
    self_serve_billing: bool = False
    global_run_tasks: bool = False
    private_policy_agents: bool = False
    private_vcs: bool = False
    waypoint_templates_and_addons: bool = False


# Later domains switch their flags on as they land (see the runs, state and agent packages).
ENTITLEMENTS = Entitlements()


async def get_by_name(session: AsyncSession, principal: Principal, name: str) -> Organization:
    org = (
        await session.execute(select(Organization).where(Organization.name == name))
    ).scalar_one_or_none()
    if org is None:
        raise NotFound("organization not found")
    authorize(principal, Action.ORG_READ, organization_id=org.id, what="organization")
    return org


async def list_visible(
    session: AsyncSession, principal: Principal, *, offset: int, limit: int
) -> tuple[Sequence[Organization], int]:
    query = select(Organization)
    if not principal.is_admin:
        visible = (
            [principal.organization_id]
            if principal.kind == "organization"
            else list(principal.roles)
        )
        query = query.where(Organization.id.in_(visible))
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = (
        (await session.execute(query.order_by(Organization.name).offset(offset).limit(limit)))
        .scalars()
        .all()
    )
    return rows, total


async def create(
    session: AsyncSession,
    principal: Principal,
    values: dict[str, Any],
    *,
    owner_id: str | None = None,
) -> Organization:
    """Create an organization; its creator (or ``owner_id``) becomes its owner."""
    authorize(principal, Action.ORG_CREATE)
    for required in ("name", "email"):
        if not values.get(required):
            raise Invalid(f"{required} is required", pointer=f"/data/attributes/{required}")
    _validate(values)
    await _ensure_name_free(session, values["name"])
    org = Organization(id=new_id("org"))
    await _settle_default_agent_pool(session, org, values, new=True)
    for key, value in values.items():
        if key in SETTABLE and value is not None:
            setattr(org, key, value)
    session.add(org)
    await _flush(session)
    owner = owner_id or principal.user_id
    if owner is not None:
        session.add(
            Membership(id=new_id("ou"), organization_id=org.id, user_id=owner, role="owner")
        )
        await session.flush()
    return org


async def update(
    session: AsyncSession, principal: Principal, org: Organization, values: dict[str, Any]
) -> Organization:
    authorize(principal, Action.ORG_UPDATE, organization_id=org.id, what="organization")
    _refuse_nulls(values)
    _validate({k: v for k, v in values.items() if v is not None})
    if "name" in values and values["name"] != org.name:
        await _ensure_name_free(session, values["name"])
    await _settle_default_agent_pool(session, org, values)
    for key, value in values.items():
        if key in SETTABLE:
            setattr(org, key, value)
    await _flush(session)
    return org


async def delete(session: AsyncSession, principal: Principal, org: Organization) -> None:
    authorize(principal, Action.ORG_DELETE, organization_id=org.id, what="organization")
    await fire(session, "organization_deleting", org)
    await session.delete(org)
    await session.flush()


async def add_member(
    session: AsyncSession, principal: Principal, org: Organization, user_id: str, role: str
) -> Membership:
    authorize(principal, Action.ORG_UPDATE, organization_id=org.id, what="organization")
    if role not in ("owner", "member"):
        raise Invalid("role must be owner or member")
    existing = (
        await session.execute(
            select(Membership).where(
                Membership.organization_id == org.id, Membership.user_id == user_id
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        existing.role = role
        await session.flush()
        return existing
    membership = Membership(id=new_id("ou"), organization_id=org.id, user_id=user_id, role=role)
    session.add(membership)
    await _flush(session)
    return membership


def permissions_for(principal: Principal, org: Organization) -> dict[str, bool]:
    """The ``permissions`` block TFE returns on an organization."""
    manage = can(principal, Action.ORG_UPDATE, organization_id=org.id)
    return {
        "can-update": manage,
        "can-destroy": can(principal, Action.ORG_DELETE, organization_id=org.id),
        "can-access-via-teams": False,
        "can-create-module": False,
        "can-create-team": False,
        "can-create-workspace": can(principal, Action.WS_CREATE, organization_id=org.id),
        "can-manage-users": manage,
        "can-manage-subscription": False,
        "can-manage-sso": False,
        "can-update-oauth": False,
        "can-update-sentinel": False,
        "can-update-ssh-keys": False,
        "can-update-api-token": can(principal, Action.ORG_MANAGE_TOKENS, organization_id=org.id),
        "can-traverse": True,
        "can-start-trial": False,
        "can-update-agent-pools": can(
            principal, Action.ORG_MANAGE_AGENT_POOLS, organization_id=org.id
        ),
        "can-manage-tags": False,
        "can-manage-varsets": can(principal, Action.ORG_MANAGE_VARSETS, organization_id=org.id),
        "can-read-varsets": can(principal, Action.ORG_READ, organization_id=org.id),
        "can-manage-public-providers": False,
        "can-create-provider": False,
        "can-manage-public-modules": False,
        "can-manage-custom-providers": False,
        "can-manage-run-tasks": can(principal, Action.ORG_MANAGE_RUN_TASKS, organization_id=org.id),
        "can-read-run-tasks": can(principal, Action.ORG_MANAGE_RUN_TASKS, organization_id=org.id),
        "can-create-project": False,
    }


async def _ensure_name_free(session: AsyncSession, name: str) -> None:
    taken = (
        await session.execute(
            select(func.count())
            .select_from(Organization)
            .where(func.lower(Organization.name) == name.lower())
        )
    ).scalar_one()
    if taken:
        raise Conflict(
            f"organization name {name!r} is already taken", pointer="/data/attributes/name"
        )


async def _flush(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create won the race for the name
        raise Conflict(
            "organization name is already taken", pointer="/data/attributes/name"
        ) from exc
