"""Run rules: creating runs, the workspace queue, the user actions, and what agents report.

Every public function that acts for a person authorizes first and works inside the caller's
transaction. Status changes go through :mod:`terrapod.runs.machine`. Rows that two writers
may change at once (a run, its workspace's lock, a job) are changed with conditional UPDATEs or
read ``FOR UPDATE`` (PostgreSQL); SQLite serializes writers with BEGIN IMMEDIATE.

The queue (:func:`advance`): one non-speculative run at a time holds a workspace, through the
workspace lock (``locked_by = runs/<id>``); the others wait, oldest first. Speculative
(plan-only) runs and saved-plan runs plan without the lock; a saved plan takes it when its
apply is confirmed. A run that ends releases the lock and the next one starts in the same
transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize, can
from terrapod.access.principal import Principal
from terrapod.configversions.models import ERRORED as CV_ERRORED
from terrapod.configversions.models import UPLOADED as CV_UPLOADED
from terrapod.configversions.models import ConfigurationVersion
from terrapod.db.hooks import Hook, after_commit
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import Conflict, Forbidden, Invalid, NotFound
from terrapod.events.bus import publish_after_commit
from terrapod.organizations.models import Organization
from terrapod.runs import logs
from terrapod.runs import machine as m
from terrapod.runs.models import Apply, Job, Plan, Run, RunEvent
from terrapod.storage import keys
from terrapod.storage.base import ObjectStore
from terrapod.timefmt import iso
from terrapod.users.models import User
from terrapod.workspaces.models import Workspace
from terrapod.workspaces.service import validate_terraform_version

DEFAULT_MESSAGE = "Queued manually via the Terraform Enterprise API"
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_ADDRS = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


def _pointer(attribute: str) -> str:
    return "/data/attributes/" + attribute


# -- looking runs up -----------------------------------------------------------------------


@dataclass
class RunContext:
    run: Run
    workspace: Workspace
    organization: Organization


def _authorize(principal: Principal, action: Action, ctx: RunContext) -> None:
    authorize(
        principal,
        action,
        organization_id=ctx.organization.id,
        workspace_id=ctx.workspace.id,
        workspace_creator=ctx.workspace.created_by_id,
        what="run",
    )


def _refuse_organization_token(principal: Principal) -> None:
    # seed 001: "This endpoint cannot be accessed with organization tokens."
    if principal.kind == "organization":
        raise Forbidden("organization tokens cannot queue or act on runs; use a user or team token")


async def _load(session: AsyncSession, run_id: str, *, for_update: bool = False) -> RunContext:
    if not looks_like_id(run_id, "run"):
        raise NotFound("run not found")
    query = (
        select(Run, Workspace, Organization)
        .join(Workspace, Workspace.id == Run.workspace_id)
        .join(Organization, Organization.id == Run.organization_id)
        .where(Run.id == run_id)
    )
    if for_update:
        query = query.with_for_update(of=Run)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound("run not found")
    return RunContext(row[0], row[1], row[2])


async def find(session: AsyncSession, run_id: str) -> RunContext:
    """A run without any authorization: only for callers that hold another credential for
    it (a signed log URL) or act for the run itself (its agent)."""
    return await _load(session, run_id)


async def get(
    session: AsyncSession,
    principal: Principal,
    run_id: str,
    action: Action = Action.WS_READ,
    *,
    for_update: bool = False,
) -> RunContext:
    ctx = await _load(session, run_id, for_update=for_update)
    _authorize(principal, action, ctx)
    return ctx


async def get_by_phase(
    session: AsyncSession, principal: Principal, phase_id: str
) -> tuple[RunContext, Plan | Apply]:
    """A plan or an apply (by its id) and its run, after checking read access."""
    phase = await logs.load_phase(session, phase_id) if "-" in phase_id else None
    if phase is None or not looks_like_id(phase_id, phase_id.split("-", maxsplit=1)[0]):
        raise NotFound("plan or apply not found")
    ctx = await get(session, principal, phase.run_id)
    return ctx, phase


async def phases(session: AsyncSession, run: Run) -> tuple[Plan, Apply]:
    plan = await session.get(Plan, run.plan_id)
    apply = await session.get(Apply, run.apply_id)
    if plan is None or apply is None:  # created together with the run; never apart
        raise NotFound(f"run {run.id} has lost its plan or apply")
    return plan, apply


# -- creating runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """What a client may choose when it creates a run (seed 001, "Create a Run")."""

    message: str | None = None
    is_destroy: bool = False
    refresh: bool = True
    refresh_only: bool = False
    replace_addrs: tuple[str, ...] | None = None
    target_addrs: tuple[str, ...] | None = None
    variables: tuple[tuple[str, str], ...] = ()
    plan_only: bool | None = None
    save_plan: bool = False
    auto_apply: bool | None = None
    allow_empty_apply: bool = False
    allow_config_generation: bool = False
    debugging_mode: bool = False
    terraform_version: str | None = None
    source: str = "tfe-api"
    trigger_reason: str = "manual"
    configuration_version_id: str | None = None


def _validate(options: RunOptions) -> None:
    if options.is_destroy and options.refresh_only:
        raise Invalid(
            "is-destroy and refresh-only cannot both be true", pointer=_pointer("refresh-only")
        )
    if options.save_plan and options.plan_only:
        raise Invalid(
            "a saved-plan run (save-plan) cannot also be plan-only", pointer=_pointer("save-plan")
        )
    for name, addrs in (
        ("target-addrs", options.target_addrs),
        ("replace-addrs", options.replace_addrs),
    ):
        if addrs is None:
            continue
        if len(addrs) > MAX_ADDRS:
            raise Invalid(f"{name} may list at most {MAX_ADDRS} addresses", pointer=_pointer(name))
        for addr in addrs:
            if not addr.strip() or len(addr) > 1024 or addr.startswith("-"):
                raise Invalid(
                    f"{name}: {addr[:60]!r} is not a resource address", pointer=_pointer(name)
                )
    seen: set[str] = set()
    for key, _value in options.variables:
        if not IDENTIFIER_RE.match(key):
            raise Invalid(
                f"variables: {key[:60]!r} is not a valid Terraform variable name",
                pointer=_pointer("variables"),
            )
        if key in seen:
            raise Invalid(f"variables: {key!r} is given twice", pointer=_pointer("variables"))
        seen.add(key)
    if options.terraform_version is not None:
        validate_terraform_version(options.terraform_version)


async def _configuration_version(
    session: AsyncSession, principal: Principal, workspace: Workspace, cv_id: str | None
) -> ConfigurationVersion:
    if cv_id is None:
        cv = (
            await session.execute(
                select(ConfigurationVersion)
                .where(ConfigurationVersion.workspace_id == workspace.id)
                .order_by(ConfigurationVersion.created_at.desc(), ConfigurationVersion.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if cv is None:
            raise Invalid(
                "the workspace has no configuration version; upload one first",
                pointer="/data/relationships/configuration-version",
            )
        return cv
    cv = await session.get(ConfigurationVersion, cv_id) if looks_like_id(cv_id, "cv") else None
    source_ws = await session.get(Workspace, cv.workspace_id) if cv is not None else None
    # A configuration version of another workspace of the same organization may be promoted
    # (seed 001), if the caller may read that workspace.
    if (
        cv is None
        or source_ws is None
        or source_ws.organization_id != workspace.organization_id
        or not can(
            principal,
            Action.WS_READ,
            organization_id=source_ws.organization_id,
            workspace_id=source_ws.id,
            workspace_creator=source_ws.created_by_id,
        )
    ):
        raise NotFound("configuration version not found")
    return cv


async def create(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    options: RunOptions,
) -> Run:
    """Queue a run in ``workspace``; it starts at once when the workspace is free."""
    _refuse_organization_token(principal)
    _validate(options)
    cv = await _configuration_version(
        session, principal, workspace, options.configuration_version_id
    )
    if cv.status == CV_ERRORED:
        raise Invalid(
            f"configuration version {cv.id} errored: {cv.error_message or 'upload failed'}",
            pointer="/data/relationships/configuration-version",
        )
    # A speculative configuration version can only ever be planned.
    plan_only = bool(options.plan_only) or cv.speculative
    scope = {
        "organization_id": org.id,
        "workspace_id": workspace.id,
        "workspace_creator": workspace.created_by_id,
    }
    # seed 003: plan for plan-only runs, write for runs that can be applied.
    authorize(
        principal, Action.WS_QUEUE_RUN if plan_only else Action.WS_APPLY, **scope, what="workspace"
    )
    if workspace.execution_mode == "local":
        raise Conflict(
            f"workspace {workspace.name} uses local execution; set its execution-mode to "
            "remote to run plans in Terrapod"
        )
    if options.terraform_version is not None and not plan_only:
        raise Invalid(
            "terraform-version can only be set for plan-only runs",
            pointer=_pointer("terraform-version"),
        )
    now = utcnow()
    auto_apply = workspace.auto_apply if options.auto_apply is None else options.auto_apply
    run = Run(
        id=new_id("run"),
        workspace_id=workspace.id,
        organization_id=org.id,
        configuration_version_id=cv.id,
        created_by_id=principal.user_id,
        status=m.PENDING,
        status_timestamps={},
        message=options.message if options.message is not None else DEFAULT_MESSAGE,
        source=options.source,
        trigger_reason=options.trigger_reason,
        is_destroy=options.is_destroy,
        refresh=options.refresh,
        refresh_only=options.refresh_only,
        replace_addrs=list(options.replace_addrs) if options.replace_addrs is not None else None,
        target_addrs=list(options.target_addrs) if options.target_addrs is not None else None,
        variables=[{"key": k, "value": v} for k, v in options.variables],
        plan_only=plan_only,
        save_plan=options.save_plan,
        auto_apply=bool(auto_apply) and not plan_only and not options.save_plan,
        allow_empty_apply=options.allow_empty_apply,
        allow_config_generation=options.allow_config_generation,
        debugging_mode=options.debugging_mode,
        terraform_version=options.terraform_version,
        plan_id=new_id("plan"),
        apply_id=new_id("apply"),
        created_at=now,
        updated_at=now,
    )
    m.stamp(run, m.PENDING, now)
    session.add(run)
    await session.flush()  # no ORM relationships: the run row must exist before its phases
    session.add(Plan(id=run.plan_id, run_id=run.id, status="pending", status_timestamps={}))
    session.add(Apply(id=run.apply_id, run_id=run.id, status="pending", status_timestamps={}))
    workspace.latest_run_id = run.id
    await session.flush()
    _event(session, run, "queued", "Run queued", principal.user_id)
    _published(session, run)
    await advance(session, workspace.id)
    return run


async def retry(session: AsyncSession, principal: Principal, ctx: RunContext) -> Run:
    """A new run with the same configuration and settings as a finished one (seed 003)."""
    run = ctx.run
    if run.status not in m.FINAL:
        raise Conflict(f"only a finished run can be retried; run {run.id} is {run.status}")
    options = RunOptions(
        message=run.message,
        is_destroy=run.is_destroy,
        refresh=run.refresh,
        refresh_only=run.refresh_only,
        replace_addrs=tuple(run.replace_addrs) if run.replace_addrs is not None else None,
        target_addrs=tuple(run.target_addrs) if run.target_addrs is not None else None,
        variables=tuple((v["key"], v["value"]) for v in run.variables),
        plan_only=run.plan_only,
        save_plan=run.save_plan,
        auto_apply=run.auto_apply,
        allow_empty_apply=run.allow_empty_apply,
        allow_config_generation=run.allow_config_generation,
        debugging_mode=run.debugging_mode,
        terraform_version=run.terraform_version,
        source=run.source,
        trigger_reason="manual",
        configuration_version_id=run.configuration_version_id,
    )
    new = await create(session, principal, ctx.workspace, ctx.organization, options)
    new.retry_of_id = run.id
    return new


# -- the queue -----------------------------------------------------------------------------


def _event(
    session: AsyncSession, run: Run, action: str, description: str, actor_id: str | None = None
) -> None:
    session.add(
        RunEvent(
            id=new_id("re"),
            run_id=run.id,
            action=action,
            description=description,
            actor_id=actor_id,
            created_at=utcnow(),
        )
    )


def _published(session: AsyncSession, run: Run) -> None:
    publish_after_commit(
        session, "run", {"run_id": run.id, "workspace_id": run.workspace_id, "status": run.status}
    )


def _queue_job(session: AsyncSession, run: Run, phase: str, now: datetime) -> None:
    session.add(Job(id=new_id("job"), run_id=run.id, phase=phase, status="queued", created_at=now))
    publish_after_commit(session, "jobs", {"run_id": run.id, "phase": phase})


async def _set_phase_status(
    session: AsyncSession, phase_id: str, status: str, now: datetime
) -> Plan | Apply:
    phase = await logs.load_phase(session, phase_id)
    if phase is None:
        raise NotFound(f"{phase_id} not found")
    phase.status = status
    phase.status_timestamps = {**(phase.status_timestamps or {}), _phase_stamp(status): _iso(now)}
    return phase


def _phase_stamp(status: str) -> str:
    """TFE's plan/apply ``status-timestamps`` member (``running`` is ``started-at``)."""
    return "started-at" if status == "running" else f"{status}-at"


