"""Run task rules: an organization's tasks, their attachment to workspaces, and the task stages
and task results of runs (HCP Terraform's Run Tasks, Task Stages and Task Results APIs; seed
000 for the older "event hooks" names of the same thing).

Permissions: an organization's tasks are managed and read by its owners
(``ORG_MANAGE_RUN_TASKS``); attaching them to a workspace needs admin access to it
(``WS_UPDATE``) and reading the attachments read access; stages and results are read with the
run; overriding a failed stage is for organization owners (``ORG_OVERRIDE_RUN_TASKS``).

A task's HMAC key is write-only: it is stored only as SecretBox ciphertext bound to the task's
id and is never returned. A task service's callback is authorized by the short-lived token sent
in its request, stored only as a SHA-256 hash and valid for that one task result until its
result is in.

A task's URL may not lead to a private, loopback, link-local or reserved address unless
``runtasks.allow_private_addresses`` is set: it is checked when saved (:func:`check_task_url`)
and again, pinned to the address checked, by every request (terrapod.runtasks.delivery).

How a run passes a stage (docs/dev/run-lifecycle.md, "Run tasks"): the run's stages and
results are made with the run (``on_run_changed``); when the run reaches a stage that has
results (``on_task_stage_reached``) the stage starts and the run waits; the delivery worker
(terrapod.runtasks.delivery) sends the requests after the commit; callbacks, timeouts and
failed deliveries end results, and :func:`settle_stage` moves the run on once every result of
the stage is in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod import outbound
from terrapod.access.permissions import Action, authorize, can
from terrapod.access.principal import Principal
from terrapod.config import RunTaskSettings
from terrapod.crypto import SecretBox
from terrapod.db.hooks import RelatedResources, TaskStageReached
from terrapod.db.ids import looks_like_id, new_id
from terrapod.errors import Conflict, Invalid, NotFound, Unauthenticated
from terrapod.events.bus import publish_after_commit
from terrapod.organizations.models import Organization
from terrapod.runs import jobs as run_jobs
from terrapod.runs import machine as m
from terrapod.runs import queue as run_queue
from terrapod.runs import service as runs
from terrapod.runs.models import Run
from terrapod.runtasks.models import (
    ENFORCEMENT_LEVELS,
    MANDATORY,
    POST_PLAN,
    PRE_APPLY,
    RESULT_ERRORED,
    RESULT_FAILED,
    RESULT_OPEN,
    RESULT_PASSED,
    RESULT_PENDING,
    RESULT_RUNNING,
    RESULT_UNREACHABLE,
    STAGE_AWAITING_OVERRIDE,
    STAGE_CANCELED,
    STAGE_ERRORED,
    STAGE_FAILED,
    STAGE_OPEN,
    STAGE_PASSED,
    STAGE_PENDING,
    STAGE_RUNNING,
    STAGE_UNREACHABLE,
    STAGES,
    RunTask,
    TaskResult,
    TaskStage,
    WorkspaceTask,
)
from terrapod.workspaces.models import Workspace

MAX_NAME_LENGTH = 128
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 1024
MAX_HMAC_KEY_LENGTH = 1024
MAX_MESSAGE_LENGTH = 65536
# seed 000: "Can include letters, numbers, -, and _."
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# The bus topic that wakes the delivery worker.
TOPIC = "runtasks"
# session.info key: run id -> the stages made for it in this transaction.
_MADE_STAGES = "runtasks.made_stages"
# Statuses a service may report in its callback.
CALLBACK_STATUSES = (RESULT_PASSED, RESULT_FAILED, RESULT_RUNNING)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _pointer(attribute: str) -> str:
    return "/data/attributes/" + attribute


def _context(task_id: str) -> str:
    """The associated data binding a ciphertext to its task (crypto.py)."""
    return f"run-task:{task_id}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _stamp(row: TaskStage | TaskResult, status: str, now: datetime) -> None:
    row.status = status
    # A new dict: SQLAlchemy only notices a JSON column change on assignment.
    row.status_timestamps = {**(row.status_timestamps or {}), f"{status}-at": _iso(now)}


def _iso(value: datetime) -> str:
    from terrapod.timefmt import iso

    return iso(value) or ""


# -- organization tasks ------------------------------------------------------------------


def _authorize_org(principal: Principal, action: Action, org: Organization) -> None:
    authorize(principal, action, organization_id=org.id, what="organization")


def _validate_task(values: dict[str, Any], *, creating: bool) -> None:
    for name in ("name", "url", "category", "enabled"):
        if name in values and values[name] is None:
            raise Invalid(f"{name} cannot be null", pointer=_pointer(name))
    if creating:
        for name in ("name", "url", "category"):
            if not values.get(name):
                raise Invalid(f"{name} is required", pointer=_pointer(name))
    task_name = values.get("name")
    if task_name is not None and (
        not task_name or len(task_name) > MAX_NAME_LENGTH or not NAME_RE.match(task_name)
    ):
        raise Invalid(
            f"name may use only letters, numbers, '-' and '_' (1 to {MAX_NAME_LENGTH} characters)",
            pointer=_pointer("name"),
        )
    url = values.get("url")
    if url is not None and (
        not re.match(r"^https?://[^\s/?#]+[^\s]*$", url) or len(url) > MAX_URL_LENGTH
    ):
        raise Invalid("url must be an absolute http:// or https:// URL", pointer=_pointer("url"))
    category = values.get("category")
    if category is not None and category != "task":
        raise Invalid(f'category must be "task", got {category!r}', pointer=_pointer("category"))
    description = values.get("description")
    if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
        raise Invalid(
            f"description must be at most {MAX_DESCRIPTION_LENGTH} characters",
            pointer=_pointer("description"),
        )
    key = values.get("hmac_key")
    if key is not None and len(key) > MAX_HMAC_KEY_LENGTH:
        raise Invalid(
            f"hmac-key must be at most {MAX_HMAC_KEY_LENGTH} characters",
            pointer=_pointer("hmac-key"),
        )


ALLOWED_BY = "runtasks.allow_private_addresses"


async def check_task_url(url: str, settings: RunTaskSettings) -> None:
    """A task URL may not lead to a private, loopback, link-local or reserved address unless
    ``runtasks.allow_private_addresses`` is set (terrapod.outbound). A host that does not
    resolve yet is accepted; every request checks it again."""
    try:
        await outbound.check_url(
            url,
            allow_private=settings.allow_private_addresses,
            allowed_by=ALLOWED_BY,
            timeout_seconds=settings.request_timeout_seconds,
        )
    except ValueError as exc:
        raise Invalid(str(exc), pointer=_pointer("url")) from None
    except outbound.AddressRefused as exc:
        raise Invalid(f"url: {exc}", pointer=_pointer("url")) from None


def _taken(name: str) -> Invalid:
    return Invalid(
        f"Name has already been taken: the organization already has a run task named {name!r}",
        pointer=_pointer("name"),
    )


async def _ensure_name_free(
    session: AsyncSession, org_id: str, name: str, except_id: str | None = None
) -> None:
    query = (
        select(func.count())
        .select_from(RunTask)
        .where(RunTask.organization_id == org_id, func.lower(RunTask.name) == name.lower())
    )
    if except_id is not None:
        query = query.where(RunTask.id != except_id)
    if (await session.execute(query)).scalar_one():
        raise _taken(name)


async def _flush_task(session: AsyncSession, name: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _taken(name) from exc


def _seal_key(box: SecretBox, task: RunTask, key: str | None) -> None:
    """An empty or null key removes it (requests go unsigned), as in TFE."""
    task.hmac_key_encrypted = box.encrypt(key.encode(), context=_context(task.id)) if key else None


def hmac_key_of(box: SecretBox, task: RunTask) -> bytes | None:
    """The task's HMAC key, for signing its requests; None when it has none or it cannot be
    decrypted (the server's secret key changed), which the caller reports."""
    if task.hmac_key_encrypted is None:
        return None
    return box.decrypt(task.hmac_key_encrypted, context=_context(task.id))


async def list_tasks(
    session: AsyncSession, principal: Principal, org: Organization, *, offset: int, limit: int
) -> tuple[Sequence[RunTask], int]:
    _authorize_org(principal, Action.ORG_MANAGE_RUN_TASKS, org)
    total = (
        await session.execute(
            select(func.count()).select_from(RunTask).where(RunTask.organization_id == org.id)
        )
    ).scalar_one()
    rows = await session.execute(
        select(RunTask)
        .where(RunTask.organization_id == org.id)
        .order_by(RunTask.created_at, RunTask.id)
        .offset(offset)
        .limit(limit)
    )
    return rows.scalars().all(), int(total)


async def get_task(
    session: AsyncSession, principal: Principal, task_id: str
) -> tuple[RunTask, Organization]:
    row = None
    if looks_like_id(task_id, "task"):
        row = (
            await session.execute(
                select(RunTask, Organization)
                .join(Organization, Organization.id == RunTask.organization_id)
                .where(RunTask.id == task_id)
            )
        ).first()
    if row is None:
        raise NotFound("run task not found")
    task, org = row
    try:
        _authorize_org(principal, Action.ORG_MANAGE_RUN_TASKS, org)
    except NotFound:
        raise NotFound("run task not found") from None
    return task, org


async def create_task(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    settings: RunTaskSettings,
    org: Organization,
    values: dict[str, Any],
) -> RunTask:
    _authorize_org(principal, Action.ORG_MANAGE_RUN_TASKS, org)
    _validate_task(values, creating=True)
    await check_task_url(values["url"], settings)
    await _ensure_name_free(session, org.id, values["name"])
    task = RunTask(
        id=new_id("task"),
        organization_id=org.id,
        name=values["name"],
        url=values["url"],
        description=values.get("description") or None,
        category="task",
        enabled=values.get("enabled", True),
    )
    _seal_key(box, task, values.get("hmac_key"))
    session.add(task)
    await _flush_task(session, task.name)
    return task


async def update_task(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    settings: RunTaskSettings,
    task: RunTask,
    org: Organization,
    values: dict[str, Any],
) -> RunTask:
    _authorize_org(principal, Action.ORG_MANAGE_RUN_TASKS, org)
    _validate_task(values, creating=False)
    if values.get("url") is not None:
        await check_task_url(values["url"], settings)
    name = values.get("name")
    if name is not None and name != task.name:
        await _ensure_name_free(session, org.id, name, except_id=task.id)
        task.name = name
    if values.get("url") is not None:
        task.url = values["url"]
    if "description" in values:
        task.description = values["description"] or None
    if values.get("enabled") is not None:
        task.enabled = values["enabled"]
    if "hmac_key" in values:
        _seal_key(box, task, values["hmac_key"])
    await _flush_task(session, task.name)
    return task


async def delete_task(
    session: AsyncSession, principal: Principal, task: RunTask, org: Organization
) -> None:
    """Delete the task and its attachments; results already made keep its name and URL."""
    _authorize_org(principal, Action.ORG_MANAGE_RUN_TASKS, org)
    await session.delete(task)
    await session.flush()


async def workspace_tasks_of(
    session: AsyncSession, task_ids: Sequence[str]
) -> dict[str, list[WorkspaceTask]]:
    """The attachments of each task (one query for a page of tasks)."""
    out: dict[str, list[WorkspaceTask]] = {t: [] for t in task_ids}
    if not task_ids:
        return out
    rows = await session.execute(
        select(WorkspaceTask)
        .where(WorkspaceTask.task_id.in_(list(task_ids)))
        .order_by(WorkspaceTask.created_at, WorkspaceTask.id)
    )
    for wt in rows.scalars():
        out[wt.task_id].append(wt)
    return out


async def workspaces_by_id(
    session: AsyncSession, workspace_ids: set[str]
) -> dict[str, tuple[Workspace, Organization]]:
    if not workspace_ids:
        return {}
    rows = await session.execute(
        select(Workspace, Organization)
        .join(Organization, Organization.id == Workspace.organization_id)
        .where(Workspace.id.in_(sorted(workspace_ids)))
    )
    return {ws.id: (ws, org) for ws, org in rows.all()}


# -- workspace tasks ---------------------------------------------------------------------


def _authorize_ws(
    principal: Principal, action: Action, workspace: Workspace, org: Organization
) -> None:
    authorize(
        principal,
        action,
        organization_id=org.id,
        workspace_id=workspace.id,
        workspace_creator=workspace.created_by_id,
        what="workspace",
    )


def _stages_of(values: dict[str, Any]) -> list[str] | None:
    """``stages`` (newer TFE) or ``stage`` (older, one stage); None when neither was sent."""
    stages = values.get("stages")
    if stages is not None:
        if not stages:
            raise Invalid("stages must name at least one stage", pointer=_pointer("stages"))
        for stage in stages:
            if stage not in STAGES:
                raise Invalid(
                    f"stages: {stage!r} is not one of {', '.join(STAGES)}"
                    + (
                        " (post_apply tasks are not run by Terrapod)"
                        if stage == "post_apply"
                        else ""
                    ),
                    pointer=_pointer("stages"),
                )
        return sorted(set(stages), key=STAGES.index)
    stage = values.get("stage")
    if stage is not None:
        if stage not in STAGES:
            raise Invalid(
                f"stage must be one of {', '.join(STAGES)}, got {stage!r}",
                pointer=_pointer("stage"),
            )
        return [stage]
    if "stages" in values or "stage" in values:
        blame = "stages" if "stages" in values else "stage"
        raise Invalid(f"{blame} cannot be null", pointer=_pointer(blame))
    return None


def _enforcement(values: dict[str, Any], *, required: bool) -> str | None:
    level = values.get("enforcement_level")
    if level is None:
        if required or "enforcement_level" in values:
            raise Invalid(
                "enforcement-level is required: advisory or mandatory",
                pointer=_pointer("enforcement-level"),
            )
        return None
    if level not in ENFORCEMENT_LEVELS:
        raise Invalid(
            f"enforcement-level must be advisory or mandatory, got {level!r}",
            pointer=_pointer("enforcement-level"),
        )
    return str(level)


async def list_workspace_tasks(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    *,
    offset: int,
    limit: int,
) -> tuple[Sequence[WorkspaceTask], int]:
    _authorize_ws(principal, Action.WS_READ, workspace, org)
    where = WorkspaceTask.workspace_id == workspace.id
    total = (
        await session.execute(select(func.count()).select_from(WorkspaceTask).where(where))
    ).scalar_one()
    rows = await session.execute(
        select(WorkspaceTask)
        .where(where)
        .order_by(WorkspaceTask.created_at, WorkspaceTask.id)
        .offset(offset)
        .limit(limit)
    )
    return rows.scalars().all(), int(total)


async def get_workspace_task(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    workspace_task_id: str,
) -> WorkspaceTask:
    _authorize_ws(principal, Action.WS_READ, workspace, org)
    found = None
    if looks_like_id(workspace_task_id, "wstask"):
        found = (
            await session.execute(
                select(WorkspaceTask).where(
                    WorkspaceTask.id == workspace_task_id,
                    WorkspaceTask.workspace_id == workspace.id,
                )
            )
        ).scalar_one_or_none()
    if found is None:
        raise NotFound("workspace run task not found")
    return found


async def create_workspace_task(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    values: dict[str, Any],
    task_id: str | None,
) -> WorkspaceTask:
    """Attach the organization's task ``task_id`` to the workspace (default stage:
    post_plan, as in TFE)."""
    _authorize_ws(principal, Action.WS_UPDATE, workspace, org)
    level = _enforcement(values, required=True)
    stages = _stages_of(values) or [POST_PLAN]
    if task_id is None:
        raise Invalid(
            "relationships.task.data.id names the run task to attach",
            pointer="/data/relationships/task",
        )
    task = None
    if looks_like_id(task_id, "task"):
        task = await session.get(RunTask, task_id)
    if task is None or task.organization_id != org.id:
        raise NotFound("run task not found")
    taken = (
        await session.execute(
            select(func.count())
            .select_from(WorkspaceTask)
            .where(WorkspaceTask.workspace_id == workspace.id, WorkspaceTask.task_id == task.id)
        )
    ).scalar_one()
    if taken:
        raise Conflict(f"run task {task.name} is already attached to workspace {workspace.name}")
    wt = WorkspaceTask(
        id=new_id("wstask"),
        workspace_id=workspace.id,
        task_id=task.id,
        enforcement_level=level,
        stages=stages,
    )
    session.add(wt)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"run task {task.name} is already attached to workspace {workspace.name}"
        ) from exc
    return wt


