"""Agent pool rules: pools, their agent tokens, their agents as users see them, and which
workspaces may run on which pool.

Managing a pool (create, change, delete, its agent tokens) needs
``ORG_MANAGE_AGENT_POOLS`` (organization owners, as in HCP Terraform); reading pools and
their agents needs ``ORG_READ``. A pool of an organization the caller cannot see is absent
(NotFound). Built-in agents (no pool, one per ``terrapod serve``) are shown to platform
administrators only. Every function authorizes first and works inside the caller's
transaction.

Who may use a pool: every workspace of its organization when it is organization-scoped,
else only its allowed workspaces. :func:`on_agent_pool_use` answers the workspaces domain's
``agent_pool_use`` question (wired in :mod:`terrapod.app`), so workspaces never import this
domain. A pool that workspaces still use cannot be deleted (HCP Terraform refuses it too).

An agent's status as shown is its stored one (idle, busy, exited, errored), except that an
idle or busy agent not heard of for the heartbeat timeout shows ``unknown`` and is not
online. Lists take their counts for a whole page in a few grouped queries, never one per
item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize
from terrapod.access.principal import Principal
from terrapod.agentpools.models import Agent, AgentPool, AgentPoolAllowedWorkspace
from terrapod.auth.models import Token
from terrapod.auth.service import KIND_AGENT_POOL, IssuedToken, token_page
from terrapod.auth.tokens import PrincipalCache, generate_token, hash_token
from terrapod.db.base import utcnow
from terrapod.db.hooks import AgentPoolUse
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import Conflict, Invalid, NotFound
from terrapod.organizations.models import Organization
from terrapod.runs.models import Job
from terrapod.workspaces import service as workspaces
from terrapod.workspaces.models import Workspace

MAX_NAME_LENGTH = 90
MAX_DESCRIPTION_LENGTH = 255
# TFE's agent statuses. "unknown" is never stored: it is derived from last_ping_at.
IDLE, BUSY, UNKNOWN, EXITED, ERRORED = "idle", "busy", "unknown", "exited", "errored"
STATUSES = (IDLE, BUSY, UNKNOWN, EXITED, ERRORED)
# The label of the built-in agents (no pool) in the metrics.
BUILTIN = "builtin"

NAME_POINTER = "/data/attributes/name"
ALLOWED_POINTER = "/data/relationships/allowed-workspaces"


@dataclass(frozen=True)
class PoolView:
    """A pool with what its resource shows: the workspaces using it (execution mode agent
    on this pool), the allowed workspaces, and its agents' numbers."""

    pool: AgentPool
    organization: Organization
    workspace_ids: list[str] = field(default_factory=list)
    allowed_workspace_ids: list[str] = field(default_factory=list)
    agent_count: int = 0  # agents that have not exited
    online_agent_count: int = 0
    capacity: int = 0  # jobs its online agents take at once
    active_runs: int = 0  # its running jobs


@dataclass(frozen=True)
class AgentView:
    agent: Agent
    status: str  # as shown: "unknown" when not heard of for the heartbeat timeout
    online: bool
    active_runs: int


@dataclass(frozen=True)
class PoolGauge:
    """One pool's numbers for /metrics (``pool`` is the pool id, or "builtin")."""

    pool: str
    name: str
    organization: str
    agents_online: int
    capacity: int
    active_jobs: int
    queued_jobs: int


# -- helpers -------------------------------------------------------------------------------


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _online(cutoff: datetime) -> Any:
    """SQL: the agent is idle or busy and was heard of since ``cutoff``."""
    return and_(Agent.status.in_((IDLE, BUSY)), Agent.last_ping_at >= cutoff)


def shown_status(agent: Agent, cutoff: datetime) -> str:
    if agent.status in (IDLE, BUSY) and (agent.last_ping_at is None or agent.last_ping_at < cutoff):
        return UNKNOWN
    return agent.status


