"""Terraform actions: what the engine reported, recorded; and the reads of seed 002.

Recording (:func:`on_job_finished`, the ``job_finished`` hook wired in :mod:`terrapod.app`):
a finished plan job reports the configuration's ``action`` blocks and the invocations the plan
holds (``terrapod.runner.actions``); the actions are kept per workspace, keyed by module and
address, and each planned invocation becomes a row of its run with no final status yet. An
apply job (finished, errored or canceled) reports the invocations the engine started, with
their timestamps, progress messages and errors; those become ``successful`` or ``failed``,
and the planned ones it never started ``not_invoked``. An apply whose output was not
Terraform's JSON lines cannot tell invocations apart: a finished one marks every planned
invocation ``successful``, any other end ``not_invoked``.

Reading needs read access to the action's workspace (an action or run the caller may not
see is 404). A planned invocation of a run that ended without applying counts as
``not_invoked``; of a run still going, as in progress.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, cast, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize
from terrapod.access.principal import Principal
from terrapod.actions.models import ROOT_MODULE, ActionInvocation, TerraformAction
from terrapod.db.hooks import JobFinished
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import NotFound
from terrapod.observability.logging import get_logger
from terrapod.organizations.models import Organization
from terrapod.runs import machine as m
from terrapod.runs.models import Run
from terrapod.users.models import User
from terrapod.workspaces.models import Workspace

log = get_logger("terrapod.actions")

# The invoked-by value of a run no person queued (seed 002).
NOT_A_USER = "system:not_a_user"
METHODS = ("direct", "lifecycle")
FINAL_STATUSES = ("failed", "not_invoked", "successful")
RUN_AGGREGATES = ("successful", "not_successful", "not_invoked", "run_in_progress")
GROUP_AGGREGATES = ("successful", "not_invoked", "not_successful")
# The run sources seed 002 lets filter[source] name (go-tfe's RunSource values).
SOURCES = (
    "tfe-api",
    "terraform",
    "terraform+cloud",
    "tfe-configuration-version",
    "tfe-run-trigger",
    "tfe-ui",
)


@dataclass(frozen=True)
class TimeRange:
    """``[gte]``, ``[gt]``, ``[lte]``, ``[lt]`` bounds of a timestamp filter."""

    gte: datetime | None = None
    gt: datetime | None = None
    lte: datetime | None = None
    lt: datetime | None = None

    def clauses(self, column: Any) -> list[ColumnElement[bool]]:
        found = []
        if self.gte is not None:
            found.append(column >= self.gte)
        if self.gt is not None:
            found.append(column > self.gt)
        if self.lte is not None:
            found.append(column <= self.lte)
        if self.lt is not None:
            found.append(column < self.lt)
        return found


@dataclass(frozen=True)
class ActionFilters:
    providers: tuple[str, ...] = ()
    module_addresses: tuple[str, ...] = ()
    last_invoked: TimeRange = TimeRange()


@dataclass(frozen=True)
class SummaryFilters:
    run_id: str | None = None
    methods: tuple[str, ...] = ()
    aggregates: tuple[str, ...] = ()
    invoked_by: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    invoked: TimeRange = TimeRange()


@dataclass(frozen=True)
class ActionView:
    action: TerraformAction
    invocation_count: int | None = None


@dataclass(frozen=True)
class RunSummary:
    action_id: str
    run_id: str
    aggregate: str
    method: str
    invoked_at: datetime | None
    username: str | None
    successful: int
    failed: int
    planned: int


@dataclass(frozen=True)
class InvocationView:
    invocation: ActionInvocation
    status: str | None
    """The final status, ``not_invoked`` for a planned one of a run that ended without it."""


@dataclass(frozen=True)
class ResourceGroup:
    address: str
    aggregate: str
    invocations: list[InvocationView]


# -- recording -----------------------------------------------------------------------------


async def on_job_finished(session: AsyncSession, subject: JobFinished) -> None:
    """Record the actions and invocations a plan or apply job reported (module docstring)."""
    report = subject.report
    if subject.phase == "plan" and (subject.outcome != "finished" or report is None):
        return
    try:
        # A savepoint: whatever goes wrong here, the run still moves on.
        async with session.begin_nested():
            if subject.phase == "plan":
                await _record_plan(session, subject.run, report)
            else:
                await _record_apply(session, subject.run, subject.outcome, report)
    except Exception:
        log.exception("recording the run's Terraform actions failed", run=subject.run.id)


def _wire_module(module_address: str) -> str:
    return module_address or ROOT_MODULE


async def _record_plan(session: AsyncSession, run: Run, report: Any) -> None:
    declared = list(getattr(report, "actions", ()) or ())
    planned = list(getattr(report, "action_invocations", None) or ())
    if not declared and not planned:
        return
    existing = {
        (a.module_address, a.address): a
        for a in (
            await session.scalars(
                select(TerraformAction).where(TerraformAction.workspace_id == run.workspace_id)
            )
        ).all()
    }

    def action_for(module_address: str, address: str, provider: str) -> TerraformAction:
        key = (_wire_module(module_address), address)
        action = existing.get(key)
        if action is None:
            action = TerraformAction(
                id=new_id("action"),
                workspace_id=run.workspace_id,
                module_address=key[0],
                address=address,
                provider=provider,
                instance_type="single",
            )
            session.add(action)
            existing[key] = action
        return action

    for d in declared:
        action = action_for(d.module_address, d.address, d.provider)
        action.provider = d.provider or action.provider
        action.instance_type = d.instance_type
        action.count_value = d.count_value
        action.for_each_values = None if d.instance_type != "for_each" else action.for_each_values
    # No ORM relationship orders the inserts: the actions' rows go first.
    await session.flush()
    for order, p in enumerate(planned):
        action = action_for(p.module_address, p.address, p.provider)
        _note_key(action, p.action_key)
        invocation = ActionInvocation(
            id=new_id("ai"),
            action_id=action.id,
            run_id=run.id,
            match_key=p.match_key,
            invocation_method=p.method,
            action_key=p.action_key,
            action_trigger_event=p.trigger_event,
            triggering_resource_address=p.triggering_resource_address,
            action_trigger_block_index=p.trigger_block_index,
            actions_list_index=p.actions_list_index,
            position=order,
            messages=[],
        )
        session.add(invocation)
        action.last_invocation_id = invocation.id
        action.last_invoked_at = None
    await session.flush()


def _note_key(action: TerraformAction, key: Any) -> None:
    """An instance key tells how the action is repeated, when the configuration did not."""
    if isinstance(key, bool) or key is None:
        return
    if isinstance(key, int):
        action.instance_type = "count"
        action.count_value = max(action.count_value or 0, key + 1)
    elif isinstance(key, str):
        action.instance_type = "for_each"
        values = list(action.for_each_values or [])
        if key not in values:
            action.for_each_values = sorted([*values, key])


async def _record_apply(session: AsyncSession, run: Run, outcome: str, report: Any) -> None:
    invocations = list(
        (
            await session.scalars(select(ActionInvocation).where(ActionInvocation.run_id == run.id))
        ).all()
    )
    if not invocations:
        return
    reported = getattr(report, "action_invocations", None) if report is not None else None
    by_key = {i.match_key: i for i in invocations}
    if reported is None:
        status = "successful" if outcome == "finished" else "not_invoked"
        for invocation in invocations:
            invocation.final_status = status
    else:
        for r in reported:
            found = by_key.get(r.match_key)
            if found is None:
                continue  # the engine invoked nothing it had not planned; nothing to attach
            invocation = found
            invocation.final_status = r.status if r.status in FINAL_STATUSES else "failed"
            invocation.invoked_at = _parse_time(r.started_at)
            invocation.completed_at = _parse_time(r.completed_at)
            invocation.messages = list(r.messages)
            invocation.error = r.error
        for invocation in invocations:
            if invocation.final_status is None:
                invocation.final_status = "not_invoked"
    await _note_last_invocations(session, invocations)


async def _note_last_invocations(
    session: AsyncSession, invocations: Sequence[ActionInvocation]
) -> None:
    """Each action's last invocation: its newest one among ``invocations`` by invocation
    time."""
    newest: dict[str, ActionInvocation] = {}
    for invocation in invocations:
        if invocation.invoked_at is None:
            continue
        best = newest.get(invocation.action_id)
        if best is None or (best.invoked_at or invocation.invoked_at) <= invocation.invoked_at:
            newest[invocation.action_id] = invocation
    if newest:
        actions = (
            await session.scalars(
                select(TerraformAction).where(TerraformAction.id.in_(list(newest)))
            )
        ).all()
        for action in actions:
            action.last_invocation_id = newest[action.id].id
            action.last_invoked_at = newest[action.id].invoked_at
    await session.flush()


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# -- reads ---------------------------------------------------------------------------------


def _authorize_read(
    principal: Principal, workspace: Workspace, org: Organization, what: str
) -> None:
    authorize(
        principal,
        Action.WS_READ,
        organization_id=org.id,
        workspace_id=workspace.id,
        workspace_creator=workspace.created_by_id,
        what=what,
    )


async def list_actions(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    filters: ActionFilters,
    *,
    offset: int,
    limit: int,
) -> tuple[list[ActionView], int]:
    """One page of the workspace's actions (by module, then address) and their count."""
    _authorize_read(principal, workspace, org, "workspace")
    where = [TerraformAction.workspace_id == workspace.id]
    if filters.providers:
        where.append(TerraformAction.provider.in_(filters.providers))
    if filters.module_addresses:
        where.append(TerraformAction.module_address.in_(filters.module_addresses))
    where += filters.last_invoked.clauses(TerraformAction.last_invoked_at)
    total = (
        await session.execute(select(func.count()).select_from(TerraformAction).where(*where))
    ).scalar_one()
    rows = await session.scalars(
        select(TerraformAction)
        .where(*where)
        .order_by(
            TerraformAction.module_address != ROOT_MODULE,
            TerraformAction.module_address,
            TerraformAction.address,
        )
        .offset(offset)
        .limit(limit)
    )
    return [ActionView(a) for a in rows.all()], total