async def _phase_ended(
    session: AsyncSession, phase: Plan | Apply, status: str, now: datetime
) -> None:
    """A phase reached a terminal status: its log gets its ETX (if it was ever started)."""
    was_running = phase.status == "running"
    phase.status = status
    phase.status_timestamps = {**(phase.status_timestamps or {}), _phase_stamp(status): _iso(now)}
    if was_running:
        await logs.close(session, phase)


def _iso(now: datetime) -> str:
    return iso(now) or ""


async def _start_plan(session: AsyncSession, run: Run, now: datetime) -> None:
    m.move(run, m.PLAN_QUEUED, now)
    await _set_phase_status(session, run.plan_id, "queued", now)
    _queue_job(session, run, "plan", now)
    _published(session, run)


async def _start_apply(session: AsyncSession, run: Run, now: datetime) -> None:
    m.move(run, m.APPLY_QUEUED, now)
    await _set_phase_status(session, run.apply_id, "queued", now)
    _queue_job(session, run, "apply", now)
    _published(session, run)


async def _take_workspace(
    session: AsyncSession, workspace_id: str, run: Run, now: datetime
) -> bool:
    """Lock the workspace for ``run`` if nobody holds it: one conditional UPDATE."""
    result = await session.execute(
        sql_update(Workspace)
        .where(Workspace.id == workspace_id, Workspace.locked.is_(False))
        .values(
            locked=True,
            locked_by_kind="runs",
            locked_by_id=run.id,
            lock_reason=f"Locked by Run {run.id}",
            locked_at=now,
            current_run_id=run.id,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _release_workspace(session: AsyncSession, run: Run) -> bool:
    result = await session.execute(
        sql_update(Workspace)
        .where(
            Workspace.id == run.workspace_id,
            Workspace.locked_by_kind == "runs",
            Workspace.locked_by_id == run.id,
        )
        .values(
            locked=False, locked_by_kind=None, locked_by_id=None, lock_reason=None, locked_at=None
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _waits_for_workspace() -> Any:
    """Runs waiting for their workspace: pending ones that will hold it, and confirmed saved
    plans that need it for their apply."""
    return or_(
        and_(Run.status == m.PENDING, Run.plan_only.is_(False), Run.save_plan.is_(False)),
        and_(Run.status == m.CONFIRMED, Run.save_plan.is_(True)),
    )


async def advance(session: AsyncSession, workspace_id: str) -> None:
    """Start whatever may start in the workspace now. Idempotent; safe to call any time."""
    await session.flush()  # sessions do not autoflush: the queries below must see our changes
    now = utcnow()
    free_runs = (
        (
            await session.execute(
                select(Run)
                .where(
                    Run.workspace_id == workspace_id,
                    Run.status == m.PENDING,
                    or_(Run.plan_only.is_(True), Run.save_plan.is_(True)),
                )
                .order_by(Run.created_at, Run.id)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    for run in free_runs:
        if await _configuration_ready(session, run, now):
            await _start_plan(session, run, now)
    next_run = (
        await session.execute(
            select(Run)
            .where(Run.workspace_id == workspace_id, _waits_for_workspace())
            .order_by(Run.created_at, Run.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if next_run is None or not await _configuration_ready(session, next_run, now):
        return
    if not await _take_workspace(session, workspace_id, next_run, now):
        return
    if next_run.status == m.PENDING:
        await _start_plan(session, next_run, now)
    else:
        await _start_apply(session, next_run, now)


async def _configuration_ready(session: AsyncSession, run: Run, now: datetime) -> bool:
    """True when the run's configuration is uploaded; a run whose configuration errored (or
    vanished) ends errored instead of waiting forever."""
    cv = (
        await session.get(ConfigurationVersion, run.configuration_version_id)
        if run.configuration_version_id
        else None
    )
    if cv is not None and cv.status == CV_UPLOADED:
        return True
    if cv is not None and cv.status == "pending":
        return False
    reason = cv.error_message if cv is not None else "its configuration version was deleted"
    await _end(session, run, m.ERRORED, now, f"configuration version unusable: {reason}")
    return False


async def _end(
    session: AsyncSession,
    run: Run,
    status: str,
    now: datetime,
    description: str,
    actor_id: str | None = None,
    *,
    start_next: bool = True,
) -> None:
    """Move ``run`` to a final status, end its phases and jobs, release its workspace."""
    m.move(run, status, now)
    plan, apply = await phases(session, run)
    for phase in (plan, apply):
        if phase.status == "running":
            ended = "errored" if status == m.ERRORED else "canceled"
        elif phase.status in ("queued", "managed_queued"):
            ended = "canceled" if status in (m.CANCELED, m.FORCE_CANCELED) else "unreachable"
        elif phase.status == "pending":
            ended = "unreachable"
        else:
            continue
        await _phase_ended(session, phase, ended, now)
    await session.execute(
        sql_update(Job)
        .where(Job.run_id == run.id, Job.status.in_(("queued", "running")))
        .values(status="canceled", cancel_requested="force", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    _event(session, run, status, description, actor_id)
    _published(session, run)
    if await _release_workspace(session, run) and start_next:
        await advance(session, run.workspace_id)


# -- user actions --------------------------------------------------------------------------


async def apply(
    session: AsyncSession, principal: Principal, run_id: str, comment: str | None
) -> None:
    """Confirm a run paused after its plan (``actions/apply``)."""
    _refuse_organization_token(principal)
    ctx = await get(session, principal, run_id, Action.WS_APPLY, for_update=True)
    run = ctx.run
    if run.plan_only or run.status not in m.CONFIRMABLE:
        raise Conflict(
            f"run {run.id} is {run.status}, not paused for confirmation; apply not allowed"
        )
    now = utcnow()
    m.move(run, m.CONFIRMED, now)
    run.confirmed_by_id = principal.user_id
    _event(session, run, "confirmed", comment or "Applied by a user", principal.user_id)
    _published(session, run)
    if run.save_plan:
        await advance(session, run.workspace_id)  # takes the workspace when it is free
    else:
        await _start_apply(session, run, now)


async def discard(
    session: AsyncSession, principal: Principal, run_id: str, comment: str | None
) -> None:
    """Skip the rest of a run that waits for confirmation or for its turn."""
    _refuse_organization_token(principal)
    ctx = await get(session, principal, run_id, Action.WS_APPLY, for_update=True)
    await _discard(session, ctx.run, principal.user_id, comment)


async def _discard(
    session: AsyncSession,
    run: Run,
    actor: str | None,
    comment: str | None,
    *,
    start_next: bool = True,
) -> None:
    if not is_discardable(run):
        raise Conflict(
            f"run {run.id} is {run.status}, not paused for confirmation or waiting; "
            "discard not allowed"
        )
    await _end(
        session,
        run,
        m.DISCARDED,
        utcnow(),
        comment or "Discarded by a user",
        actor,
        start_next=start_next,
    )


def is_discardable(run: Run) -> bool:
    return (
        run.status in m.DISCARDABLE
        or run.status == m.PENDING
        or (run.status == m.CONFIRMED and run.save_plan)
    )


def is_cancelable(run: Run) -> bool:
    return (
        run.status in m.EXECUTING
        or run.status in (m.PLAN_QUEUED, m.APPLY_QUEUED)
        or (run.status in (m.PENDING, m.CONFIRMED))
    )


def is_force_cancelable(run: Run, now: datetime | None = None) -> bool:
    return (
        run.status in m.EXECUTING
        and run.force_cancel_available_at is not None
        and (now or utcnow()) >= run.force_cancel_available_at
    )


async def cancel(
    session: AsyncSession,
    principal: Principal,
    run_id: str,
    comment: str | None,
    *,
    cooloff: timedelta,
) -> None:
    """Interrupt a run (like Ctrl-C): a waiting run ends at once; a running engine gets
    SIGINT and the run ends canceled when it has stopped."""
    _refuse_organization_token(principal)
    ctx = await get(session, principal, run_id, Action.WS_APPLY, for_update=True)
    run, now = ctx.run, utcnow()
    if not is_cancelable(run):
        raise Conflict(
            f"run {run.id} is {run.status}, not planning or applying; cancel not allowed"
        )
    if run.status in m.EXECUTING:
        if run.canceled_at is None:
            run.canceled_at = now
            run.force_cancel_available_at = now + cooloff
        await session.execute(
            sql_update(Job)
            .where(
                Job.run_id == run.id,
                Job.status.in_(("queued", "running")),
                Job.cancel_requested.is_(None),
            )
            .values(cancel_requested="cancel")
            .execution_options(synchronize_session=False)
        )
        _event(session, run, "cancel_requested", comment or "Cancel requested", principal.user_id)
        publish_after_commit(session, "jobs", {"run_id": run.id, "cancel": "cancel"})
        return
    run.canceled_at = now
    await _end(session, run, m.CANCELED, now, comment or "Canceled by a user", principal.user_id)


async def force_cancel(
    session: AsyncSession, principal: Principal, run_id: str, comment: str | None
) -> None:
    """End a run whose cancel did not stop it: the engine is killed, the workspace freed."""
    _refuse_organization_token(principal)
    ctx = await get(session, principal, run_id, Action.WS_FORCE_CANCEL_RUN, for_update=True)
    run, now = ctx.run, utcnow()
    if run.status not in m.EXECUTING:
        raise Conflict(f"run {run.id} is {run.status}, not planning or applying")
    if run.canceled_at is None:
        raise Conflict("cancel the run first; force-cancel is for runs a cancel did not stop")
    if not is_force_cancelable(run, now):
        raise Conflict(
            "the force-cancel cool-off has not passed yet; it is available at "
            f"{_iso(run.force_cancel_available_at or now)}"
        )
    await _end(session, run, m.FORCE_CANCELED, now, comment or "Force-canceled", principal.user_id)
    publish_after_commit(session, "jobs", {"run_id": run.id, "cancel": "force"})


async def force_execute(session: AsyncSession, principal: Principal, run_id: str) -> None:
    """Discard every unfinished run ahead of this pending one so it starts now."""
    _refuse_organization_token(principal)
    ctx = await get(session, principal, run_id, Action.WS_APPLY, for_update=True)
    run, ws = ctx.run, ctx.workspace
    if run.status != m.PENDING:
        raise Forbidden(f"run {run.id} is {run.status}; only a pending run can be force-executed")
    if not ws.locked or ws.locked_by_kind != "runs" or ws.locked_by_id == run.id:
        raise Forbidden("the workspace is not locked by another run")
    ahead = (
        (
            await session.execute(
                select(Run)
                .where(
                    Run.workspace_id == ws.id,
                    Run.id != run.id,
                    Run.status.in_(m.NON_FINAL),
                    Run.plan_only.is_(False),
                    or_(Run.created_at < run.created_at, Run.id == ws.locked_by_id),
                )
                .order_by(Run.created_at)
                .with_for_update()
            )
        )
        .scalars()
        .all()
    )
    blocking = [r for r in ahead if not is_discardable(r)]
    if blocking:
        raise Conflict(
            f"run {blocking[0].id} is {blocking[0].status} and cannot be discarded; "
            "cancel it or wait for it"
        )
    for other in ahead:
        await _discard(
            session,
            other,
            principal.user_id,
            f"Discarded to force-execute {run.id}",
            start_next=False,  # the runs ahead all go first; then this one starts
        )
    await advance(session, ws.id)


# -- what agents report --------------------------------------------------------------------


@dataclass
class ClaimedJob:
    job: Job
    run: Run
    workspace: Workspace
    organization: Organization


async def claim_job(session: AsyncSession, agent_id: str) -> ClaimedJob | None:
    """Claim the oldest queued job for ``agent_id``; exactly one agent wins each job.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so concurrent claimers take different jobs.
    SQLite: writers are serialized (BEGIN IMMEDIATE) and the UPDATE is conditional on the
    job still being queued.
    """
    now = utcnow()
    candidate = (
        await session.execute(
            select(Job.id)
            .where(Job.status == "queued")
            .order_by(Job.created_at, Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).scalar_one_or_none()
    if candidate is None:
        return None
    result = await session.execute(
        sql_update(Job)
        .where(Job.id == candidate, Job.status == "queued")
        .values(status="running", agent_id=agent_id, claimed_at=now, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    job = await session.get(Job, candidate, populate_existing=True)
    if job is None:
        return None
    ctx = await _load(session, job.run_id, for_update=True)
    run = ctx.run
    if job.phase == "plan":
        m.move(run, m.PLANNING, now)
        phase = await _set_phase_status(session, run.plan_id, "running", now)
        _event(session, run, "planning", f"Plan started on agent {agent_id}")
    else:
        m.move(run, m.APPLYING, now)
        phase = await _set_phase_status(session, run.apply_id, "running", now)
        _event(session, run, "applying", f"Apply started on agent {agent_id}")
    await logs.open_(session, phase)
    _published(session, run)
    return ClaimedJob(job, run, ctx.workspace, ctx.organization)


async def heartbeat(session: AsyncSession, job_id: str, agent_id: str) -> str | None:
    """Record that ``agent_id`` still runs the job; returns what it must do: None (carry
    on), "cancel" (SIGINT) or "force" (SIGKILL, also when the job is no longer its own)."""
    job = await session.get(Job, job_id, populate_existing=True)
    if job is None or job.agent_id != agent_id or job.status != "running":
        return "force"
    job.heartbeat_at = utcnow()
    return job.cancel_requested


@dataclass
class JobOutcome:
    outcome: str  # finished | errored | canceled
    error: str | None = None
    has_changes: bool | None = None
    additions: int = 0
    changes: int = 0
    destructions: int = 0
    imports: int = 0
    has_plan_file: bool = False
    generated_configuration: bool = False


async def finish_job(session: AsyncSession, job_id: str, agent_id: str, result: JobOutcome) -> None:
    """Record a job's end and move its run on: the next phase, a pause for confirmation, or
    a final status (which releases the workspace and starts the next run)."""
    job = await session.get(Job, job_id, populate_existing=True, with_for_update=True)
    if job is None or job.agent_id != agent_id:
        raise NotFound("job not found")
    now = utcnow()
    if job.status != "running":
        return  # already ended by a force-cancel or the heartbeat sweep; the run has moved on
    job.status = (
        result.outcome if result.outcome in ("finished", "errored", "canceled") else "errored"
    )
    job.finished_at = now
    ctx = await _load(session, job.run_id, for_update=True)
    run = ctx.run
    if run.status in m.FINAL:
        return
    if job.phase == "plan":
        await _plan_finished(session, run, result, now)
    else:
        await _apply_finished(session, run, result, now)


def _counts(phase: Plan | Apply, result: JobOutcome) -> None:
    phase.resource_additions = result.additions
    phase.resource_changes = result.changes
    phase.resource_destructions = result.destructions
    phase.resource_imports = result.imports


async def _plan_finished(
    session: AsyncSession, run: Run, result: JobOutcome, now: datetime
) -> None:
    if result.outcome != "finished":
        status = m.CANCELED if result.outcome == "canceled" else m.ERRORED
        await _end(session, run, status, now, result.error or f"Plan {result.outcome}")
        return
    plan = await session.get(Plan, run.plan_id)
    if plan is None:
        raise NotFound(f"{run.plan_id} not found")
    await _phase_ended(session, plan, "finished", now)
    _counts(plan, result)
    plan.has_changes = result.has_changes
    plan.has_plan_file = result.has_plan_file
    plan.generated_configuration = result.generated_configuration
    run.has_changes = bool(result.has_changes)
    _event(session, run, "planned", "Plan finished")
    if run.plan_only:
        await _end(session, run, m.PLANNED_AND_FINISHED, now, "Speculative plan finished")
        return
    if not run.has_changes and not run.allow_empty_apply:
        await _end(session, run, m.PLANNED_AND_FINISHED, now, "No changes to apply")
        return
    if run.save_plan:
        m.move(run, m.PLANNED_AND_SAVED, now)
        _published(session, run)
        return
    if run.auto_apply:
        m.stamp(run, m.PLANNED, now)
        await _start_apply(session, run, now)
        return
    m.move(run, m.PLANNED, now)
    _published(session, run)


async def _apply_finished(
    session: AsyncSession, run: Run, result: JobOutcome, now: datetime
) -> None:
    apply = await session.get(Apply, run.apply_id)
    if apply is None:
        raise NotFound(f"{run.apply_id} not found")
    _counts(apply, result)
    if result.outcome == "finished":
        await _phase_ended(session, apply, "finished", now)
        await _end(session, run, m.APPLIED, now, "Apply finished")
        return
    status = m.CANCELED if result.outcome == "canceled" else m.ERRORED
    await _end(session, run, status, now, result.error or f"Apply {result.outcome}")


async def fail_stale_jobs(session: AsyncSession, silence: timedelta) -> list[str]:
    """End the runs of running jobs whose agent stopped heartbeating; returns their run ids."""
    cutoff = utcnow() - silence
    stale = (
        (
            await session.execute(
                select(Job)
                .where(Job.status == "running", Job.heartbeat_at < cutoff)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    ended: list[str] = []
    now = utcnow()
    for job in stale:
        job.status = "errored"
        job.finished_at = now
        ctx = await _load(session, job.run_id, for_update=True)
        if ctx.run.status not in m.FINAL:
            await _end(
                session,
                ctx.run,
                m.ERRORED,
                now,
                f"The agent running the {job.phase} ({job.agent_id}) stopped responding",
            )
            ended.append(ctx.run.id)
    return ended


async def workspaces_waiting(session: AsyncSession) -> list[str]:
    """Workspaces with runs waiting to start (for the periodic sweep that recovers lost
    wake-ups)."""
    rows = await session.execute(
        select(Run.workspace_id)
        .where(Run.status.in_((m.PENDING, m.CONFIRMED)))
        .group_by(Run.workspace_id)
    )
    return [r[0] for r in rows]


# -- lists ---------------------------------------------------------------------------------


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


def _operation_condition(op: str) -> Any:
    conditions = {
        "plan_only": Run.plan_only.is_(True),
        "save_plan": and_(Run.plan_only.is_(False), Run.save_plan.is_(True)),
        "refresh_only": and_(
            Run.plan_only.is_(False), Run.save_plan.is_(False), Run.refresh_only.is_(True)
        ),
        "destroy": and_(
            Run.plan_only.is_(False),
            Run.save_plan.is_(False),
            Run.refresh_only.is_(False),
            Run.is_destroy.is_(True),
        ),
        "empty_apply": and_(
            Run.plan_only.is_(False),
            Run.save_plan.is_(False),
            Run.refresh_only.is_(False),
            Run.is_destroy.is_(False),
            Run.allow_empty_apply.is_(True),
        ),
        "plan_and_apply": and_(
            Run.plan_only.is_(False),
            Run.save_plan.is_(False),
            Run.refresh_only.is_(False),
            Run.is_destroy.is_(False),
            Run.allow_empty_apply.is_(False),
        ),
    }
    return conditions[op]


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
    # position-in-queue counts the runs that must start first, the running ones included, so
    # the CLI's "Waiting for N queued run(s)" (position - running) is the number ahead.
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


# -- reactions to lower domains (wired in terrapod.app.wire_hooks) -------------------------


async def on_configuration_uploaded(session: AsyncSession, cv: ConfigurationVersion) -> None:
    """``auto-queue-runs``: an uploaded configuration version queues a run by itself, as its
    uploader (a speculative one queues a plan-only run). Runs that were created before their
    configuration arrived may start now."""
    await advance(session, cv.workspace_id)
    if not cv.auto_queue_runs:
        return
    row = (
        await session.execute(
            select(Workspace, Organization)
            .join(Organization, Organization.id == Workspace.organization_id)
            .where(Workspace.id == cv.workspace_id)
        )
    ).first()
    if row is None or row[0].execution_mode == "local":
        return
    uploader = Principal(kind="system", token_id=None, user_id=cv.created_by_id, is_admin=True)
    await create(
        session,
        uploader,
        row[0],
        row[1],
        RunOptions(
            configuration_version_id=cv.id,
            source="tfe-configuration-version",
            message="Triggered by a configuration version upload",
        ),
    )


async def on_workspace_unlocked(session: AsyncSession, workspace: Workspace) -> None:
    """A person released the workspace: a waiting run may start."""
    await advance(session, workspace.id)


def delete_run_objects(store: ObjectStore) -> tuple[Hook, Hook]:
    """Hooks that delete the object-store data of a deleted workspace's (or organization's)
    runs once the deletion has committed."""

    async def _after(session: AsyncSession, run_ids: list[str]) -> None:
        async def _delete() -> None:
            for run_id in run_ids:
                await store.delete_prefix(keys.run_prefix(run_id))

        after_commit(session, _delete)

    async def on_workspace(session: AsyncSession, workspace: Workspace) -> None:
        ids = await session.execute(select(Run.id).where(Run.workspace_id == workspace.id))
        await _after(session, list(ids.scalars()))

    async def on_organization(session: AsyncSession, org: Organization) -> None:
        ids = await session.execute(select(Run.id).where(Run.organization_id == org.id))
        await _after(session, list(ids.scalars()))

    return on_workspace, on_organization
