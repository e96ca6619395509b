"""Reading runs: the lists and their filters, the organization's queue and capacity, run
events, and views (a run with its plan, apply, workspace and the caller's permissions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize, can
from terrapod.access.principal import Principal
from terrapod.db.ids import looks_like_id
from terrapod.errors import NotFound
from terrapod.organizations.models import Organization
from terrapod.runs import machine as m
from terrapod.runs.models import Apply, Job, Plan, Run, RunEvent
from terrapod.runs.queue import RunContext
from terrapod.runs.service import get
from terrapod.users.models import User
from terrapod.workspaces.models import Workspace


@dataclass(frozen=True)
class RunFilter:
    operations: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    status_group: str | None = None
    timeframe_since: datetime | None = None
    timeframe_until: datetime | None = None
    workspace_names: tuple[str, ...] = ()
    agent_pool_names: tuple[str, ...] = ()
    search_user: str | None = None
    search_commit: str | None = None
    search_basic: str | None = None
    # Workspace lists leave plan-only runs out unless filter[operation] asks for them.
    include_plan_only: bool = True


# seed 001's operations, each a flag of the run; a run's operation is its first flag that is
# set in this order (machine.operation), plan_and_apply when none is.
_OPERATION_FLAGS = (
    ("plan_only", Run.plan_only),
    ("save_plan", Run.save_plan),
    ("refresh_only", Run.refresh_only),
    ("destroy", Run.is_destroy),
    ("empty_apply", Run.allow_empty_apply),
)


def _operation_condition(op: str) -> Any:
    conditions: list[Any] = []
    for name, flag in _OPERATION_FLAGS:
        if name == op:
            return and_(*conditions, flag.is_(True))
        conditions.append(flag.is_(False))
    return and_(*conditions)  # plan_and_apply


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conditions(filters: RunFilter) -> list[Any]:
    conditions: list[Any] = []
    if filters.operations:
        conditions.append(or_(*(_operation_condition(op) for op in filters.operations)))
    elif not filters.include_plan_only:
        conditions.append(Run.plan_only.is_(False))
    if filters.statuses:
        conditions.append(Run.status.in_(filters.statuses))
    if filters.sources:
        conditions.append(Run.source.in_(filters.sources))
    if filters.status_group:
        conditions.append(Run.status.in_(sorted(m.STATUS_GROUPS[filters.status_group])))
    if filters.timeframe_since is not None:
        conditions.append(Run.created_at >= filters.timeframe_since)
    if filters.timeframe_until is not None:
        conditions.append(Run.created_at < filters.timeframe_until)
    if filters.workspace_names:
        conditions.append(
            Run.workspace_id.in_(
                select(Workspace.id).where(Workspace.name.in_(filters.workspace_names))
            )
        )
    if filters.agent_pool_names:
        # Runs execute on the built-in agent, which belongs to no named pool yet.
        conditions.append(false())
    user_search = filters.search_user
    if filters.search_commit:
        conditions.append(false())  # no run has VCS commit information yet
    elif user_search:
        conditions.append(_by_user(user_search))
    elif filters.search_basic:
        text = filters.search_basic
        conditions.append(
            or_(
                Run.id == text,
                func.lower(Run.message).like(_like(text), escape="\\"),
                _by_user(text),
            )
        )
    return conditions


def _by_user(name: str) -> Any:
    return Run.created_by_id.in_(
        select(User.id).where(func.lower(User.username).like(_like(name), escape="\\"))
    )


async def list_in_workspace(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    filters: RunFilter,
    *,
    offset: int,
    limit: int,
) -> tuple[Sequence[Run], int]:
    """A page of the workspace's runs, newest first, and the total count."""
    authorize(
        principal,
        Action.WS_READ,
        organization_id=org.id,
        workspace_id=workspace.id,
        workspace_creator=workspace.created_by_id,
        what="workspace",
    )
    where = and_(Run.workspace_id == workspace.id, *_conditions(filters))
    total = (await session.execute(select(func.count()).select_from(Run).where(where))).scalar_one()
    rows = (
        (
            await session.execute(
                select(Run)
                .where(where)
                .order_by(Run.created_at.desc(), Run.id.desc())
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return rows, total


async def list_in_organization(
    session: AsyncSession,
    principal: Principal,
    org: Organization,
    filters: RunFilter,
    *,
    offset: int,
    limit: int,
) -> tuple[Sequence[Run], bool]:
    """A page of the organization's runs, newest first, and whether another page follows
    (TFE leaves total-count out of this list, so it is never counted)."""
    authorize(principal, Action.ORG_READ, organization_id=org.id, what="organization")
    where = and_(Run.organization_id == org.id, *_conditions(filters))
    rows = (
        (
            await session.execute(
                select(Run)
                .where(where)
                .order_by(Run.created_at.desc(), Run.id.desc())
                .offset(offset)
                .limit(limit + 1)
            )
        )
        .scalars()
        .all()
    )
    return rows[:limit], len(rows) > limit


async def queue_of_organization(
    session: AsyncSession, principal: Principal, org: Organization, *, offset: int, limit: int
) -> tuple[list[tuple[Run, int]], int, int]:
    """Runs waiting for an agent, oldest first, with their position in the queue, the total,
    and how many jobs are running now (``GET /organizations/:org/runs/queue``)."""
    authorize(principal, Action.ORG_READ, organization_id=org.id, what="organization")
    running, queued = await _capacity(session, org.id)
    where = and_(Run.organization_id == org.id, Run.status.in_((m.PLAN_QUEUED, m.APPLY_QUEUED)))
    rows = (
        (
            await session.execute(
                select(Run)
                .where(where)
                .order_by(Run.updated_at, Run.id)
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    # position-in-queue counts the jobs that start before this one, the running ones included
    # (position - running is the number of queued runs ahead). The CLI only asks while a run
    # is pending, and Terrapod's runs leave pending as soon as their workspace is free, so
    # the CLI's "Waiting for N queued run(s)" message does not appear; API clients use it.
    return [(r, running + offset + i) for i, r in enumerate(rows)], queued, running


async def _capacity(session: AsyncSession, org_id: str) -> tuple[int, int]:
    rows = await session.execute(
        select(Job.status, func.count())
        .join(Run, Run.id == Job.run_id)
        .where(Run.organization_id == org_id, Job.status.in_(("queued", "running")))
        .group_by(Job.status)
    )
    counts: dict[str, int] = dict(rows.all())
    return int(counts.get("running", 0)), int(counts.get("queued", 0))


async def capacity(
    session: AsyncSession, principal: Principal, org: Organization
) -> tuple[int, int]:
    """(running, pending) jobs in the organization (``GET /organizations/:org/capacity``)."""
    authorize(principal, Action.ORG_READ, organization_id=org.id, what="organization")
    return await _capacity(session, org.id)


async def events_of(
    session: AsyncSession, principal: Principal, run_id: str, *, offset: int, limit: int
) -> tuple[RunContext, Sequence[RunEvent], int]:
    ctx = await get(session, principal, run_id)
    where = RunEvent.run_id == ctx.run.id
    total = (
        await session.execute(select(func.count()).select_from(RunEvent).where(where))
    ).scalar_one()
    rows = (
        (
            await session.execute(
                select(RunEvent)
                .where(where)
                .order_by(RunEvent.created_at, RunEvent.id)
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return ctx, rows, total


async def event(session: AsyncSession, principal: Principal, event_id: str) -> RunEvent:
    found = await session.get(RunEvent, event_id) if looks_like_id(event_id, "re") else None
    if found is None:
        raise NotFound("run event not found")
    await get(session, principal, found.run_id)
    return found


# -- views ---------------------------------------------------------------------------------


@dataclass
class RunView:
    run: Run
    workspace: Workspace
    organization: Organization
    plan: Plan
    apply: Apply
    permissions: dict[str, bool] = field(default_factory=dict)


def run_permissions(
    principal: Principal, workspace: Workspace, org: Organization
) -> dict[str, bool]:
    scope = {
        "organization_id": org.id,
        "workspace_id": workspace.id,
        "workspace_creator": workspace.created_by_id,
    }
    person = principal.kind != "organization"
    write = person and can(principal, Action.WS_APPLY, **scope)
    admin = person and can(principal, Action.WS_FORCE_CANCEL_RUN, **scope)
    return {
        "can-apply": write,
        "can-cancel": write,
        "can-comment": write,
        "can-discard": write,
        "can-force-execute": write,
        "can-force-cancel": admin,
        "can-override-policy-check": admin,
    }


async def views(
    session: AsyncSession,
    principal: Principal,
    runs: Sequence[Run],
    workspace: Workspace | None = None,
) -> list[RunView]:
    """Views of a page of runs: one query each for their plans, applies and workspaces."""
    if not runs:
        return []
    plan_rows = await session.execute(select(Plan).where(Plan.run_id.in_([r.id for r in runs])))
    plans = {p.run_id: p for p in plan_rows.scalars()}
    apply_rows = await session.execute(select(Apply).where(Apply.run_id.in_([r.id for r in runs])))
    applies = {a.run_id: a for a in apply_rows.scalars()}
    if workspace is not None:
        owner = await session.get(Organization, workspace.organization_id)
        if owner is None:
            raise NotFound("organization not found")
        pairs = {workspace.id: (workspace, owner)}
    else:
        ws_rows = await session.execute(
            select(Workspace, Organization)
            .join(Organization, Organization.id == Workspace.organization_id)
            .where(Workspace.id.in_({r.workspace_id for r in runs}))
        )
        pairs = {w.id: (w, o) for w, o in ws_rows}
    out = []
    perms_cache: dict[str, dict[str, bool]] = {}
    for run in runs:
        ws, org = pairs[run.workspace_id]
        if ws.id not in perms_cache:
            perms_cache[ws.id] = run_permissions(principal, ws, org)
        out.append(RunView(run, ws, org, plans[run.id], applies[run.id], perms_cache[ws.id]))
    return out