async def providers(
    session: AsyncSession, principal: Principal, workspace: Workspace, org: Organization
) -> list[str]:
    """The providers of the workspace's actions (filter[provider] values), sorted."""
    _authorize_read(principal, workspace, org, "workspace")
    rows = await session.scalars(
        select(TerraformAction.provider)
        .where(TerraformAction.workspace_id == workspace.id)
        .distinct()
        .order_by(TerraformAction.provider)
    )
    return list(rows.all())


async def _load_action(
    session: AsyncSession, principal: Principal, action_id: str
) -> tuple[TerraformAction, Workspace]:
    found = None
    if looks_like_id(action_id, "action"):
        found = (
            await session.execute(
                select(TerraformAction, Workspace, Organization)
                .join(Workspace, Workspace.id == TerraformAction.workspace_id)
                .join(Organization, Organization.id == Workspace.organization_id)
                .where(TerraformAction.id == action_id)
            )
        ).first()
    if found is None:
        raise NotFound("action not found")
    action, workspace, org = found
    _authorize_read(principal, workspace, org, "action")
    return action, workspace


async def get_action(session: AsyncSession, principal: Principal, action_id: str) -> ActionView:
    """The action with its number of invocations."""
    action, _ = await _load_action(session, principal, action_id)
    count = (
        await session.execute(
            select(func.count())
            .select_from(ActionInvocation)
            .where(ActionInvocation.action_id == action.id)
        )
    ).scalar_one()
    return ActionView(action, count)


