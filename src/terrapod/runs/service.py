"""Run rules for people: creating runs, the actions on them, and reactions to lower domains.

Every function that acts for a person authorizes first and works inside the caller's
transaction. Status changes go through :mod:`terrapod.runs.machine`; starting and ending runs
through :mod:`terrapod.runs.queue`; what agents report is :mod:`terrapod.runs.jobs`, and reading
lists and views is :mod:`terrapod.runs.queries`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize, can
from terrapod.access.principal import Principal
from terrapod.configversions import service as configversions
from terrapod.configversions.models import ARCHIVED as CV_ARCHIVED
from terrapod.configversions.models import ERRORED as CV_ERRORED
from terrapod.configversions.models import ConfigurationVersion
from terrapod.db.hooks import Hook, after_commit
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import Conflict, Forbidden, Invalid, NotFound
from terrapod.events.bus import publish_after_commit
from terrapod.organizations.models import Organization
from terrapod.runs import logs
from terrapod.runs import machine as m
from terrapod.runs.models import Apply, Job, Plan, Run
from terrapod.runs.queue import (
    RunContext,
    advance,
    end_run,
    iso_text,
    load,
    record_event,
    run_changed,
    start_apply,
    utcnow,
)
from terrapod.storage import keys
from terrapod.storage.base import ObjectStore
from terrapod.workspaces.models import Workspace
from terrapod.workspaces.service import validate_terraform_version

DEFAULT_MESSAGE = "Queued manually via the Terraform Enterprise API"
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_ADDRS = 1000


def _pointer(attribute: str) -> str:
    return "/data/attributes/" + attribute


# -- looking runs up -----------------------------------------------------------------------


def _authorize(principal: Principal, action: Action, ctx: RunContext, what: str) -> None:
    authorize(
        principal,
        action,
        organization_id=ctx.organization.id,
        workspace_id=ctx.workspace.id,
        workspace_creator=ctx.workspace.created_by_id,
        what=what,
    )


def _refuse_organization_token(principal: Principal) -> None:
    # seed 001: "This endpoint cannot be accessed with organization tokens."
    if principal.kind == "organization":
        raise Forbidden("organization tokens cannot queue or act on runs; use a user or team token")


async def find(session: AsyncSession, run_id: str) -> RunContext:
    """A run without any authorization: only for callers that hold another credential for
    it (a signed log URL) or act for the run itself (its agent)."""
    return await load(session, run_id)


async def get(
    session: AsyncSession,
    principal: Principal,
    run_id: str,
    action: Action = Action.WS_READ,
    *,
    for_update: bool = False,
) -> RunContext:
    """The run, if ``principal`` may see it (else NotFound) and do ``action`` in its
    workspace (else Forbidden, naming the workspace)."""
    ctx = await load(session, run_id, for_update=for_update)
    _authorize(principal, Action.WS_READ, ctx, "run")
    if action is not Action.WS_READ:
        _authorize(principal, action, ctx, "workspace")
    return ctx


async def get_by_phase(
    session: AsyncSession, principal: Principal, phase_id: str
) -> tuple[RunContext, Plan | Apply]:
    """A plan or an apply (by its id) and its run, after checking read access."""
    prefix = phase_id.split("-", maxsplit=1)[0]
    if prefix not in ("plan", "apply") or not looks_like_id(phase_id, prefix):
        raise NotFound("plan or apply not found")
    phase = await logs.load_phase(session, phase_id)
    if phase is None:
        raise NotFound(f"{prefix} not found")
    ctx = await get(session, principal, phase.run_id)
    return ctx, phase


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
    invoke_action_addrs: tuple[str, ...] | None = None
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
        ("invoke-action-addrs", options.invoke_action_addrs),
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
        # seed 001: the workspace's most recently used (uploaded) configuration version.
        latest = await configversions.latest(session, workspace.id)
        if latest is None:
            raise Invalid(
                "the workspace has no uploaded configuration version; upload one first",
                pointer="/data/relationships/configuration-version",
            )
        return latest
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
    if cv.status == CV_ARCHIVED:
        raise Invalid(
            f"configuration version {cv.id} is archived; its configuration was discarded",
            pointer="/data/relationships/configuration-version",
        )
    # A pending one is fine: the run waits for its upload (terrapod.runs.queue.advance).
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
    if options.is_destroy and not workspace.allow_destroy_plan:
        raise Invalid(
            f"workspace {workspace.name} does not allow destroy plans (allow-destroy-plan)",
            pointer=_pointer("is-destroy"),
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
        invoke_action_addrs=(
            list(options.invoke_action_addrs) if options.invoke_action_addrs is not None else None
        ),
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
    await configversions.mark_used(session, cv, workspace.id)
    await session.flush()
    record_event(session, run, "queued", "Run queued", principal.user_id)
    await run_changed(session, run)
    await advance(session, workspace.id)
    return run


async def retry(session: AsyncSession, principal: Principal, ctx: RunContext) -> Run:
    """A new run with the same configuration and settings as a finished one (seed 003)."""
    run = ctx.run
    if run.status not in m.FINAL:
        raise Conflict(f"only a finished run can be retried; run {run.id} is {run.status}")
    if run.configuration_version_id is None:
        raise Conflict(f"run {run.id}'s configuration version no longer exists; queue a new run")
    options = RunOptions(
        message=run.message,
        is_destroy=run.is_destroy,
        refresh=run.refresh,
        refresh_only=run.refresh_only,
        replace_addrs=tuple(run.replace_addrs) if run.replace_addrs is not None else None,
        target_addrs=tuple(run.target_addrs) if run.target_addrs is not None else None,
        invoke_action_addrs=(
            tuple(run.invoke_action_addrs) if run.invoke_action_addrs is not None else None
        ),
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
    ws = ctx.workspace
    if not run.save_plan and (ws.locked_by_kind, ws.locked_by_id) != ("runs", run.id):
        # Someone force-unlocked the workspace since the plan: its state may have moved on,
        # and the apply could not save what it changes.
        raise Conflict(
            f"run {run.id} no longer holds workspace {ws.name} (it was force-unlocked); "
            "discard it and queue a new run"
        )
    now = utcnow()
    m.move(run, m.CONFIRMED, now)
    run.confirmed_by_id = principal.user_id
    record_event(session, run, "confirmed", comment or "Applied by a user", principal.user_id)
    await run_changed(session, run)
    if run.save_plan:
        await advance(session, run.workspace_id)  # takes the workspace when it is free
    else:
        await start_apply(session, run, now)


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
    if not m.is_discardable(run):
        raise Conflict(
            f"run {run.id} is {run.status}, not paused for confirmation or waiting; "
            "discard not allowed"
        )
    await end_run(
        session,
        run,
        m.DISCARDED,
        utcnow(),
        comment or "Discarded by a user",
        actor,
        start_next=start_next,
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
    if not m.is_cancelable(run):
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
        record_event(
            session, run, "cancel_requested", comment or "Cancel requested", principal.user_id
        )
        publish_after_commit(session, "jobs", {"run_id": run.id, "cancel": "cancel"})
        return
    run.canceled_at = now
    await end_run(session, run, m.CANCELED, now, comment or "Canceled by a user", principal.user_id)


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
    if not m.is_force_cancelable(run, now):
        raise Conflict(
            "the force-cancel cool-off has not passed yet; it is available at "
            f"{iso_text(run.force_cancel_available_at or now)}"
        )
    await end_run(
        session, run, m.FORCE_CANCELED, now, comment or "Force-canceled", principal.user_id
    )
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
    blocking = [r for r in ahead if not m.is_discardable(r)]
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
