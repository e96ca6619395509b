"""How higher domains react to lower ones without being imported by them (STYLE.md 6).

A lower domain fires a named hook inside its transaction (``await fire(session,
"workspace_deleting", workspace)``); the application wires the higher domains' reactions into
one :class:`Hooks` object (in :mod:`terrapod.app`), which travels with every session. Work that
must only happen once the transaction is durable (deleting objects from storage, publishing
events) is queued with :func:`after_commit` and run by the session's owner after it commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.observability.logging import get_logger

Hook = Callable[[AsyncSession, Any], Awaitable[None]]
AfterCommit = Callable[[], Awaitable[None]]

log = get_logger("terrapod.hooks")


@dataclass
class TaskStageReached:
    """The subject of ``task_stage_reached``: ``run`` is about to pass ``stage`` (pre_plan,
    post_plan or pre_apply)."""

    run: Any
    stage: str


@dataclass
class JobFinished:
    """The subject of ``job_finished``: ``run``'s ``phase`` job (plan or apply) ended with
    ``outcome`` (finished, errored or canceled); ``report`` is what the job reported (the
    runner's ``JobResult``, or ``None`` when the job ended without one)."""

    run: Any
    phase: str
    outcome: str
    report: Any = None


@dataclass
class RelatedResources:
    """The subject of a question a lower domain asks while it serializes (``run_task_stages``):
    the reactions fill ``refs`` (id -> resource identifiers of its related resources) and,
    when ``full``, ``resources`` (the related resources themselves, for ``included``)."""

    ids: list[str]
    full: bool = False
    refs: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    resources: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class AgentPoolUse:
    """The subject of ``agent_pool_use``, a question the workspaces domain asks before a
    workspace runs on an agent pool: may workspace ``workspace_id`` (None: one being created)
    of organization ``organization_id`` use pool ``pool_id``? The reaction (the agent pools
    domain) sets ``allowed`` and, when refusing, ``reason``. Nobody answering means no.
    The organizations domain asks it too, with ``organization_default`` set, before the pool
    becomes the organization's default agent pool (the one new workspaces get)."""

    organization_id: str
    workspace_id: str | None
    pool_id: str
    organization_default: bool = False
    allowed: bool | None = None
    reason: str = ""


@dataclass
class Hooks:
    # (session, organization) before an organization and everything in it is deleted
    organization_deleting: list[Hook] = field(default_factory=list)
    # (session, workspace) before a workspace is deleted
    workspace_deleting: list[Hook] = field(default_factory=list)
    # (session, configuration version) after its tarball was accepted
    configuration_uploaded: list[Hook] = field(default_factory=list)
    # (session, workspace) after its lock was released by a person (runs may now start)
    workspace_unlocked: list[Hook] = field(default_factory=list)
    # (session, run) after the run was created or its status changed, inside the transaction
    # that made the change (run triggers, notifications). Read ``run.status``; queue work that
    # must wait for the commit with :func:`after_commit`.
    run_changed: list[Hook] = field(default_factory=list)
    # (session, TaskStageReached) when a run reaches a run-task stage. A reaction that starts
    # the stage moves the run to <stage>_running (terrapod.runs.queue.begin_task_stage); the
    # run then waits until terrapod.runs.jobs.task_stage_passed (or end_run) moves it on.
    task_stage_reached: list[Hook] = field(default_factory=list)
    # (session, RelatedResources of run ids): the task stages of runs, for serializing them
    run_task_stages: list[Hook] = field(default_factory=list)
    # (session, JobFinished) when an agent reports a job's end, before the run moves on
    # (Terraform actions record what the engine planned and invoked)
    job_finished: list[Hook] = field(default_factory=list)
    # (session, AgentPoolUse) before a workspace is set to run on an agent pool, or a pool
    # becomes an organization's default
    agent_pool_use: list[Hook] = field(default_factory=list)


async def fire(session: AsyncSession, name: str, subject: Any) -> None:
    hooks: Hooks | None = session.info.get("hooks")
    if hooks is None:
        return
    for hook in getattr(hooks, name):
        await hook(session, subject)


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    session.info.setdefault("after_commit", []).append(callback)


async def run_after_commit(session: AsyncSession) -> None:
    """Run the queued callbacks; a failure is logged, never raised (the commit stands)."""
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    for callback in callbacks:
        try:
            await callback()
        except Exception:
            log.exception("after-commit work failed")
