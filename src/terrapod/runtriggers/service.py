"""Run trigger rules: who may connect which workspaces, and the runs an applied run queues.

A run trigger connects a source workspace (TFE's ``sourceable``) to a destination workspace
(TFE's ``workspace``): every run in the source that ends ``applied`` queues a run in the
destination, in the same transaction that ended it (:func:`on_run_changed`, the
``run_changed`` hook wired in :mod:`terrapod.app`).

Creating or deleting a trigger needs admin access to the destination
(``WS_MANAGE_RUN_TRIGGERS``) and, for creating, read access to the source; reading needs read
access to the workspace asked about. Every function authorizes first and works inside the
caller's transaction; every check runs before anything is written.

Limits (HCP Terraform's): source and destination differ, belong to the same organization,
one trigger per pair, at most :data:`MAX_SOURCES` sources per destination. The count is taken
while the destination's row is locked (``FOR UPDATE`` on PostgreSQL; SQLite serializes
writers), and a unique constraint backs the pair check, so concurrent creates cannot pass
either limit.

Queued runs go through :func:`terrapod.runs.service.create`, so ordering, locking and the
queue stay in one place. They use the destination's latest usable configuration version,
record the run they came from (``triggered_by_run_id``/``triggered_by_workspace_id``, run
source ``tfe-run-trigger``), and auto-apply only when the destination's
``auto-apply-run-trigger`` is set (HCP Terraform: independent of ``auto-apply``). A
destination that cannot get a run (no configuration uploaded, local execution) is skipped,
logged, and named in the source run's timeline (``run-events``).

Cycles: a trigger may close a loop (A -> B -> A). A run queued by a trigger never queues a
run in a workspace its own chain already passed through, so a loop ends after one lap
instead of planning and applying forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from terrapod.access.permissions import Action, authorize, can
from terrapod.access.principal import SYSTEM, Principal
from terrapod.configversions import service as configversions
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import DomainError, Invalid, NotFound
from terrapod.observability.logging import get_logger
from terrapod.organizations.models import Organization
from terrapod.runs import machine as m
from terrapod.runs import service as runs
from terrapod.runs.models import Run
from terrapod.runs.queue import record_event
from terrapod.runtriggers.models import RunTrigger
from terrapod.workspaces.models import Workspace

log = get_logger("terrapod.runtriggers")

# HCP Terraform: "You can connect each workspace to up to 20 source workspaces."
MAX_SOURCES = 20
INBOUND = "inbound"
OUTBOUND = "outbound"
DIRECTIONS = (INBOUND, OUTBOUND)
# TFE's run source for runs a trigger queued (go-tfe RunSourceRunTrigger).
RUN_SOURCE = "tfe-run-trigger"
# How far back a chain of triggered runs is followed when looking for a loop.
MAX_CHAIN = 100

SOURCEABLE_POINTER = "/data/relationships/sourceable"


@dataclass(frozen=True)
class TriggerView:
    """A trigger with both its workspaces (their names are attributes of the resource)."""

    trigger: RunTrigger
    workspace: Workspace
    sourceable: Workspace
    organization: Organization


def _authorize(
    principal: Principal, action: Action, workspace: Workspace, org: Organization, what: str
) -> None:
    authorize(
        principal,
        action,
        organization_id=org.id,
        workspace_id=workspace.id,
        workspace_creator=workspace.created_by_id,
        what=what,
    )


# A trigger's two workspaces, in one query with it.
_DESTINATION = aliased(Workspace, name="destination")
_SOURCE = aliased(Workspace, name="source")


def _views() -> Select[RunTrigger, Workspace, Workspace, Organization]:
    return (
        select(RunTrigger, _DESTINATION, _SOURCE, Organization)
        .join(_DESTINATION, _DESTINATION.id == RunTrigger.workspace_id)
        .join(_SOURCE, _SOURCE.id == RunTrigger.sourceable_id)
        .join(Organization, Organization.id == _DESTINATION.organization_id)
    )


# -- reads ---------------------------------------------------------------------------------


async def list_for_workspace(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    direction: str,
    *,
    offset: int,
    limit: int,
) -> tuple[list[TriggerView], int]:
    """One page of the workspace's ``inbound`` triggers (it is the destination) or
    ``outbound`` ones (it is the source), oldest first, and their total count."""
    _authorize(principal, Action.WS_READ, workspace, org, "workspace")
    if direction not in DIRECTIONS:  # the router checks the wire value; this is the contract
        raise Invalid(f"direction must be {INBOUND} or {OUTBOUND}")
    column = RunTrigger.workspace_id if direction == INBOUND else RunTrigger.sourceable_id
    total = (
        await session.execute(
            select(func.count()).select_from(RunTrigger).where(column == workspace.id)
        )
    ).scalar_one()
    rows = await session.execute(
        _views()
        .where(column == workspace.id)
        .order_by(RunTrigger.created_at, RunTrigger.id)
        .offset(offset)
        .limit(limit)
    )
    return [TriggerView(*row) for row in rows.all()], total


async def get(
    session: AsyncSession, principal: Principal, trigger_id: str, action: Action = Action.WS_READ
) -> TriggerView:
    """The trigger, if ``principal`` may read its destination (else NotFound) and do
    ``action`` there (else Forbidden)."""
    row = None
    if looks_like_id(trigger_id, "rt"):
        row = (await session.execute(_views().where(RunTrigger.id == trigger_id))).first()
    if row is None:
        raise NotFound("run trigger not found")
    view = TriggerView(*row)
    _authorize(principal, Action.WS_READ, view.workspace, view.organization, "run trigger")
    if action is not Action.WS_READ:
        _authorize(principal, action, view.workspace, view.organization, "workspace")
    return view


# -- changes -------------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    sourceable_id: str | None,
) -> TriggerView:
    """Connect ``sourceable_id`` (the source) to ``workspace`` (the destination)."""
    _authorize(principal, Action.WS_MANAGE_RUN_TRIGGERS, workspace, org, "workspace")
    if not sourceable_id:
        raise Invalid(
            "sourceable is required: the source workspace, as "
            '{"data": {"type": "workspaces", "id": "ws-…"}}',
            pointer=SOURCEABLE_POINTER,
        )
    if sourceable_id == workspace.id:
        raise Invalid(
            f"workspace {workspace.name} cannot be its own run trigger source",
            pointer=SOURCEABLE_POINTER,
        )
    source = (
        await session.get(Workspace, sourceable_id) if looks_like_id(sourceable_id, "ws") else None
    )
    # A source the caller may not read is as absent as one that does not exist (HCP: 404).
    if source is None or not can(
        principal,
        Action.WS_READ,
        organization_id=source.organization_id,
        workspace_id=source.id,
        workspace_creator=source.created_by_id,
    ):
        raise NotFound(f"source workspace {sourceable_id} not found")
    if source.organization_id != org.id:
        raise Invalid(
            f"source workspace {source.name} belongs to another organization; a run trigger "
            f"connects workspaces of one organization ({org.name})",
            pointer=SOURCEABLE_POINTER,
        )
    # Hold the destination while counting, so two concurrent creates cannot both see 19.
    await session.execute(
        select(Workspace.id).where(Workspace.id == workspace.id).with_for_update()
    )
    existing = (
        await session.execute(
            select(RunTrigger.sourceable_id).where(RunTrigger.workspace_id == workspace.id)
        )
    ).scalars()
    sources = set(existing)
    if source.id in sources:
        raise _duplicate(workspace, source)
    if len(sources) >= MAX_SOURCES:
        raise Invalid(
            f"workspace {workspace.name} already has {MAX_SOURCES} source workspaces, the most "
            "a workspace may have; delete one of its run triggers first",
            pointer=SOURCEABLE_POINTER,
        )
    trigger = RunTrigger(id=new_id("rt"), workspace_id=workspace.id, sourceable_id=source.id)
    session.add(trigger)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create of the same pair won
        raise _duplicate(workspace, source) from exc
    return TriggerView(trigger, workspace, source, org)


def _duplicate(workspace: Workspace, source: Workspace) -> Invalid:
    return Invalid(
        f"Sourceable has already been taken: workspace {workspace.name} already has a run "
        f"trigger from {source.name}",
        pointer=SOURCEABLE_POINTER,
    )


async def delete_trigger(session: AsyncSession, principal: Principal, trigger_id: str) -> None:
    """Delete the trigger (admin on its destination)."""
    view = await get(session, principal, trigger_id, Action.WS_MANAGE_RUN_TRIGGERS)
    await session.execute(delete(RunTrigger).where(RunTrigger.id == view.trigger.id))


# -- the trigger itself --------------------------------------------------------------------


async def on_run_changed(session: AsyncSession, run: Run) -> None:
    """The ``run_changed`` hook (wired in terrapod.app): a run that has just been applied
    queues a run in each destination of its workspace's triggers."""
    if run.status != m.APPLIED:
        return
    rows = (
        await session.execute(
            _views().where(RunTrigger.sourceable_id == run.workspace_id).order_by(_DESTINATION.name)
        )
    ).all()
    if not rows:
        return
    chain = await _chain_workspaces(session, run)
    for row in rows:
        await _fire(session, run, TriggerView(*row), chain)