async def update_workspace_task(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    wt: WorkspaceTask,
    values: dict[str, Any],
) -> WorkspaceTask:
    _authorize_ws(principal, Action.WS_UPDATE, workspace, org)
    level = _enforcement(values, required=False)
    stages = _stages_of(values)
    if level is not None:
        wt.enforcement_level = level
    if stages is not None:
        wt.stages = stages
    await session.flush()
    return wt


async def delete_workspace_task(
    session: AsyncSession,
    principal: Principal,
    workspace: Workspace,
    org: Organization,
    wt: WorkspaceTask,
) -> None:
    _authorize_ws(principal, Action.WS_UPDATE, workspace, org)
    await session.delete(wt)
    await session.flush()


# -- task stages and results: reading ----------------------------------------------------


@dataclass
class StageView:
    stage: TaskStage
    results: list[TaskResult]
    can_override: bool


async def _results_of(
    session: AsyncSession, stage_ids: Sequence[str]
) -> dict[str, list[TaskResult]]:
    out: dict[str, list[TaskResult]] = {s: [] for s in stage_ids}
    if not stage_ids:
        return out
    rows = await session.execute(
        select(TaskResult)
        .where(TaskResult.task_stage_id.in_(list(stage_ids)))
        .order_by(TaskResult.created_at, TaskResult.id)
    )
    for result in rows.scalars():
        out[result.task_stage_id].append(result)
    return out