def _status_condition(status: str, cutoff: datetime) -> Any:
    if status == UNKNOWN:
        return and_(
            Agent.status.in_((IDLE, BUSY)),
            or_(Agent.last_ping_at.is_(None), Agent.last_ping_at < cutoff),
        )
    if status in (IDLE, BUSY):
        return and_(Agent.status == status, Agent.last_ping_at >= cutoff)
    return Agent.status == status


def _authorize_read(principal: Principal, org: Organization) -> None:
    authorize(principal, Action.ORG_READ, organization_id=org.id, what="agent pool")


def _authorize_manage(principal: Principal, org: Organization) -> None:
    authorize(principal, Action.ORG_MANAGE_AGENT_POOLS, organization_id=org.id, what="organization")


def _validate_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("name is required", pointer=NAME_POINTER)
    name: str = value.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise Invalid(f"name must be at most {MAX_NAME_LENGTH} characters", pointer=NAME_POINTER)
    return name


async def _views(
    session: AsyncSession, pools: Sequence[tuple[AgentPool, Organization]], cutoff: datetime
) -> list[PoolView]:
    """Pools with their workspaces and numbers, in four queries for any number of pools."""
    ids = [pool.id for pool, _ in pools]
    if not ids:
        return []
    using: dict[str, list[str]] = {i: [] for i in ids}
    allowed: dict[str, list[str]] = {i: [] for i in ids}
    rows = await session.execute(
        select(Workspace.agent_pool_id, Workspace.id)
        .where(Workspace.agent_pool_id.in_(ids), Workspace.execution_mode == "agent")
        .order_by(Workspace.name)
    )
    for pool_id, workspace_id in rows:
        using[str(pool_id)].append(workspace_id)
    rows = await session.execute(
        select(AgentPoolAllowedWorkspace.pool_id, AgentPoolAllowedWorkspace.workspace_id)
        .join(Workspace, Workspace.id == AgentPoolAllowedWorkspace.workspace_id)
        .where(AgentPoolAllowedWorkspace.pool_id.in_(ids))
        .order_by(Workspace.name)
    )
    for pool_id, workspace_id in rows:
        allowed[str(pool_id)].append(workspace_id)
    online = _online(cutoff)
    agents = {
        pool_id: (count or 0, online_count or 0, capacity or 0)
        for pool_id, count, online_count, capacity in await session.execute(
            select(
                Agent.pool_id,
                func.sum(case((Agent.status != EXITED, 1), else_=0)),
                func.sum(case((online, 1), else_=0)),
                func.sum(case((online, Agent.capacity), else_=0)),
            )
            .where(Agent.pool_id.in_(ids))
            .group_by(Agent.pool_id)
        )
    }
    running = {
        str(pool_id): int(count)
        for pool_id, count in await session.execute(
            select(Job.pool_id, func.count())
            .where(Job.pool_id.in_(ids), Job.status == "running")
            .group_by(Job.pool_id)
        )
    }
    views = []
    for pool, org in pools:
        count, online_count, capacity = agents.get(pool.id, (0, 0, 0))
        views.append(
            PoolView(
                pool,
                org,
                workspace_ids=using[pool.id],
                allowed_workspace_ids=allowed[pool.id],
                agent_count=int(count),
                online_agent_count=int(online_count),
                capacity=int(capacity),
                active_runs=int(running.get(pool.id, 0)),
            )
        )
    return views


