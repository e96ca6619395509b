"""The one function that answers "may this principal do X here?" (DESIGN.md, Permissions).

Every route reaches its service, and every service calls :func:`authorize` before it reads or
changes anything. A principal that may not even see the organization gets ``NotFound`` (as
TFE does, so names of other tenants do not leak); one that may see it but not do the action
gets ``Forbidden``.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from terrapod.access.principal import Principal
from terrapod.errors import Forbidden, NotFound


class Action(StrEnum):
    # Organizations
    ORG_CREATE = "organization:create"
    ORG_READ = "organization:read"
    ORG_UPDATE = "organization:update"
    ORG_DELETE = "organization:delete"
    ORG_MANAGE_TOKENS = "organization:manage-tokens"
    # Variable sets: create, change, delete, their variables and assignments
    ORG_MANAGE_VARSETS = "organization:manage-varsets"
    # Run tasks: create, change, delete the organization's tasks; override failed task stages
    ORG_MANAGE_RUN_TASKS = "organization:manage-run-tasks"
    ORG_OVERRIDE_RUN_TASKS = "organization:override-run-tasks"
    # Agent pools: create, change, delete pools and their agent tokens (owners only, as in
    # HCP Terraform); reading pools and their agents is ORG_READ
    ORG_MANAGE_AGENT_POOLS = "organization:manage-agent-pools"
    # Users
    USER_READ = "user:read"
    USER_MANAGE_TOKENS = "user:manage-tokens"
    # Platform
    PLATFORM_ADMIN = "platform:admin"
    # Workspaces (checked against the principal's access level on the workspace)
    WS_CREATE = "workspace:create"
    WS_READ = "workspace:read"
    WS_READ_STATE = "workspace:read-state"
    WS_READ_STATE_OUTPUTS = "workspace:read-state-outputs"
    WS_LOCK = "workspace:lock"
    WS_CREATE_STATE = "workspace:create-state"
    WS_QUEUE_RUN = "workspace:queue-run"
    WS_APPLY = "workspace:apply"
    WS_UPDATE_VARIABLES = "workspace:update-variables"
    WS_FORCE_CANCEL_RUN = "workspace:force-cancel-run"
    WS_UPDATE = "workspace:update"
    WS_DELETE = "workspace:delete"
    WS_FORCE_UNLOCK = "workspace:force-unlock"
    WS_MANAGE_NOTIFICATIONS = "workspace:manage-notifications"
    WS_MANAGE_RUN_TRIGGERS = "workspace:manage-run-triggers"


class Level(IntEnum):
    """Workspace access levels, each including the ones below (DESIGN.md, Permissions)."""

    NONE = 0
    READ = 1
    PLAN = 2
    WRITE = 3
    ADMIN = 4


# The least level each workspace action needs.
WORKSPACE_ACTION_LEVEL: dict[Action, Level] = {
    Action.WS_READ: Level.READ,
    Action.WS_READ_STATE: Level.READ,
    Action.WS_READ_STATE_OUTPUTS: Level.READ,
    Action.WS_QUEUE_RUN: Level.PLAN,
    Action.WS_LOCK: Level.WRITE,
    Action.WS_CREATE_STATE: Level.WRITE,
    Action.WS_APPLY: Level.WRITE,
    Action.WS_UPDATE_VARIABLES: Level.WRITE,
    Action.WS_FORCE_CANCEL_RUN: Level.ADMIN,
    Action.WS_UPDATE: Level.ADMIN,
    Action.WS_DELETE: Level.ADMIN,
    Action.WS_FORCE_UNLOCK: Level.ADMIN,
    Action.WS_MANAGE_NOTIFICATIONS: Level.ADMIN,
    Action.WS_MANAGE_RUN_TRIGGERS: Level.ADMIN,
}

# What a run's own credential may do in its workspace: its state, nothing else (not its
# variables, settings or runs).
RUN_TOKEN_ACTIONS = frozenset(
    {
        Action.WS_READ,
        Action.WS_READ_STATE,
        Action.WS_READ_STATE_OUTPUTS,
        Action.WS_LOCK,
        Action.WS_CREATE_STATE,
    }
)

# Organization role -> level on every workspace of the organization. Members get write so a
# team can use terraform without per-workspace grants (documented in docs/permissions.md);
# finer grants arrive with teams and role assignments.
_LEVEL_BY_ROLE = {"owner": Level.ADMIN, "token": Level.ADMIN, "member": Level.WRITE}


def workspace_level(
    principal: Principal,
    organization_id: str,
    workspace_id: str,
    creator_id: str | None = None,
) -> Level:
    """The principal's access level on one workspace. Its creator administers it (seed 003:
    "creator becomes owner"), so a member whose terraform creates a workspace can also set
    its terraform-version, as the CLI does right after creating it."""
    if principal.workspace_id is not None:
        # A run token reaches its own workspace only (and _workspace_verdict limits it to
        # reading and writing state).
        return Level.WRITE if principal.workspace_id == workspace_id else Level.NONE
    role = org_role(principal, organization_id)
    if not role:
        return Level.NONE
    if creator_id is not None and principal.user_id == creator_id:
        return Level.ADMIN
    return _LEVEL_BY_ROLE.get(role, Level.NONE)


# What each organization role may do. Organization tokens act with the member set plus
# nothing that manages the organization itself (TFE: they cannot manage tokens or delete).
_OWNER = {
    Action.ORG_READ,
    Action.ORG_UPDATE,
    Action.ORG_DELETE,
    Action.ORG_MANAGE_TOKENS,
    Action.ORG_MANAGE_VARSETS,
    Action.ORG_MANAGE_RUN_TASKS,
    Action.ORG_OVERRIDE_RUN_TASKS,
    Action.ORG_MANAGE_AGENT_POOLS,
}
_MEMBER = {Action.ORG_READ}
# Organization tokens administer every workspace, so they may manage variable sets too.
_ORG_TOKEN = {Action.ORG_READ, Action.ORG_MANAGE_VARSETS}

_ORG_ACTIONS = _OWNER


def org_role(principal: Principal, organization_id: str) -> str | None:
    """The principal's role in the organization, or None when it cannot see it."""
    if principal.is_admin:
        return "owner"
    if principal.kind == "organization":
        return "token" if principal.organization_id == organization_id else None
    return principal.roles.get(organization_id)