def _may_override(principal: Principal, org_id: str) -> bool:
    return can(principal, Action.ORG_OVERRIDE_RUN_TASKS, organization_id=org_id)


async def stages_of_run(
    session: AsyncSession, principal: Principal, run_id: str, *, offset: int, limit: int
) -> tuple[list[StageView], int]:
    ctx = await runs.get(session, principal, run_id)
    where = TaskStage.run_id == ctx.run.id
    total = (
        await session.execute(select(func.count()).select_from(TaskStage).where(where))
    ).scalar_one()
    stages = list(
        (
            await session.execute(
                select(TaskStage).where(where).order_by(TaskStage.created_at, TaskStage.id)
            )
        ).scalars()
    )
    stages.sort(key=lambda s: STAGES.index(s.stage))
    page = stages[offset : offset + limit]
    results = await _results_of(session, [s.id for s in page])
    may = _may_override(principal, ctx.organization.id)
    return [StageView(s, results[s.id], may) for s in page], int(total)


async def get_stage(session: AsyncSession, principal: Principal, stage_id: str) -> StageView:
    stage = await session.get(TaskStage, stage_id) if looks_like_id(stage_id, "ts") else None
    if stage is None:
        raise NotFound("task stage not found")
    try:
        ctx = await runs.get(session, principal, stage.run_id)
    except NotFound:
        raise NotFound("task stage not found") from None
    results = await _results_of(session, [stage.id])
    return StageView(stage, results[stage.id], _may_override(principal, ctx.organization.id))