async def _load(session: AsyncSession, pool_id: str) -> tuple[AgentPool, Organization] | None:
    if not looks_like_id(pool_id, "apool"):
        return None
    row = (
        await session.execute(
            select(AgentPool, Organization)
            .join(Organization, Organization.id == AgentPool.organization_id)
            .where(AgentPool.id == pool_id)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def _pool(
    session: AsyncSession, principal: Principal, pool_id: str, *, manage: bool = False
) -> tuple[AgentPool, Organization]:
    found = await _load(session, pool_id)
    if found is None:
        raise NotFound("agent pool not found")
    pool, org = found
    _authorize_read(principal, org)
    if manage:
        _authorize_manage(principal, org)
    return pool, org


async def _check_allowed_workspaces(
    session: AsyncSession, org: Organization, workspace_ids: Sequence[str]
) -> list[str]:
    """The distinct ids, each a workspace of ``org`` (else 422 naming it)."""
    missing = await workspaces.not_in_organization(session, org.id, workspace_ids)
    if missing:
        index = list(workspace_ids).index(missing[0])
        raise Invalid(
            f"workspace {missing[0]} is not a workspace of organization {org.name}",
            pointer=f"{ALLOWED_POINTER}/data/{index}/id",
        )
    return list(dict.fromkeys(workspace_ids))


async def _set_allowed(session: AsyncSession, pool: AgentPool, workspace_ids: list[str]) -> None:
    await session.execute(
        delete(AgentPoolAllowedWorkspace).where(AgentPoolAllowedWorkspace.pool_id == pool.id)
    )
    for workspace_id in workspace_ids:
        session.add(AgentPoolAllowedWorkspace(pool_id=pool.id, workspace_id=workspace_id))


async def _flush(session: AsyncSession, org: Organization, name: str | None) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"an agent pool named {name!r} already exists in organization {org.name}",
            pointer=NAME_POINTER,
        ) from exc


async def _ensure_name_free(
    session: AsyncSession, org: Organization, name: str, except_id: str | None = None
) -> None:
    query = select(AgentPool.id).where(AgentPool.organization_id == org.id, AgentPool.name == name)
    if except_id is not None:
        query = query.where(AgentPool.id != except_id)
    if (await session.execute(query)).first() is not None:
        raise Conflict(
            f"an agent pool named {name!r} already exists in organization {org.name}",
            pointer=NAME_POINTER,
        )


# -- pools ---------------------------------------------------------------------------------


async def list_pools(
    session: AsyncSession,
    principal: Principal,
    org: Organization,
    *,
    cutoff: datetime,
    query: str | None = None,
    allowed_workspace_name: str | None = None,
    offset: int,
    limit: int,
) -> tuple[list[PoolView], int]:
    """One page of the organization's pools by name, and their total count. ``query``: part
    of the name, any case (TFE's ``q``); ``allowed_workspace_name``: only pools that workspace
    may use (organization-scoped ones, and those allowing it)."""
    _authorize_read(principal, org)
    conditions: list[Any] = [AgentPool.organization_id == org.id]
    if query:
        conditions.append(
            func.lower(AgentPool.name).like(f"%{_like_escape(query.lower())}%", escape="\\")
        )
    if allowed_workspace_name:
        allows = (
            select(AgentPoolAllowedWorkspace.pool_id)
            .join(Workspace, Workspace.id == AgentPoolAllowedWorkspace.workspace_id)
            .where(
                AgentPoolAllowedWorkspace.pool_id == AgentPool.id,
                Workspace.name == allowed_workspace_name,
            )
            .exists()
        )
        conditions.append(or_(AgentPool.organization_scoped.is_(True), allows))
    where = and_(*conditions)
    total = (
        await session.execute(select(func.count()).select_from(AgentPool).where(where))
    ).scalar_one()
    pools = (
        (
            await session.execute(
                select(AgentPool)
                .where(where)
                .order_by(AgentPool.name, AgentPool.id)
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return await _views(session, [(p, org) for p in pools], cutoff), total


async def get_pool(
    session: AsyncSession, principal: Principal, pool_id: str, *, cutoff: datetime
) -> PoolView:
    pool, org = await _pool(session, principal, pool_id)
    return (await _views(session, [(pool, org)], cutoff))[0]


async def create_pool(
    session: AsyncSession,
    principal: Principal,
    org: Organization,
    values: dict[str, Any],
    *,
    allowed_workspace_ids: Sequence[str] | None,
    cutoff: datetime,
) -> PoolView:
    """A new pool (``name`` required; ``organization_scoped`` defaults to True)."""
    _authorize_manage(principal, org)
    name = _validate_name(values.get("name"))
    scoped = values.get("organization_scoped")
    if scoped is None and "organization_scoped" in values:
        raise Invalid(
            "organization-scoped cannot be null", pointer="/data/attributes/organization-scoped"
        )
    allowed = await _check_allowed_workspaces(session, org, allowed_workspace_ids or [])
    await _ensure_name_free(session, org, name)
    pool = AgentPool(
        id=new_id("apool"),
        organization_id=org.id,
        name=name,
        organization_scoped=True if scoped is None else scoped,
    )
    session.add(pool)
    await _flush(session, org, name)
    await _set_allowed(session, pool, allowed)
    await session.flush()
    return (await _views(session, [(pool, org)], cutoff))[0]


async def update_pool(
    session: AsyncSession,
    principal: Principal,
    pool_id: str,
    values: dict[str, Any],
    *,
    allowed_workspace_ids: Sequence[str] | None,
    cutoff: datetime,
) -> PoolView:
    """Change the name, the scope and (when given) the whole list of allowed workspaces
    (go-tfe's ``UpdateAllowedWorkspaces`` sends that list; an empty one clears it)."""
    pool, org = await _pool(session, principal, pool_id, manage=True)
    if "name" in values:
        name = _validate_name(values["name"])
        await _ensure_name_free(session, org, name, except_id=pool.id)
        pool.name = name
    if "organization_scoped" in values:
        if values["organization_scoped"] is None:
            raise Invalid(
                "organization-scoped cannot be null",
                pointer="/data/attributes/organization-scoped",
            )
        if not values["organization_scoped"] and org.default_agent_pool_id == pool.id:
            # New workspaces get the default pool before anyone could allow them.
            raise Conflict(
                f"agent pool {pool.name} is the organization's default agent pool, which "
                "must be organization-scoped; change the organization's default first",
                pointer="/data/attributes/organization-scoped",
            )
        pool.organization_scoped = values["organization_scoped"]
    if allowed_workspace_ids is not None:
        allowed = await _check_allowed_workspaces(session, org, allowed_workspace_ids)
        await _set_allowed(session, pool, allowed)
    pool.updated_at = utcnow()
    await _flush(session, org, pool.name)
    return (await _views(session, [(pool, org)], cutoff))[0]


async def delete_pool(
    session: AsyncSession,
    principal: Principal,
    pool_id: str,
    *,
    cache: PrincipalCache | None = None,
) -> None:
    """Delete the pool, its agent tokens and its agents. Refused while workspaces use it
    (their runs would have nowhere to go) and while it is its organization's default agent
    pool (new workspaces would get a pool that is gone; organizations.default_agent_pool_id
    has no foreign key). ``cache``: the token cache to empty, as every token deletion does."""
    pool, org = await _pool(session, principal, pool_id, manage=True)
    if org.default_agent_pool_id == pool.id:
        raise Conflict(
            f"agent pool {pool.name} is the default agent pool of organization {org.name}; "
            "change the organization's default-execution-mode or default-agent-pool first"
        )
    names = (
        (
            await session.execute(
                select(Workspace.name)
                .where(Workspace.agent_pool_id == pool.id)
                .order_by(Workspace.name)
                .limit(6)
            )
        )
        .scalars()
        .all()
    )
    if names:
        shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        raise Conflict(
            f"agent pool {pool.name} is still used by workspaces ({shown}); switch them to "
            "another pool or execution mode first"
        )
    await session.execute(delete(Agent).where(Agent.pool_id == pool.id))
    await session.execute(
        delete(Token).where(Token.agent_pool_id == pool.id, Token.kind == KIND_AGENT_POOL)
    )
    await session.execute(delete(AgentPool).where(AgentPool.id == pool.id))
    if cache is not None:
        cache.clear()


# -- the workspaces domain's question ------------------------------------------------------


async def on_agent_pool_use(session: AsyncSession, use: AgentPoolUse) -> None:
    """The ``agent_pool_use`` hook (wired in terrapod.app): may the workspace use the pool?"""
    pool = (
        await session.get(AgentPool, use.pool_id) if looks_like_id(use.pool_id, "apool") else None
    )
    if pool is None or pool.organization_id != use.organization_id:
        use.allowed = False
        owner = "organization" if use.organization_default else "workspace's organization"
        use.reason = f"agent pool {use.pool_id} not found in the {owner}"
        return
    if use.organization_default:
        # Every new workspace gets the default pool, before a pool could allow it by name.
        use.allowed = pool.organization_scoped
        if not pool.organization_scoped:
            use.reason = (
                f"agent pool {pool.name} is not organization-scoped, so new workspaces could "
                "not use it; make it organization-scoped first"
            )
        return
    if pool.organization_scoped:
        use.allowed = True
        return
    allowed = use.workspace_id is not None and (
        await session.get(AgentPoolAllowedWorkspace, (pool.id, use.workspace_id)) is not None
    )
    use.allowed = allowed
    if not allowed:
        use.reason = (
            f"agent pool {pool.name} is not organization-scoped and does not allow this "
            "workspace; add it to the pool's allowed-workspaces first"
            + (" (create the workspace, then allow it)" if use.workspace_id is None else "")
        )


# -- agent tokens --------------------------------------------------------------------------


async def create_token(
    session: AsyncSession, principal: Principal, pool_id: str, description: str | None
) -> IssuedToken:
    """A new agent token of the pool; its plaintext exists only in the returned value."""
    pool, org = await _pool(session, principal, pool_id, manage=True)
    if description is None or not description.strip():
        raise Invalid(
            "description is required for an agent token", pointer="/data/attributes/description"
        )
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise Invalid(
            f"description must be at most {MAX_DESCRIPTION_LENGTH} characters",
            pointer="/data/attributes/description",
        )
    plaintext = generate_token()
    token = Token(
        id=new_id("at"),
        kind=KIND_AGENT_POOL,
        token_hash=hash_token(plaintext),
        organization_id=org.id,
        agent_pool_id=pool.id,
        description=description,
        created_by_id=principal.user_id,
    )
    session.add(token)
    await session.flush()
    return IssuedToken(token, plaintext)


async def list_tokens(
    session: AsyncSession, principal: Principal, pool_id: str, *, offset: int, limit: int
) -> tuple[Sequence[Token], int]:
    pool, _ = await _pool(session, principal, pool_id, manage=True)
    return await token_page(
        session,
        Token.agent_pool_id == pool.id,
        Token.kind == KIND_AGENT_POOL,
        offset=offset,
        limit=limit,
    )


# -- agents --------------------------------------------------------------------------------


async def _agent_views(
    session: AsyncSession, agents: Sequence[Agent], cutoff: datetime
) -> list[AgentView]:
    ids = [a.id for a in agents]
    running: dict[str, int] = {}
    if ids:
        running = {
            str(agent_id): int(count)
            for agent_id, count in await session.execute(
                select(Job.agent_id, func.count())
                .where(Job.agent_id.in_(ids), Job.status == "running")
                .group_by(Job.agent_id)
            )
        }
    views = []
    for agent in agents:
        status = shown_status(agent, cutoff)
        views.append(AgentView(agent, status, status in (IDLE, BUSY), running.get(agent.id, 0)))
    return views


async def _agent_page(
    session: AsyncSession, conditions: list[Any], cutoff: datetime, offset: int, limit: int
) -> tuple[list[AgentView], int]:
    where = and_(true(), *conditions)
    total = (
        await session.execute(select(func.count()).select_from(Agent).where(where))
    ).scalar_one()
    agents = (
        (
            await session.execute(
                select(Agent)
                .where(where)
                .order_by(Agent.pool_id.is_not(None), Agent.name, Agent.id)
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return await _agent_views(session, agents, cutoff), total


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise Invalid(f"filter[status] must be one of {', '.join(STATUSES)}")


async def list_agents(
    session: AsyncSession,
    principal: Principal,
    pool_id: str,
    *,
    cutoff: datetime,
    last_ping_since: datetime | None = None,
    status: str | None = None,
    offset: int,
    limit: int,
) -> tuple[list[AgentView], int]:
    """One page of the pool's agents by name (TFE's ``filter[last-ping-since]`` and
    ``filter[status]`` narrow it)."""
    pool, _ = await _pool(session, principal, pool_id)
    _check_status(status)
    conditions: list[Any] = [Agent.pool_id == pool.id]
    if last_ping_since is not None:
        conditions.append(Agent.last_ping_at >= last_ping_since)
    if status is not None:
        conditions.append(_status_condition(status, cutoff))
    return await _agent_page(session, conditions, cutoff, offset, limit)


async def list_all_agents(
    session: AsyncSession,
    principal: Principal,
    *,
    cutoff: datetime,
    status: str | None = None,
    offset: int,
    limit: int,
) -> tuple[list[AgentView], int]:
    """Every agent, built-in ones first (platform administrators)."""
    authorize(principal, Action.PLATFORM_ADMIN)
    _check_status(status)
    conditions = [] if status is None else [_status_condition(status, cutoff)]
    return await _agent_page(session, conditions, cutoff, offset, limit)


async def get_agent(
    session: AsyncSession, principal: Principal, agent_id: str, *, cutoff: datetime
) -> AgentView:
    """An agent of a pool the caller may read; a built-in agent for platform admins only."""
    agent = await session.get(Agent, agent_id) if looks_like_id(agent_id, "agent") else None
    if agent is None:
        raise NotFound("agent not found")
    if agent.pool_id is None:
        if not principal.is_admin:
            raise NotFound("agent not found")
    else:
        found = await _load(session, agent.pool_id)
        if found is None:  # pragma: no cover - the foreign key cascades
            raise NotFound("agent not found")
        authorize(principal, Action.ORG_READ, organization_id=found[1].id, what="agent")
    return (await _agent_views(session, [agent], cutoff))[0]


# -- metrics -------------------------------------------------------------------------------


async def gauges(session: AsyncSession, cutoff: datetime) -> list[PoolGauge]:
    """Every pool's numbers and the built-in agents' (``pool`` "builtin"), in three
    grouped queries, for the /metrics refresher."""
    online = _online(cutoff)
    agents: dict[str | None, tuple[int, int]] = {
        pool_id: (int(count or 0), int(capacity or 0))
        for pool_id, count, capacity in await session.execute(
            select(
                Agent.pool_id,
                func.sum(case((online, 1), else_=0)),
                func.sum(case((online, Agent.capacity), else_=0)),
            ).group_by(Agent.pool_id)
        )
    }
    jobs: dict[tuple[str | None, str], int] = {
        (pool_id, status): int(count)
        for pool_id, status, count in await session.execute(
            select(Job.pool_id, Job.status, func.count())
            .where(Job.status.in_(("queued", "running")))
            .group_by(Job.pool_id, Job.status)
        )
    }
    pools: list[tuple[str | None, str, str]] = [(None, BUILTIN, "")]
    pools += [
        (pool_id, name, org_name)
        for pool_id, name, org_name in await session.execute(
            select(AgentPool.id, AgentPool.name, Organization.name).join(
                Organization, Organization.id == AgentPool.organization_id
            )
        )
    ]
    out = []
    for pool_id, name, org_name in pools:
        online_count, capacity = agents.get(pool_id, (0, 0))
        out.append(
            PoolGauge(
                pool=pool_id or BUILTIN,
                name=name,
                organization=org_name,
                agents_online=online_count,
                capacity=capacity,
                active_jobs=jobs.get((pool_id, "running"), 0),
                queued_jobs=jobs.get((pool_id, "queued"), 0),
            )
        )
    return out


def heartbeat_cutoff(timeout_seconds: float) -> datetime:
    """Agents heard of since this moment are online."""
    return utcnow() - timedelta(seconds=timeout_seconds)