def _effective_status() -> ColumnElement[Any]:
    """The final status; a planned invocation of a run that has ended is ``not_invoked``."""
    return case(
        (ActionInvocation.final_status.is_not(None), ActionInvocation.final_status),
        (Run.status.in_(sorted(m.FINAL)), literal("not_invoked")),
        else_=None,
    )


def _count_of(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def run_summaries(
    session: AsyncSession,
    principal: Principal,
    action_id: str,
    filters: SummaryFilters,
    *,
    offset: int,
    limit: int,
) -> tuple[list[RunSummary], int]:
    """The action's invocations grouped by run, newest run first, and the number of runs."""
    action, _ = await _load_action(session, principal, action_id)
    status = _effective_status()
    grouped = (
        select(
            ActionInvocation.run_id.label("run_id"),
            func.count().label("planned"),
            _count_of(status == "successful").label("successful"),
            _count_of(status == "failed").label("failed"),
            _count_of(status == "not_invoked").label("not_invoked"),
            _count_of(status.is_(None)).label("pending"),
            func.max(ActionInvocation.invoked_at).label("invoked_at"),
            # "lifecycle" sorts after "direct": a run with any lifecycle invocation says so.
            func.max(ActionInvocation.invocation_method).label("method"),
        )
        .join(Run, Run.id == ActionInvocation.run_id)
        .where(ActionInvocation.action_id == action.id)
        .group_by(ActionInvocation.run_id)
        .subquery()
    )
    aggregate = case(
        (grouped.c.failed > 0, literal("not_successful")),
        (grouped.c.pending > 0, literal("run_in_progress")),
        (grouped.c.successful == grouped.c.planned, literal("successful")),
        (grouped.c.not_invoked == grouped.c.planned, literal("not_invoked")),
        else_=literal("not_successful"),
    )
    where: list[ColumnElement[bool]] = []
    if filters.run_id is not None:
        where.append(grouped.c.run_id == filters.run_id)
    if filters.methods:
        where.append(grouped.c.method.in_(filters.methods))
    if filters.aggregates:
        where.append(aggregate.in_(filters.aggregates))
    if filters.invoked_by:
        people = [u for u in filters.invoked_by if u != NOT_A_USER]
        either = [User.username.in_(people)] if people else []
        if NOT_A_USER in filters.invoked_by:
            either.append(User.id.is_(None))
        where.append(or_(*either))
    if filters.sources:
        where.append(Run.source.in_(filters.sources))
    where += filters.invoked.clauses(grouped.c.invoked_at)
    query = (
        select(grouped, aggregate.label("aggregate"), User.username)
        .join(Run, Run.id == grouped.c.run_id)
        .outerjoin(User, User.id == Run.created_by_id)
        .where(*where)
    )
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.execute(
        query.order_by(Run.created_at.desc(), Run.id.desc()).offset(offset).limit(limit)
    )
    return [
        RunSummary(
            action_id=action.id,
            run_id=row.run_id,
            aggregate=row.aggregate,
            method=row.method,
            invoked_at=row.invoked_at,
            username=row.username,
            successful=int(row.successful),
            failed=int(row.failed),
            planned=int(row.planned),
        )
        for row in rows.all()
    ], total


async def invoked_by(session: AsyncSession, principal: Principal, action_id: str) -> list[str]:
    """Who queued the runs that invoked the action (filter[invoked_by] values), sorted;
    ``system:not_a_user`` for runs no person queued."""
    action, _ = await _load_action(session, principal, action_id)
    rows = await session.execute(
        select(User.username)
        .select_from(ActionInvocation)
        .join(Run, Run.id == ActionInvocation.run_id)
        .outerjoin(User, User.id == Run.created_by_id)
        .where(ActionInvocation.action_id == action.id)
        .distinct()
    )
    names = {row.username or NOT_A_USER for row in rows.all()}
    return sorted(names)


async def _load_run(
    session: AsyncSession, principal: Principal, action_id: str, run_id: str
) -> tuple[TerraformAction, Run]:
    action, _ = await _load_action(session, principal, action_id)
    run = None
    if looks_like_id(run_id, "run"):
        run = await session.get(Run, run_id)
    if run is None or run.workspace_id != action.workspace_id:
        raise NotFound("run not found")
    return action, run


def _search(q: str, status: ColumnElement[Any]) -> ColumnElement[bool]:
    """``q`` (case-insensitive, anywhere) in an invocation's key, status, trigger event or
    triggering resource address."""
    needle = q.lower()
    fields = (
        cast(ActionInvocation.action_key, String),
        status,
        ActionInvocation.action_trigger_event,
        ActionInvocation.triggering_resource_address,
    )
    return or_(*(func.lower(f).contains(needle, autoescape=True) for f in fields))


async def run_invocations(
    session: AsyncSession,
    principal: Principal,
    action_id: str,
    run_id: str,
    *,
    statuses: Sequence[str] = (),
    q: str | None = None,
    offset: int,
    limit: int,
) -> tuple[list[InvocationView], int]:
    """The action's invocations in the run, in execution order (then the plan's), and their
    count."""
    action, run = await _load_run(session, principal, action_id, run_id)
    status = _effective_status()
    where: list[ColumnElement[bool]] = [
        ActionInvocation.action_id == action.id,
        ActionInvocation.run_id == run.id,
    ]
    if statuses:
        where.append(status.in_(list(statuses)))
    if q:
        where.append(_search(q, status))
    base = select(ActionInvocation, status.label("status")).join(
        Run, Run.id == ActionInvocation.run_id
    )
    total = (
        await session.execute(
            select(func.count())
            .select_from(ActionInvocation)
            .join(Run, Run.id == ActionInvocation.run_id)
            .where(*where)
        )
    ).scalar_one()
    rows = await session.execute(
        base.where(*where)
        .order_by(
            ActionInvocation.invoked_at.is_(None),
            ActionInvocation.invoked_at,
            ActionInvocation.position,
        )
        .offset(offset)
        .limit(limit)
    )
    return [InvocationView(row[0], row.status) for row in rows.all()], total


async def resource_groups(
    session: AsyncSession,
    principal: Principal,
    action_id: str,
    run_id: str,
    *,
    aggregates: Sequence[str] = (),
    q: str | None = None,
    offset: int,
    limit: int,
) -> tuple[list[ResourceGroup], int, int]:
    """The action's lifecycle invocations in the run grouped by triggering resource (one page
    of groups, by address), the number of groups and the number of their invocations."""
    action, run = await _load_run(session, principal, action_id, run_id)
    status = _effective_status()
    scope = and_(
        ActionInvocation.action_id == action.id,
        ActionInvocation.run_id == run.id,
        ActionInvocation.invocation_method == "lifecycle",
        ActionInvocation.triggering_resource_address.is_not(None),
    )
    count = func.count()
    successful = _count_of(status == "successful")
    failed = _count_of(status == "failed")
    aggregate = case(
        (failed > 0, literal("not_successful")),
        (successful == count, literal("successful")),
        (successful == 0, literal("not_invoked")),
        else_=literal("not_successful"),
    )
    address = ActionInvocation.triggering_resource_address
    having: list[ColumnElement[bool]] = []
    if aggregates:
        having.append(aggregate.in_(list(aggregates)))
    if q:
        needle = q.lower()
        having.append(
            or_(
                func.max(case((_search(q, status), 1), else_=0)) == 1,
                func.lower(aggregate).contains(needle, autoescape=True),
            )
        )
    groups = (
        select(address.label("address"), aggregate.label("aggregate"), count.label("n"))
        .join(Run, Run.id == ActionInvocation.run_id)
        .where(scope)
        .group_by(address)
        .having(*having)
    )
    counted = groups.subquery()
    totals = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(counted.c.n), 0)).select_from(counted)
        )
    ).one()
    page = (await session.execute(groups.order_by(address).offset(offset).limit(limit))).all()
    if not page:
        return [], int(totals[0]), int(totals[1])
    rows = await session.execute(
        select(ActionInvocation, status.label("status"))
        .join(Run, Run.id == ActionInvocation.run_id)
        .where(scope, address.in_([g.address for g in page]))
        .order_by(
            ActionInvocation.invoked_at.is_(None),
            ActionInvocation.invoked_at,
            ActionInvocation.position,
        )
    )
    members: dict[str, list[InvocationView]] = {g.address: [] for g in page}
    for row in rows.all():
        invocation = row[0]
        members[invocation.triggering_resource_address].append(
            InvocationView(invocation, row.status)
        )
    return (
        [ResourceGroup(g.address, g.aggregate, members[g.address]) for g in page],
        int(totals[0]),
        int(totals[1]),
    )
