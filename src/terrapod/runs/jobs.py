"""What agents report: claiming a job, heartbeats, and a job's end moving its run on.

The agent protocol of DESIGN.md ("Runs"): a job is claimed by exactly one agent, heartbeats
while it runs, and is failed by the housekeeping sweep when its heartbeats stop. No
authorization here: the built-in agent calls these for its own jobs, and the listener API
(terrapod.agentpools.listener_api) checks the agent's credential and the job's run token
before it calls them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.configversions import service as configversions
from terrapod.configversions.models import ConfigurationVersion
from terrapod.db.hooks import JobFinished, fire
from terrapod.errors import Conflict, NotFound
from terrapod.organizations.models import Organization
from terrapod.runs import logs
from terrapod.runs import machine as m
from terrapod.runs.models import Apply, Job, Plan, Run
from terrapod.runs.queue import (
    TASK_STAGE_STATUSES,
    end_phase,
    end_run,
    enter_task_stage,
    load,
    purge_run_tokens,
    queue_job,
    record_event,
    retire_run_tokens,
    run_changed,
    set_phase_status,
    start_apply,
    start_plan,
    utcnow,
)
from terrapod.workspaces.models import Workspace


@dataclass
class ClaimedJob:
    job: Job
    run: Run
    workspace: Workspace
    organization: Organization


@dataclass(frozen=True)
class ClaimKey:
    """The agent's key for one ``runs/next`` poll and the attempt (retry) number of the
    request carrying it (docs/dev/agents.md, "Claim keys")."""

    key: str
    attempt: int


async def claim_job(
    session: AsyncSession,
    agent_id: str,
    pool_id: str | None = None,
    claim: ClaimKey | None = None,
) -> ClaimedJob | None:
    """Claim the oldest queued job of ``pool_id`` (None: the jobs of the servers' built-in
    agents) for ``agent_id``; exactly one agent wins each job. ``claim`` is stored on the job
    (see :func:`job_of_claim`); a key this agent already claimed a job with raises
    IntegrityError (the unique index ``ux_jobs_agent_claim_key``).

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so concurrent claimers take different jobs.
    SQLite: writers are serialized (BEGIN IMMEDIATE) and the UPDATE is conditional on the
    job still being queued.
    """
    now = utcnow()
    in_pool = Job.pool_id.is_(None) if pool_id is None else Job.pool_id == pool_id
    candidate = (
        await session.execute(
            select(Job.id)
            .where(Job.status == "queued", in_pool)
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
        .values(
            status="running",
            agent_id=agent_id,
            claimed_at=now,
            heartbeat_at=now,
            claim_key=claim.key if claim else None,
            claim_attempt=claim.attempt if claim else None,
        )
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    job = await session.get(Job, candidate, populate_existing=True)
    if job is None:
        return None
    ctx = await load(session, job.run_id, for_update=True)
    run = ctx.run
    if job.phase == "plan":
        m.move(run, m.PLANNING, now)
        phase = await set_phase_status(session, run.plan_id, "running", now)
        record_event(session, run, "planning", f"Plan started on agent {agent_id}")
    else:
        m.move(run, m.APPLYING, now)
        phase = await set_phase_status(session, run.apply_id, "running", now)
        record_event(session, run, "applying", f"Apply started on agent {agent_id}")
    await logs.open_(session, phase)
    await run_changed(session, run)
    return ClaimedJob(job, run, ctx.workspace, ctx.organization)


async def job_of_claim(session: AsyncSession, agent_id: str, key: str) -> Job | None:
    """The job ``agent_id`` claimed with ``key`` (whatever its status now), locked; None
    when the key has claimed nothing. Another agent's key finds nothing."""
    return (
        await session.execute(
            select(Job)
            .where(Job.agent_id == agent_id, Job.claim_key == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def reclaimed(session: AsyncSession, job: Job, attempt: int) -> ClaimedJob:
    """A running job answered again to a later attempt of the poll that claimed it (the
    earlier answer was lost); nothing about the run changes. The caller replaces its run
    token."""
    job.claim_attempt = attempt
    job.heartbeat_at = utcnow()  # the agent has it only now
    ctx = await load(session, job.run_id)
    return ClaimedJob(job, ctx.run, ctx.workspace, ctx.organization)


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
    # Everything else the job reported (the runner's JobResult), for the domains that hook
    # ``job_finished``; the run machine does not read it.
    report: object = None


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
    await retire_run_tokens(session, job.run_id, now, job_id=job.id)
    ctx = await load(session, job.run_id, for_update=True)
    run = ctx.run
    await fire(session, "job_finished", JobFinished(run, job.phase, job.status, result.report))
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
        await end_run(session, run, status, now, result.error or f"Plan {result.outcome}")
        return
    plan = await session.get(Plan, run.plan_id)
    if plan is None:
        raise NotFound(f"{run.plan_id} not found")
    await end_phase(session, plan, "finished", now)
    _counts(plan, result)
    plan.has_changes = result.has_changes
    plan.has_plan_file = result.has_plan_file
    plan.generated_configuration = result.generated_configuration
    run.has_changes = bool(result.has_changes)
    record_event(session, run, "planned", "Plan finished")
    if await enter_task_stage(session, run, "post_plan"):
        m.stamp(run, m.PLANNED, now)  # the plan is done; its post-plan tasks run first
        return
    await _after_plan(session, run, now)


async def _after_plan(session: AsyncSession, run: Run, now: datetime) -> None:
    """What follows a finished plan (and its post-plan tasks, if any)."""
    if run.plan_only:
        await end_run(session, run, m.PLANNED_AND_FINISHED, now, "Speculative plan finished")
        return
    if not run.has_changes and not run.allow_empty_apply:
        await end_run(session, run, m.PLANNED_AND_FINISHED, now, "No changes to apply")
        return
    if run.save_plan:
        m.move(run, m.PLANNED_AND_SAVED, now)
        await run_changed(session, run)
        return
    if run.auto_apply:
        m.stamp(run, m.PLANNED, now)
        await start_apply(session, run, now)
        return
    if run.status == m.POST_PLAN_COMPLETED:
        return  # TFE waits for confirmation in post_plan_completed (machine.CONFIRMABLE)
    m.move(run, m.PLANNED, now)
    await run_changed(session, run)


async def task_stage_passed(session: AsyncSession, run: Run, stage: str) -> None:
    """A run-task stage of ``run`` passed (or was overridden): the run goes on where it
    stopped. A stage that fails ends the run through :func:`end_run` instead."""
    now = utcnow()
    m.move(run, TASK_STAGE_STATUSES[stage][1], now)
    await run_changed(session, run)
    if stage == "pre_plan":
        await start_plan(session, run, now, tasks_done=True)
    elif stage == "post_plan":
        await _after_plan(session, run, now)
    else:
        await start_apply(session, run, now, tasks_done=True)


async def task_stage_awaits_override(session: AsyncSession, run: Run) -> None:
    """A mandatory post-plan task failed and may be overridden: the run waits for a person."""
    m.move(run, m.POST_PLAN_AWAITING_DECISION, utcnow())
    await run_changed(session, run)


async def _apply_finished(
    session: AsyncSession, run: Run, result: JobOutcome, now: datetime
) -> None:
    apply = await session.get(Apply, run.apply_id)
    if apply is None:
        raise NotFound(f"{run.apply_id} not found")
    _counts(apply, result)
    if result.outcome == "finished":
        await end_phase(session, apply, "finished", now)
        cv = (
            await session.get(ConfigurationVersion, run.configuration_version_id)
            if run.configuration_version_id
            else None
        )
        if cv is not None:
            await configversions.promote(session, cv, run.workspace_id)
        await end_run(session, run, m.APPLIED, now, "Apply finished")
        return
    status = m.CANCELED if result.outcome == "canceled" else m.ERRORED
    await end_run(session, run, status, now, result.error or f"Apply {result.outcome}")


async def hand_back_job(session: AsyncSession, job_id: str, agent_id: str) -> bool:
    """The agent gives a running plan job back (it is shutting down): the job ends
    ``handed_back``, a new job is queued for another agent and the run returns to
    ``plan_queued``. The plan's log stays one stream: a note is appended now, and the next
    agent's output follows it (its STX was written when the plan first started).

    Returns False when the job had already ended (a repeated hand-back is harmless). An apply
    cannot be handed back: an interrupted apply leaves infrastructure half-changed.
    """
    job = await session.get(Job, job_id, populate_existing=True, with_for_update=True)
    if job is None or job.agent_id != agent_id:
        raise NotFound("job not found")
    if job.status != "running":
        return False
    if job.phase != "plan":
        raise Conflict("only a plan can be handed back; an apply runs to its end")
    now = utcnow()
    ctx = await load(session, job.run_id, for_update=True)
    run = ctx.run
    await logs.append(
        session,
        run,
        "plan",
        f"\nThe agent {agent_id} stopped before the plan finished and handed it back; "
        "the plan starts again on another agent.\n\n".encode(),
    )
    job.status = "handed_back"
    job.finished_at = now
    await retire_run_tokens(session, job.run_id, now, job_id=job.id)
    m.move(run, m.PLAN_QUEUED, now)
    await set_phase_status(session, run.plan_id, "queued", now)
    record_event(session, run, "plan_queued", f"Plan handed back by agent {agent_id}")
    await queue_job(session, run, "plan", now)
    await run_changed(session, run)
    return True


async def fail_stale_jobs(session: AsyncSession, silence: timedelta) -> list[str]:
    """End the runs of running jobs whose agent stopped heartbeating (the reason goes into
    the phase's log); returns their run ids. Also deletes run tokens past their expiry."""
    cutoff = utcnow() - silence
    await purge_run_tokens(session, utcnow())
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
        ctx = await load(session, job.run_id, for_update=True)
        if ctx.run.status not in m.FINAL:
            reason = (
                f"The agent running the {job.phase} ({job.agent_id}) stopped responding: "
                f"no heartbeat for {max(0, int(silence.total_seconds()))} seconds"
            )
            # Into the phase's log before end_run closes it: the log is where people look.
            await logs.append(session, ctx.run, job.phase, f"\n\n{reason}.\n".encode())
            await end_run(session, ctx.run, m.ERRORED, now, reason)
            ended.append(ctx.run.id)
    return ended
