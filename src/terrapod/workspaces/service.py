"""Workspace rules: creation, settings, tags, locking and state-sharing settings.

Every function authorizes first (through :func:`terrapod.access.permissions.authorize`) and
then works inside the caller's transaction. The lock is taken with one conditional UPDATE, so
of many concurrent lockers exactly one wins on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize, can
from terrapod.access.principal import Principal
from terrapod.db.hooks import AgentPoolUse, fire
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import Conflict, Invalid, NotFound
from terrapod.organizations.models import Organization
from terrapod.workspaces.models import RemoteStateConsumer, Workspace, WorkspaceTag

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,90}$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9:_-]{0,254}$")
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,62})$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$")
CONSTRAINT_PART_RE = re.compile(
    r"^\s*(=|!=|>=|<=|>|<|~>)?\s*v?\d+(\.\d+){0,2}(-[0-9A-Za-z.]+)?\s*$"
)
EXECUTION_MODES = ("remote", "local", "agent")
MAX_CONSUMERS_PAGE = 100

# Settable attributes (domain names). Everything else on the model is derived or internal.
SETTABLE = (
    "name",
    "description",
    "auto_apply",
    "auto_apply_run_trigger",
    "allow_destroy_plan",
    "execution_mode",
    "terraform_version",
    "working_directory",
    "global_remote_state",
    "structured_run_output_enabled",
    "speculative_enabled",
    "queue_all_runs",
    "file_triggers_enabled",
    "trigger_prefixes",
    "trigger_patterns",
    "source_name",
    "source_url",
    "labels",
    "resource_cpu",
    "resource_memory",
    "agent_pool_id",
)
NOT_NULL = {
    "name",
    "auto_apply",
    "auto_apply_run_trigger",
    "allow_destroy_plan",
    "execution_mode",
    "terraform_version",
    "global_remote_state",
    "structured_run_output_enabled",
    "speculative_enabled",
    "queue_all_runs",
    "file_triggers_enabled",
    "trigger_prefixes",
    "trigger_patterns",
    "labels",
}


def _authorize(
    principal: Principal, action: Action, workspace: Workspace, org: Organization
) -> None:
    """``action`` on this workspace (its creator counts as its administrator)."""
    authorize(
        principal,
        action,
        organization_id=org.id,
        workspace_id=workspace.id,
        workspace_creator=workspace.created_by_id,
        what="workspace",
    )


def _pointer(attribute: str) -> str:
    return "/data/attributes/" + attribute.replace("_", "-")


def validate_terraform_version(value: str) -> str:
    if value == "latest" or VERSION_RE.match(value):
        return value
    if all(CONSTRAINT_PART_RE.match(part) for part in value.split(",")):
        return value
    raise Invalid(
        f"terraform-version {value!r} is not a version (1.15.5), a constraint (~> 1.15) or latest",
        pointer=_pointer("terraform_version"),
    )


def validate_tags(tags: Iterable[str]) -> list[str]:
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not TAG_RE.match(tag):
            raise Invalid(
                f"tag {tag!r} must be lowercase letters, digits, ':', '-' or '_' "
                "(at most 255 characters)",
                pointer=_pointer("tag_names"),
            )
        if tag not in out:
            out.append(tag)
    return out


def _validate(values: dict[str, Any]) -> None:  # noqa: PLR0912 - one check per attribute
    for key in NOT_NULL:
        if key in values and values[key] is None:
            raise Invalid(f"{key.replace('_', '-')} cannot be null", pointer=_pointer(key))
    if "name" in values and not NAME_RE.match(values["name"]):
        raise Invalid(
            "name must be 1-90 characters of letters, digits, '-' and '_'", pointer=_pointer("name")
        )
    mode = values.get("execution_mode")
    if mode is not None and mode not in EXECUTION_MODES:
        raise Invalid(
            f"execution-mode must be one of {', '.join(EXECUTION_MODES)}",
            pointer=_pointer("execution_mode"),
        )
    if values.get("terraform_version") is not None:
        validate_terraform_version(values["terraform_version"])
    wd = values.get("working_directory")
    if wd:
        parts = wd.strip("/").split("/")
        if wd.startswith("/") or ".." in parts or "\\" in wd:
            raise Invalid(
                "working-directory must be a relative path inside the configuration",
                pointer=_pointer("working_directory"),
            )
    labels = values.get("labels")
    if labels is not None:
        for key, value in labels.items():
            if not LABEL_KEY_RE.match(key) or not isinstance(value, str) or len(value) > 63:
                raise Invalid(
                    f"label {key!r}: keys are 1-63 letters, digits, '.', '_', '/', '-'; "
                    "values are strings of at most 63 characters",
                    pointer=_pointer("labels"),
                )
    for key in ("trigger_prefixes", "trigger_patterns"):
        items = values.get(key)
        if items is not None and not all(isinstance(i, str) for i in items):
            raise Invalid(
                f"{key.replace('_', '-')} must be a list of strings", pointer=_pointer(key)
            )
    pool = values.get("agent_pool_id")
    if pool is not None and not isinstance(pool, str):
        raise Invalid("agent-pool-id must be a string", pointer=_pointer("agent_pool_id"))


async def _settle_agent_pool(
    session: AsyncSession,
    org: Organization,
    workspace: Workspace | None,
    values: dict[str, Any],
) -> None:
    """Execution mode ``agent`` needs a pool of the organization that the workspace may use
    (the agent pools domain answers through the ``agent_pool_use`` hook); any other mode
    has no pool, so switching away from ``agent`` clears it. A new workspace sent without a
    pool gets the organization's default agent pool (TFE's default-agent-pool), if it has
    one. ``values`` gets the pool to store (``agent_pool_id``) when it changes."""
    current_mode = workspace.execution_mode if workspace is not None else None
    current_pool = workspace.agent_pool_id if workspace is not None else None
    mode = values.get("execution_mode") or current_mode or org.default_execution_mode
    sent_pool = "agent_pool_id" in values
    if mode != "agent":
        if values.get("agent_pool_id") is not None:
            raise Invalid(
                f"agent-pool-id needs execution-mode agent (the workspace's mode is {mode}); "
                "set execution-mode to agent, or leave agent-pool-id out",
                pointer=_pointer("agent_pool_id"),
            )
        if current_pool is not None or sent_pool:
            values["agent_pool_id"] = None
        return
    pool = values["agent_pool_id"] if sent_pool else current_pool
    if workspace is None and not sent_pool:
        pool = org.default_agent_pool_id
    if not pool:
        raise Invalid(
            "execution-mode agent needs an agent pool: set agent-pool-id (or the agent-pool "
            "relationship) to one of the organization's agent pools",
            pointer=_pointer("agent_pool_id"),
        )
    if pool == current_pool and current_mode == "agent":
        return
    use = AgentPoolUse(
        organization_id=org.id,
        workspace_id=workspace.id if workspace is not None else None,
        pool_id=pool,
    )
    await fire(session, "agent_pool_use", use)
    if not use.allowed:
        raise Invalid(
            use.reason or f"agent pool {pool} cannot be used (agent pools are not available)",
            pointer=_pointer("agent_pool_id"),
        )
    values["agent_pool_id"] = pool


async def not_in_organization(
    session: AsyncSession, organization_id: str, ids: Sequence[str]
) -> list[str]:
    """Those of ``ids`` that are not workspaces of the organization (one query), for the
    domains that take lists of workspace ids (variable sets, agent pools)."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    found = set(
        (
            await session.execute(
                select(Workspace.id).where(
                    Workspace.id.in_(wanted), Workspace.organization_id == organization_id
                )
            )
        ).scalars()
    )
    return [workspace_id for workspace_id in wanted if workspace_id not in found]