async def _chain_workspaces(session: AsyncSession, run: Run) -> set[str]:
    """The workspaces of ``run`` and of the runs that triggered it, back to the first."""
    seen = {run.workspace_id}
    current: Run | None = run
    for _ in range(MAX_CHAIN):
        if current is None or current.triggered_by_run_id is None:
            break
        if current.triggered_by_workspace_id is not None:
            seen.add(current.triggered_by_workspace_id)
        current = await session.get(Run, current.triggered_by_run_id)
    return seen


async def _fire(session: AsyncSession, run: Run, view: TriggerView, chain: set[str]) -> None:
    trigger, destination, source = view.trigger, view.workspace, view.sourceable
    skipped = None
    if destination.id in chain:
        skipped = (
            f"workspace {destination.name} already ran in this chain of triggered runs; "
            "a run trigger loop stops after one lap"
        )
    elif destination.execution_mode == "local":
        skipped = f"workspace {destination.name} uses local execution"
    cv = None
    if skipped is None:
        cv = await configversions.latest(session, destination.id)
        if cv is None:
            skipped = f"workspace {destination.name} has no uploaded configuration version"
    new = None
    if cv is not None:
        options = runs.RunOptions(
            message=f"Triggered by workspace {source.name} run {run.id}",
            source=RUN_SOURCE,
            # HCP Terraform: triggered runs auto-apply only with auto-apply-run-trigger,
            # whatever the workspace's own auto-apply says.
            auto_apply=destination.auto_apply_run_trigger,
            configuration_version_id=cv.id,
        )
        try:
            new = await runs.create(session, SYSTEM, destination, view.organization, options)
        except DomainError as exc:  # raised by create's checks, before it writes anything
            skipped = f"workspace {destination.name} refused the run: {exc.detail}"
    if new is None:
        log.warning(
            "run trigger queued no run",
            run_trigger=trigger.id,
            run=run.id,
            workspace=destination.id,
            reason=skipped,
        )
        record_event(
            session,
            run,
            "run-trigger-skipped",
            f"Run trigger {trigger.id}: no run queued; {skipped}",
        )
        return
    new.triggered_by_run_id = run.id
    new.triggered_by_workspace_id = source.id
    record_event(
        session,
        new,
        "run-triggered",
        f"Triggered by run {run.id} in workspace {source.name} (run trigger {trigger.id})",
    )
    record_event(
        session,
        run,
        "run-trigger-fired",
        f"Queued run {new.id} in workspace {destination.name} (run trigger {trigger.id})",
    )
    log.info("run trigger queued a run", run_trigger=trigger.id, run=run.id, queued=new.id)


def views_of(rows: Sequence[TriggerView]) -> list[tuple[Workspace, Organization]]:
    """The distinct workspaces of a page of triggers (for ``include``)."""
    seen: dict[str, tuple[Workspace, Organization]] = {}
    for view in rows:
        seen.setdefault(view.workspace.id, (view.workspace, view.organization))
        seen.setdefault(view.sourceable.id, (view.sourceable, view.organization))
    return list(seen.values())