async def get_result(session: AsyncSession, principal: Principal, result_id: str) -> TaskResult:
    result = (
        await session.get(TaskResult, result_id) if looks_like_id(result_id, "taskrs") else None
    )
    stage = await session.get(TaskStage, result.task_stage_id) if result is not None else None
    if result is None or stage is None:
        raise NotFound("task result not found")
    try:
        await runs.get(session, principal, stage.run_id)
    except NotFound:
        raise NotFound("task result not found") from None
    return result


async def stage_of(session: AsyncSession, result: TaskResult) -> TaskStage:
    stage = await session.get(TaskStage, result.task_stage_id)
    if stage is None:  # results are deleted with their stage; never apart
        raise NotFound("task stage not found")
    return stage


# -- task stages and results: the run's passage --------------------------------------------


async def on_run_changed(session: AsyncSession, run: Run) -> None:
    """Hook ``run_changed``: a new run (the only time a run is pending) gets a stage, and a
    pending result per task, for each stage its workspace's enabled tasks run at; a run that
    ends closes its open stages."""
    if run.status == m.PENDING:
        await _make_stages(session, run)
    elif run.status in m.FINAL:
        await _close_stages(session, run)


async def _make_stages(session: AsyncSession, run: Run) -> None:
    rows = (
        await session.execute(
            select(WorkspaceTask, RunTask)
            .join(RunTask, RunTask.id == WorkspaceTask.task_id)
            .where(WorkspaceTask.workspace_id == run.workspace_id, RunTask.enabled.is_(True))
            .order_by(WorkspaceTask.created_at, WorkspaceTask.id)
        )
    ).all()
    # Remembered for this transaction: a run that starts at once (the usual case) reaches
    # its pre-plan stage in the same transaction, which then needs no query to find it.
    made: dict[str, TaskStage] = {}
    session.info.setdefault(_MADE_STAGES, {})[run.id] = made
    if not rows:
        return
    now = utcnow()
    stages = made
    results: list[TaskResult] = []
    for wt, task in rows:
        for name in wt.stages:
            if name == PRE_APPLY and run.plan_only:
                continue  # a speculative run never applies
            if name not in stages:
                stages[name] = TaskStage(
                    id=new_id("ts"),
                    run_id=run.id,
                    stage=name,
                    status=STAGE_PENDING,
                    status_timestamps={},
                    created_at=now,
                    updated_at=now,
                )
                session.add(stages[name])
            results.append(
                TaskResult(
                    id=new_id("taskrs"),
                    task_stage_id=stages[name].id,
                    task_id=task.id,
                    workspace_task_id=wt.id,
                    task_name=task.name,
                    task_url=task.url,
                    enforcement_level=wt.enforcement_level,
                    status=RESULT_PENDING,
                    status_timestamps={},
                    created_at=now,
                    updated_at=now,
                )
            )
    await session.flush()  # no ORM relationships: the stages must exist before their results
    session.add_all(results)
    await session.flush()