async def _flush(session: AsyncSession, name: str | None) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"a workspace named {name!r} already exists in this organization",
            pointer=_pointer("name"),
        ) from exc


async def _ensure_name_free(session: AsyncSession, org_id: str, name: str) -> None:
    taken = (
        await session.execute(
            select(func.count())
            .select_from(Workspace)
            .where(Workspace.organization_id == org_id, func.lower(Workspace.name) == name.lower())
        )
    ).scalar_one()
    if taken:
        raise Conflict(
            f"a workspace named {name!r} already exists in this organization",
            pointer=_pointer("name"),
        )


async def create(
    session: AsyncSession,
    principal: Principal,
    org: Organization,
    values: dict[str, Any],
    *,
    tags: Sequence[str] = (),
) -> Workspace:
    authorize(principal, Action.WS_CREATE, organization_id=org.id, what="organization")
    if not values.get("name"):
        raise Invalid("name is required", pointer=_pointer("name"))
    _validate(values)
    tag_list = validate_tags(tags)
    await _ensure_name_free(session, org.id, values["name"])
    fields = {k: v for k, v in values.items() if k in SETTABLE and v is not None}
    fields.setdefault("execution_mode", org.default_execution_mode)
    await _settle_agent_pool(session, org, None, fields)
    workspace = Workspace(
        id=new_id("ws"), organization_id=org.id, created_by_id=principal.user_id, **fields
    )
    session.add(workspace)
    await _flush(session, values["name"])
    await _set_tags(session, workspace.id, tag_list)
    return workspace


