"""The workspace queue: which run holds a workspace, which waits, and how runs start and end.

One non-speculative run at a time holds a workspace, through the workspace lock
(``locked_by = runs/<id>``); the others wait, oldest first. Speculative (plan-only) runs and
saved-plan runs plan without the lock; a saved plan takes it when its apply is confirmed. A run
that ends releases the lock and :func:`advance` starts the next one in the same transaction.

Everything here works inside the caller's transaction and authorizes nothing: callers are the
run services acting on runs they already checked, or the agent acting for its own job. Rows
two writers may change at once (a run, its workspace's lock, a job) change through conditional
UPDATEs or rows read ``FOR UPDATE`` (PostgreSQL); SQLite serializes writers (BEGIN IMMEDIATE).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy import delete as sql_delete
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.auth.models import Token
from terrapod.configversions.models import UPLOADED as CV_UPLOADED
from terrapod.configversions.models import ConfigurationVersion
from terrapod.db.hooks import TaskStageReached, fire
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import NotFound
from terrapod.events.bus import publish_after_commit
from terrapod.organizations.models import Organization
from terrapod.runs import logs
from terrapod.runs import machine as m
from terrapod.runs.models import Apply, Job, Plan, Run, RunEvent
from terrapod.timefmt import iso
from terrapod.workspaces.models import Workspace


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunContext:
    run: Run
    workspace: Workspace
    organization: Organization


async def load(session: AsyncSession, run_id: str, *, for_update: bool = False) -> RunContext:
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


async def phases(session: AsyncSession, run: Run) -> tuple[Plan, Apply]:
    plan = await session.get(Plan, run.plan_id)
    apply = await session.get(Apply, run.apply_id)
    if plan is None or apply is None:  # created together with the run; never apart
        raise NotFound(f"run {run.id} has lost its plan or apply")
    return plan, apply


def record_event(
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


async def run_changed(session: AsyncSession, run: Run) -> None:
    """``run`` was created or changed status: tell the higher domains (the ``run_changed``
    hook, inside this transaction) and the event bus (after the commit)."""
    await fire(session, "run_changed", run)
    publish_after_commit(
        session, "run", {"run_id": run.id, "workspace_id": run.workspace_id, "status": run.status}
    )


async def queue_job(session: AsyncSession, run: Run, phase: str, now: datetime) -> None:
    """Queue a job for ``run``'s ``phase``. Its pool is fixed now: the workspace's agent
    pool when the workspace executes on agents, else NULL (the servers' built-in agents)."""
    workspace = await session.get(Workspace, run.workspace_id)
    pool_id = (
        workspace.agent_pool_id
        if workspace is not None and workspace.execution_mode == "agent"
        else None
    )
    session.add(
        Job(
            id=new_id("job"),
            run_id=run.id,
            phase=phase,
            status="queued",
            pool_id=pool_id,
            created_at=now,
        )
    )
    publish_after_commit(session, "jobs", {"run_id": run.id, "phase": phase, "pool_id": pool_id})


# A retired run token still authenticates its job's final PATCH for this long, so an agent
# that lost the answer can repeat it; it reaches nothing else (the resolver ignores it).
RUN_TOKEN_GRACE = timedelta(minutes=15)
RUN_TOKEN_KIND = "run"  # noqa: S105 - a token kind, not a secret
RETIRED_RUN_TOKEN_KIND = "run-ended"  # noqa: S105 - a token kind, not a secret


async def purge_run_tokens(session: AsyncSession, now: datetime) -> None:
    """Delete run tokens past their expiry (retired ones after their grace)."""
    await session.execute(
        sql_delete(Token)
        .where(
            Token.kind.in_((RUN_TOKEN_KIND, RETIRED_RUN_TOKEN_KIND)),
            Token.expired_at < now,
        )
        .execution_options(synchronize_session=False)
    )


async def retire_run_tokens(
    session: AsyncSession, run_id: str, now: datetime, *, job_id: str | None = None
) -> None:
    """A job ended: its run token (every run token of the run when ``job_id`` is None) stops
    reaching the API at once. See terrapod.agentpools.runtokens."""
    conditions = [Token.run_id == run_id, Token.kind == RUN_TOKEN_KIND]
    if job_id is not None:
        # A run token's description is its job id, a space and its phase (see runtokens).
        conditions.append(Token.description.startswith(f"{job_id} ", autoescape=True))
    await session.execute(
        sql_update(Token)
        .where(*conditions)
        .values(kind=RETIRED_RUN_TOKEN_KIND, expired_at=now + RUN_TOKEN_GRACE)
        .execution_options(synchronize_session=False)
    )


async def set_phase_status(
    session: AsyncSession, phase_id: str, status: str, now: datetime
) -> Plan | Apply:
    phase = await logs.load_phase(session, phase_id)
    if phase is None:
        raise NotFound(f"{phase_id} not found")
    phase.status = status
    phase.status_timestamps = {
        **(phase.status_timestamps or {}),
        _phase_stamp(status): iso_text(now),
    }
    return phase


def _phase_stamp(status: str) -> str:
    """TFE's plan/apply ``status-timestamps`` member (``running`` is ``started-at``)."""
    return "started-at" if status == "running" else f"{status}-at"


async def end_phase(session: AsyncSession, phase: Plan | Apply, status: str, now: datetime) -> None:
    """A phase reached a terminal status: its log gets its ETX (if it was ever started)."""
    was_running = phase.status == "running"
    phase.status = status
    phase.status_timestamps = {
        **(phase.status_timestamps or {}),
        _phase_stamp(status): iso_text(now),
    }
    if was_running:
        await logs.close(session, phase)


def iso_text(now: datetime) -> str:
    """``now`` as TFE's timestamp text."""
    return iso(now) or ""


# A run-task stage -> the run's status while it runs and once it has passed.
TASK_STAGE_STATUSES = {
    "pre_plan": (m.PRE_PLAN_RUNNING, m.PRE_PLAN_COMPLETED),
    "post_plan": (m.POST_PLAN_RUNNING, m.POST_PLAN_COMPLETED),
    "pre_apply": (m.PRE_APPLY_RUNNING, m.PRE_APPLY_COMPLETED),
}


async def enter_task_stage(session: AsyncSession, run: Run, stage: str) -> bool:
    """Offer ``stage`` to the run-task domain (the ``task_stage_reached`` hook). True when
    a reaction started it: the run is now ``<stage>_running`` and the caller must stop; the
    run continues from :func:`terrapod.runs.jobs.task_stage_passed`."""
    before = run.status
    await fire(session, "task_stage_reached", TaskStageReached(run, stage))
    return run.status != before


async def begin_task_stage(session: AsyncSession, run: Run, stage: str, now: datetime) -> None:
    """Move ``run`` into ``stage`` (for the ``task_stage_reached`` reactions)."""
    m.move(run, TASK_STAGE_STATUSES[stage][0], now)
    record_event(session, run, stage.replace("_", "-") + "-tasks", f"{stage} tasks started")
    await run_changed(session, run)


async def start_plan(
    session: AsyncSession, run: Run, now: datetime, *, tasks_done: bool = False
) -> None:
    if not tasks_done and await enter_task_stage(session, run, "pre_plan"):
        return
    m.move(run, m.PLAN_QUEUED, now)
    await set_phase_status(session, run.plan_id, "queued", now)
    await queue_job(session, run, "plan", now)
    await run_changed(session, run)


async def start_apply(
    session: AsyncSession, run: Run, now: datetime, *, tasks_done: bool = False
) -> None:
    if not tasks_done and await enter_task_stage(session, run, "pre_apply"):
        return
    m.move(run, m.APPLY_QUEUED, now)
    await set_phase_status(session, run.apply_id, "queued", now)
    await queue_job(session, run, "apply", now)
    await run_changed(session, run)


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
            await start_plan(session, run, now)
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
        # Held by a person: the waiting run becomes the current run, which is how the CLI
        # knows to say "Waiting for the manually locked workspace to be unlocked".
        await session.execute(
            sql_update(Workspace)
            .where(Workspace.id == workspace_id, Workspace.locked_by_kind != "runs")
            .values(current_run_id=next_run.id)
            .execution_options(synchronize_session=False)
        )
        return
    if next_run.status == m.PENDING:
        await start_plan(session, next_run, now)
    else:
        await start_apply(session, next_run, now)


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
    await end_run(session, run, m.ERRORED, now, f"configuration version unusable: {reason}")
    return False


async def end_run(
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
    # Only a running phase has a claimed job whose run token is still live (a job that ended
    # retired its own); a run that never ran spares the statement.
    had_running_job = "running" in (plan.status, apply.status)
    for phase in (plan, apply):
        if phase.status == "running":
            ended = "errored" if status == m.ERRORED else "canceled"
        elif phase.status in ("queued", "managed_queued"):
            ended = "canceled" if status in (m.CANCELED, m.FORCE_CANCELED) else "unreachable"
        elif phase.status == "pending":
            ended = "unreachable"
        else:
            continue
        await end_phase(session, phase, ended, now)
    await session.execute(
        sql_update(Job)
        .where(Job.run_id == run.id, Job.status.in_(("queued", "running")))
        .values(status="canceled", cancel_requested="force", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    if had_running_job:
        await retire_run_tokens(session, run.id, now)
    record_event(session, run, status, description, actor_id)
    await run_changed(session, run)
    if await _release_workspace(session, run) and start_next:
        await advance(session, run.workspace_id)


async def workspaces_waiting(session: AsyncSession) -> list[str]:
    """Workspaces with runs waiting to start (for the periodic sweep that recovers lost
    wake-ups)."""
    rows = await session.execute(
        select(Run.workspace_id)
        .where(Run.status.in_((m.PENDING, m.CONFIRMED)))
        .group_by(Run.workspace_id)
    )
    return [r[0] for r in rows]