def _allowed_in_org(principal: Principal, action: Action, organization_id: str) -> bool | None:
    role = org_role(principal, organization_id)
    if role is None:
        return None
    granted = {"owner": _OWNER, "member": _MEMBER, "token": _ORG_TOKEN}[role]
    return action in granted


# How a refusal names the action ("not permitted to <phrase> this <thing>").
_PHRASES = {
    Action.ORG_MANAGE_TOKENS: "manage the API token of",
    Action.ORG_MANAGE_VARSETS: "manage the variable sets of",
    Action.ORG_MANAGE_RUN_TASKS: "manage the run tasks of",
    Action.ORG_OVERRIDE_RUN_TASKS: "override run tasks in",
    Action.ORG_MANAGE_AGENT_POOLS: "manage the agent pools of",
    Action.ORG_UPDATE: "change",
    Action.ORG_DELETE: "delete",
    Action.WS_UPDATE: "change the settings of",
    Action.WS_DELETE: "delete",
    Action.WS_FORCE_UNLOCK: "force-unlock",
    Action.WS_LOCK: "lock or unlock",
    Action.WS_CREATE_STATE: "write the state of",
    Action.WS_QUEUE_RUN: "queue runs in",
    Action.WS_APPLY: "apply runs in",
    Action.WS_UPDATE_VARIABLES: "change the variables of",
    Action.WS_FORCE_CANCEL_RUN: "force-cancel runs in",
    Action.WS_MANAGE_NOTIFICATIONS: "manage the notifications of",
    Action.WS_MANAGE_RUN_TRIGGERS: "manage the run triggers of",
}


def _workspace_verdict(
    principal: Principal,
    action: Action,
    organization_id: str | None,
    workspace_id: str | None,
    creator_id: str | None,
) -> bool | None:
    if organization_id is None or workspace_id is None:
        raise ValueError(f"{action} needs an organization and a workspace")
    if principal.workspace_id is not None and action not in RUN_TOKEN_ACTIONS:
        return None
    level = workspace_level(principal, organization_id, workspace_id, creator_id)
    return None if level is Level.NONE else level >= WORKSPACE_ACTION_LEVEL[action]


def _verdict(
    principal: Principal,
    action: Action,
    organization_id: str | None,
    user_id: str | None,
    workspace_id: str | None,
    workspace_creator: str | None = None,
) -> bool | None:
    """True: allowed. False: visible but forbidden (403). None: invisible (404)."""
    if action in WORKSPACE_ACTION_LEVEL:
        return _workspace_verdict(
            principal, action, organization_id, workspace_id, workspace_creator
        )
    if action is Action.WS_CREATE or action in _ORG_ACTIONS:
        if organization_id is None:
            raise ValueError(f"{action} needs an organization")
        if action is Action.WS_CREATE:
            # Any member may create workspaces (seed 003); run tokens may not.
            visible = principal.workspace_id is None and org_role(principal, organization_id)
            return True if visible else None
        return _allowed_in_org(principal, action, organization_id)
    if action in (Action.USER_READ, Action.USER_MANAGE_TOKENS):
        return (
            True
            if principal.is_admin or (principal.is_user and principal.user_id == user_id)
            else None
        )
    if action in (Action.ORG_CREATE, Action.PLATFORM_ADMIN):
        return principal.is_admin
    raise ValueError(f"unknown action {action}")  # pragma: no cover - a programming error


def authorize(
    principal: Principal,
    action: Action,
    *,
    organization_id: str | None = None,
    user_id: str | None = None,
    workspace_id: str | None = None,
    workspace_creator: str | None = None,
    what: str = "resource",
) -> None:
    """Raise NotFound/Forbidden unless ``principal`` may do ``action``; return None otherwise."""
    verdict = _verdict(principal, action, organization_id, user_id, workspace_id, workspace_creator)
    if what == "resource":
        what = action.value.split(":")[0]
    if verdict is None:
        raise NotFound(f"{what} not found")
    if not verdict:
        if action is Action.ORG_CREATE:
            raise Forbidden("only platform administrators may create organizations")
        if action is Action.PLATFORM_ADMIN:
            raise Forbidden("platform administrator rights are required")
        phrase = _PHRASES.get(action, action.value.split(":")[1].replace("-", " "))
        raise Forbidden(f"not permitted to {phrase} this {what}")


def can(principal: Principal, action: Action, **scope: str | None) -> bool:
    try:
        authorize(principal, action, **scope)  # type: ignore[arg-type]
    except (NotFound, Forbidden):
        return False
    return True