async def _load(session: AsyncSession, query: Any) -> tuple[Workspace, Organization] | None:
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row is not None else None


async def get(
    session: AsyncSession, principal: Principal, workspace_id: str, action: Action = Action.WS_READ
) -> tuple[Workspace, Organization]:
    """The workspace and its organization, after checking ``action`` on it."""
    found = None
    if looks_like_id(workspace_id, "ws"):
        found = await _load(
            session,
            select(Workspace, Organization)
            .join(Organization, Organization.id == Workspace.organization_id)
            .where(Workspace.id == workspace_id),
        )
    if found is None:
        raise NotFound("workspace not found")
    workspace, org = found
    _authorize(principal, action, workspace, org)
    return workspace, org


async def get_by_name(
    session: AsyncSession,
    principal: Principal,
    org_name: str,
    name: str,
    action: Action = Action.WS_READ,
) -> tuple[Workspace, Organization]:
    found = await _load(
        session,
        select(Workspace, Organization)
        .join(Organization, Organization.id == Workspace.organization_id)
        .where(Organization.name == org_name, Workspace.name == name),
    )
    if found is None:
        raise NotFound("workspace not found")
    workspace, org = found
    _authorize(principal, action, workspace, org)
    return workspace, org


@dataclass(frozen=True)
class ListFilter:
    name: str | None = None  # substring of the name (search[name])
    tags: tuple[str, ...] = ()  # all of these tags (search[tags])
    exclude_tags: tuple[str, ...] = ()  # none of these tags (search[exclude-tags])
    wildcard_name: str | None = None  # search[wildcard-name]: *foo, foo*, *foo*