async def _close_stages(session: AsyncSession, run: Run) -> None:
    """The run ended: stages not yet reached are unreachable, running ones canceled (or
    errored when the run errored for another reason); their open results unreachable."""
    open_stages = list(
        (
            await session.execute(
                select(TaskStage).where(
                    TaskStage.run_id == run.id, TaskStage.status.in_(STAGE_OPEN)
                )
            )
        ).scalars()
    )
    if not open_stages:
        return
    now = utcnow()
    for stage in open_stages:
        if stage.status not in STAGE_OPEN:
            continue  # decided in this transaction (what ends the run), not flushed yet
        if stage.status == STAGE_PENDING:
            _stamp(stage, STAGE_UNREACHABLE, now)
        else:
            _stamp(stage, STAGE_ERRORED if run.status == m.ERRORED else STAGE_CANCELED, now)
    await session.execute(
        sql_update(TaskResult)
        .where(
            TaskResult.task_stage_id.in_([s.id for s in open_stages]),
            TaskResult.status.in_(RESULT_OPEN),
        )
        .values(status=RESULT_UNREACHABLE, access_token_hash=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.flush()


async def on_task_stage_reached(session: AsyncSession, reached: TaskStageReached) -> None:
    """Hook ``task_stage_reached``: start the run's stage if it has one; the delivery worker
    sends its requests once this transaction has committed."""
    run: Run = reached.run
    made: dict[str, TaskStage] | None = session.info.get(_MADE_STAGES, {}).get(run.id)
    if made is not None:
        stage = made.get(reached.stage)
    else:
        stage = (
            await session.execute(
                select(TaskStage).where(
                    TaskStage.run_id == run.id, TaskStage.stage == reached.stage
                )
            )
        ).scalar_one_or_none()
    if stage is None or stage.status != STAGE_PENDING:
        return
    now = utcnow()
    _stamp(stage, STAGE_RUNNING, now)
    await run_queue.begin_task_stage(session, run, reached.stage, now)
    publish_after_commit(session, TOPIC, {"task_stage_id": stage.id, "run_id": run.id})


async def stages_of_runs(
    session: AsyncSession, related: RelatedResources
) -> tuple[list[TaskStage], dict[str, list[TaskResult]]]:
    """For the ``run_task_stages`` hook (schemas.on_run_task_stages): the stages of the runs,
    in stage order, and their results when ``related.full``."""
    if not related.ids:
        return [], {}
    stages = list(
        (
            await session.execute(
                select(TaskStage)
                .where(TaskStage.run_id.in_(related.ids))
                .order_by(TaskStage.created_at, TaskStage.id)
            )
        ).scalars()
    )
    stages.sort(key=lambda s: STAGES.index(s.stage))
    results = await _results_of(session, [s.id for s in stages]) if related.full else {}
    return stages, results


def failure_message(failed: Sequence[TaskResult]) -> str:
    """Why a stage stopped its run: each failed mandatory task and what it said."""
    parts = []
    for result in failed:
        text = f"run task {result.task_name} (mandatory) {result.status}"
        if result.message:
            text += f": {result.message}"
        parts.append(text)
    return "; ".join(parts)


async def settle_stage(session: AsyncSession, stage: TaskStage, *, overridable: bool) -> None:
    """Once every result of a running stage is in: pass it and let the run go on, or fail
    it and end the run errored with the failed tasks' messages (or, for a post-plan stage
    when ``overridable``, wait for an owner's override)."""
    if stage.status != STAGE_RUNNING:
        return
    results = (await _results_of(session, [stage.id]))[stage.id]
    if any(r.status in RESULT_OPEN for r in results):
        return
    ctx = await run_queue.load(session, stage.run_id, for_update=True)
    run = ctx.run
    running_status = run_queue.TASK_STAGE_STATUSES[stage.stage][0]
    now = utcnow()
    failed = [
        r
        for r in results
        if r.enforcement_level == MANDATORY and r.status in (RESULT_FAILED, RESULT_ERRORED)
    ]
    if run.status != running_status:
        # The run moved on without this stage (canceled, discarded): nothing to decide.
        _stamp(stage, STAGE_CANCELED, now)
        return
    if not failed:
        _stamp(stage, STAGE_PASSED, now)
        await run_jobs.task_stage_passed(session, run, stage.stage)
        return
    if overridable and stage.stage == POST_PLAN:
        _stamp(stage, STAGE_AWAITING_OVERRIDE, now)
        await run_jobs.task_stage_awaits_override(session, run)
        return
    _stamp(stage, STAGE_FAILED, now)
    await session.flush()
    await run_queue.end_run(
        session, run, m.ERRORED, now, f"{stage.stage} tasks failed: {failure_message(failed)}"
    )


async def override(
    session: AsyncSession, principal: Principal, stage_id: str, comment: str | None
) -> StageView:
    """An organization owner lets a run go on past its failed mandatory post-plan tasks."""
    view = await get_stage(session, principal, stage_id)
    ctx = await run_queue.load(session, view.stage.run_id, for_update=True)
    authorize(
        principal, Action.ORG_OVERRIDE_RUN_TASKS, organization_id=ctx.organization.id, what="run"
    )
    stage = view.stage
    if stage.status != STAGE_AWAITING_OVERRIDE or ctx.run.status != m.POST_PLAN_AWAITING_DECISION:
        raise Conflict(
            f"task stage {stage.id} is {stage.status}; only a stage awaiting_override can be "
            "overridden"
        )
    now = utcnow()
    # TFE shows an overridden stage as passed; its failed results stay failed.
    _stamp(stage, STAGE_PASSED, now)
    stage.status_timestamps = {**stage.status_timestamps, "overridden-at": _iso(now)}
    run_queue.record_event(
        session,
        ctx.run,
        "task_stage_overridden",
        comment or "Run tasks overridden",
        principal.user_id,
    )
    await run_jobs.task_stage_passed(session, ctx.run, stage.stage)
    return view


@dataclass(frozen=True)
class CallbackReport:
    status: str
    message: str | None = None
    url: str | None = None
    outcomes: list[Any] | None = None


async def callback(
    session: AsyncSession,
    result_id: str,
    token: str | None,
    report: CallbackReport,
    *,
    overridable: bool,
) -> TaskResult:
    """A task service reports on its result, with the access token of that result's request.
    ``running`` updates the message; ``passed``/``failed`` end the result (and the token)."""
    result = (
        await session.get(TaskResult, result_id, with_for_update=True)
        if looks_like_id(result_id, "taskrs")
        else None
    )
    if (
        token is None
        or result is None
        or result.access_token_hash is None
        or not hmac.compare_digest(token_hash(token), result.access_token_hash)
    ):
        raise Unauthenticated(
            "the access token is not valid for this task result (it names another result, "
            "or the result is already in)"
        )
    if report.status not in CALLBACK_STATUSES:
        raise Invalid(
            f"status must be passed, failed or running, got {report.status!r}",
            pointer=_pointer("status"),
        )
    if report.message is not None and len(report.message) > MAX_MESSAGE_LENGTH:
        raise Invalid(
            f"message must be at most {MAX_MESSAGE_LENGTH} characters", pointer=_pointer("message")
        )
    if report.url is not None and (
        len(report.url) > MAX_URL_LENGTH or not report.url.startswith(("http://", "https://"))
    ):
        raise Invalid("url must be an http:// or https:// URL", pointer=_pointer("url"))
    now = utcnow()
    if report.message is not None:
        result.message = report.message
    if report.url is not None:
        result.url = report.url
    if report.outcomes is not None:
        result.outcomes = report.outcomes
    result.updated_at = now
    if report.status == RESULT_RUNNING:
        await session.flush()
        return result
    _stamp(result, report.status, now)
    result.access_token_hash = None
    result.callback_deadline = None
    await session.flush()
    stage = await session.get(TaskStage, result.task_stage_id)
    if stage is not None:
        await settle_stage(session, stage, overridable=overridable)
    return result


# -- for the delivery worker -----------------------------------------------------------------


@dataclass
class Delivery:
    """One request to send: where, what, and the key to sign it with."""

    result_id: str
    url: str
    body: bytes
    hmac_key: bytes | None


async def claim_deliveries(
    session: AsyncSession, deadline: datetime, limit: int = 20
) -> list[tuple[TaskResult, TaskStage, RunTask | None, str]]:
    """Pending results of running stages, claimed (status running) with a fresh access token
    each; returns them with their stage, task and the token (for the request only)."""
    rows = (
        await session.execute(
            select(TaskResult, TaskStage)
            .join(TaskStage, TaskStage.id == TaskResult.task_stage_id)
            .where(TaskResult.status == RESULT_PENDING, TaskStage.status == STAGE_RUNNING)
            .order_by(TaskResult.created_at, TaskResult.id)
            .limit(limit)
            .with_for_update(of=TaskResult, skip_locked=True)
        )
    ).all()
    out = []
    now = utcnow()
    for result, stage in rows:
        token = secrets.token_urlsafe(32)
        claimed = await session.execute(
            sql_update(TaskResult)
            .where(TaskResult.id == result.id, TaskResult.status == RESULT_PENDING)
            .values(access_token_hash=token_hash(token), callback_deadline=deadline)
            .execution_options(synchronize_session=False)
        )
        if not claimed.rowcount:  # type: ignore[attr-defined]
            continue
        await session.refresh(result)
        _stamp(result, RESULT_RUNNING, now)
        task = await session.get(RunTask, result.task_id) if result.task_id else None
        out.append((result, stage, task, token))
    await session.flush()
    return out


async def end_result(
    session: AsyncSession, result_id: str, status: str, message: str, *, overridable: bool
) -> None:
    """End a result the service never reported on (undeliverable, timed out), if still open."""
    result = await session.get(TaskResult, result_id, with_for_update=True, populate_existing=True)
    if result is None or result.status not in RESULT_OPEN:
        return
    now = utcnow()
    result.message = message
    result.access_token_hash = None
    result.callback_deadline = None
    _stamp(result, status, now)
    await session.flush()
    stage = await session.get(TaskStage, result.task_stage_id)
    if stage is not None:
        await settle_stage(session, stage, overridable=overridable)


async def overdue_results(session: AsyncSession, now: datetime) -> list[str]:
    rows = await session.execute(
        select(TaskResult.id).where(
            TaskResult.status == RESULT_RUNNING,
            TaskResult.callback_deadline.is_not(None),
            TaskResult.callback_deadline < now,
        )
    )
    return list(rows.scalars())