def _has_tag(tag: str) -> Any:
    return (
        select(WorkspaceTag.workspace_id)
        .where(WorkspaceTag.workspace_id == Workspace.id, WorkspaceTag.name == tag)
        .exists()
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_in_org(
    session: AsyncSession,
    principal: Principal,
    org: Organization,
    filters: ListFilter,
    *,
    offset: int,
    limit: int,
) -> tuple[Sequence[Workspace], int]:
    """One page of the organization's workspaces, ordered by name, and the total count."""
    # Every principal with a role in the organization sees all its workspaces today; with
    # per-workspace grants this becomes a join against them.
    authorize(principal, Action.ORG_READ, organization_id=org.id, what="organization")
    conditions: list[Any] = [Workspace.organization_id == org.id]
    if filters.name:
        conditions.append(
            func.lower(Workspace.name).like(f"%{_like_escape(filters.name.lower())}%", escape="\\")
        )
    if filters.wildcard_name:
        pattern = _like_escape(filters.wildcard_name.lower()).replace("*", "%")
        conditions.append(func.lower(Workspace.name).like(pattern, escape="\\"))
    conditions.extend(_has_tag(tag) for tag in filters.tags)
    conditions.extend(~_has_tag(tag) for tag in filters.exclude_tags)
    where = and_(*conditions)
    total = (
        await session.execute(select(func.count()).select_from(Workspace).where(where))
    ).scalar_one()
    rows = (
        (
            await session.execute(
                select(Workspace).where(where).order_by(Workspace.name).offset(offset).limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return rows, total


async def tags_for(session: AsyncSession, workspace_ids: Sequence[str]) -> dict[str, list[str]]:
    """Tag names per workspace, for a whole page in one query."""
    out: dict[str, list[str]] = {wid: [] for wid in workspace_ids}
    if not workspace_ids:
        return out
    rows = await session.execute(
        select(WorkspaceTag.workspace_id, WorkspaceTag.name)
        .where(WorkspaceTag.workspace_id.in_(workspace_ids))
        .order_by(WorkspaceTag.name)
    )
    for workspace_id, name in rows:
        out[workspace_id].append(name)
    return out


async def update(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    values: dict[str, Any],
    *,
    tags: Sequence[str] | None = None,
) -> Workspace:
    _authorize(principal, Action.WS_UPDATE, workspace, org)
    _validate(values)
    await _settle_agent_pool(session, org, workspace, values)
    if "name" in values and values["name"].lower() != workspace.name.lower():
        await _ensure_name_free(session, org.id, values["name"])
    for key, value in values.items():
        if key in SETTABLE:
            setattr(workspace, key, value)
    await _flush(session, values.get("name"))
    if tags is not None:
        await _set_tags(session, workspace.id, validate_tags(tags))
    return workspace


async def _set_tags(session: AsyncSession, workspace_id: str, tags: Sequence[str]) -> None:
    await session.execute(delete(WorkspaceTag).where(WorkspaceTag.workspace_id == workspace_id))
    if tags:
        await session.execute(
            insert(WorkspaceTag), [{"workspace_id": workspace_id, "name": t} for t in tags]
        )


async def add_tags(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    tags: Sequence[str],
) -> None:
    _authorize(principal, Action.WS_UPDATE, workspace, org)
    current = (await tags_for(session, [workspace.id]))[workspace.id]
    await _set_tags(session, workspace.id, validate_tags([*current, *tags]))


async def remove_tags(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    tags: Sequence[str],
) -> None:
    _authorize(principal, Action.WS_UPDATE, workspace, org)
    if tags:
        await session.execute(
            delete(WorkspaceTag).where(
                WorkspaceTag.workspace_id == workspace.id, WorkspaceTag.name.in_(list(tags))
            )
        )


async def delete_workspace(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    *,
    safe: bool,
) -> None:
    """Delete the workspace. ``safe`` refuses while its state still manages resources."""
    _authorize(principal, Action.WS_DELETE, workspace, org)
    if safe and workspace.resource_count > 0:
        raise Conflict(
            f"workspace {workspace.name} still manages {workspace.resource_count} resources; "
            "destroy them first or use a force delete"
        )
    if safe and workspace.locked:
        raise Conflict("workspace is locked; unlock it before deleting it")
    await fire(session, "workspace_deleting", workspace)
    await session.delete(workspace)
    await session.flush()


# -- locking ---------------------------------------------------------------------------


# Column values of an unlocked workspace.
_UNLOCKED: dict[str, Any] = {
    "locked": False,
    "locked_by_kind": None,
    "locked_by_id": None,
    "lock_reason": None,
    "locked_at": None,
}


def holder_of(principal: Principal) -> tuple[str, str]:
    """Who a lock taken by ``principal`` belongs to: (kind, id)."""
    if principal.run_id is not None:
        return "runs", principal.run_id
    if principal.kind == "organization" and principal.organization_id:
        return "organizations", principal.organization_id
    if principal.user_id is not None:
        return "users", principal.user_id
    return "system", "system"


async def lock(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    reason: str | None,
) -> Workspace:
    _authorize(principal, Action.WS_LOCK, workspace, org)
    kind, holder = holder_of(principal)
    result = await session.execute(
        sql_update(Workspace)
        .where(Workspace.id == workspace.id, Workspace.locked.is_(False))
        .values(
            locked=True,
            locked_by_kind=kind,
            locked_by_id=holder,
            lock_reason=(reason or "")[:255] or None,
            locked_at=datetime.now(UTC),
        )
        .execution_options(synchronize_session=False)
    )
    await session.refresh(workspace)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("workspace already locked")
    return workspace


async def unlock(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    *,
    force: bool = False,
) -> Workspace:
    _authorize(principal, Action.WS_FORCE_UNLOCK if force else Action.WS_LOCK, workspace, org)
    conditions = [Workspace.id == workspace.id, Workspace.locked.is_(True)]
    if not force:
        kind, holder = holder_of(principal)
        if workspace.locked and (workspace.locked_by_kind, workspace.locked_by_id) != (
            kind,
            holder,
        ):
            if workspace.locked_by_kind == "runs":
                raise Conflict(
                    "Unable to unlock workspace. The workspace is locked by Run "
                    f"{workspace.locked_by_id}."
                )
            raise Conflict(
                "Unable to unlock workspace. The workspace is locked by another user; "
                "an administrator can force-unlock it."
            )
        conditions += [Workspace.locked_by_kind == kind, Workspace.locked_by_id == holder]
    result = await session.execute(
        sql_update(Workspace)
        .where(*conditions)
        .values(**_UNLOCKED)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(workspace)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("workspace already unlocked")
    await fire(session, "workspace_unlocked", workspace)
    return workspace


async def release_lock_held_by(
    session: AsyncSession, workspace_id: str, kind: str, holder: str
) -> bool:
    """Release a lock if (and only if) ``holder`` holds it; for runs ending. No auth: callers
    are the run machinery acting on its own lock."""
    result = await session.execute(
        sql_update(Workspace)
        .where(
            Workspace.id == workspace_id,
            Workspace.locked_by_kind == kind,
            Workspace.locked_by_id == holder,
        )
        .values(**_UNLOCKED)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def holds_lock(principal: Principal, workspace: Workspace) -> bool:
    return workspace.locked and (workspace.locked_by_kind, workspace.locked_by_id) == holder_of(
        principal
    )


# -- remote state sharing -------------------------------------------------------------


async def list_consumers(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    *,
    offset: int,
    limit: int,
) -> tuple[Sequence[Workspace], int]:
    _authorize(principal, Action.WS_READ, workspace, org)
    where = RemoteStateConsumer.workspace_id == workspace.id
    total = (
        await session.execute(select(func.count()).select_from(RemoteStateConsumer).where(where))
    ).scalar_one()
    rows = (
        (
            await session.execute(
                select(Workspace)
                .join(RemoteStateConsumer, RemoteStateConsumer.consumer_id == Workspace.id)
                .where(where)
                .order_by(Workspace.name)
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return rows, total


async def change_consumers(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    consumer_ids: Sequence[str],
    *,
    mode: str,
) -> None:
    """``mode`` is add, remove or replace (POST, DELETE, PATCH on the relationship)."""
    _authorize(principal, Action.WS_UPDATE, workspace, org)
    ids = list(dict.fromkeys(consumer_ids))
    if ids:
        found = set(
            (
                await session.execute(
                    select(Workspace.id).where(
                        Workspace.id.in_(ids), Workspace.organization_id == org.id
                    )
                )
            ).scalars()
        )
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"workspace {missing[0]} not found in this organization")
        if workspace.id in ids:
            raise Invalid("a workspace cannot be its own remote state consumer", pointer="/data")
    if mode == "replace":
        await session.execute(
            delete(RemoteStateConsumer).where(RemoteStateConsumer.workspace_id == workspace.id)
        )
    if mode == "remove":
        if ids:
            await session.execute(
                delete(RemoteStateConsumer).where(
                    RemoteStateConsumer.workspace_id == workspace.id,
                    RemoteStateConsumer.consumer_id.in_(ids),
                )
            )
        return
    existing = set(
        (
            await session.execute(
                select(RemoteStateConsumer.consumer_id).where(
                    RemoteStateConsumer.workspace_id == workspace.id
                )
            )
        ).scalars()
    )
    new = [{"workspace_id": workspace.id, "consumer_id": i} for i in ids if i not in existing]
    if new:
        await session.execute(insert(RemoteStateConsumer), new)


async def may_read_state(
    session: AsyncSession, principal: Principal, workspace: Workspace, org: Organization
) -> bool:
    """Remote state sharing: a run reads another workspace's state only when that workspace
    shares it (globally or with the run's workspace); people need read access."""
    if principal.workspace_id is None:
        return can(
            principal,
            Action.WS_READ_STATE,
            organization_id=org.id,
            workspace_id=workspace.id,
            workspace_creator=workspace.created_by_id,
        )
    if principal.workspace_id == workspace.id:
        return True
    reader = await session.get(Workspace, principal.workspace_id)
    if reader is None or reader.organization_id != workspace.organization_id:
        return False
    if workspace.global_remote_state:
        return True
    shared = await session.get(RemoteStateConsumer, (workspace.id, principal.workspace_id))
    return shared is not None


def permissions_for(
    principal: Principal, workspace: Workspace, org: Organization
) -> dict[str, bool]:
    """The ``permissions`` block: the CLI crashes on a null one (CLIENT_FACTS.md)."""
    scope = {
        "organization_id": org.id,
        "workspace_id": workspace.id,
        "workspace_creator": workspace.created_by_id,
    }
    read = can(principal, Action.WS_READ, **scope)
    plan = can(principal, Action.WS_QUEUE_RUN, **scope)
    write = can(principal, Action.WS_LOCK, **scope)
    admin = can(principal, Action.WS_UPDATE, **scope)
    return {
        "can-update": admin,
        "can-destroy": admin,
        "can-queue-run": plan,
        "can-queue-apply": write,
        "can-queue-destroy": write,
        "can-read-variable": read,
        "can-update-variable": write,
        "can-read-state-versions": read,
        "can-read-state-outputs": read,
        "can-create-state-versions": write,
        "can-lock": write,
        "can-unlock": write,
        "can-force-unlock": admin,
        "can-read-settings": read,
        "can-manage-tags": admin,
        "can-manage-run-tasks": admin,
        "can-force-delete": admin,
        "can-manage-assessments": admin,
        "can-read-assessments": read,
    }


# -- views: what the API shows about a workspace --------------------------------------


@dataclass(frozen=True)
class WorkspaceView:
    workspace: Workspace
    organization: Organization
    tags: list[str]


async def views(
    session: AsyncSession, pairs: Sequence[tuple[Workspace, Organization]]
) -> list[WorkspaceView]:
    """Views for a page of workspaces: one query for all their tags."""
    tags = await tags_for(session, [w.id for w, _ in pairs])
    return [WorkspaceView(w, o, tags[w.id]) for w, o in pairs]


async def view(session: AsyncSession, workspace: Workspace, org: Organization) -> WorkspaceView:
    return (await views(session, [(workspace, org)]))[0]
