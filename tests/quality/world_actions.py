"""What the generic endpoint suite's world holds for the Terraform actions routes: a
workspace whose run planned and applied three invocations of two actions, and a later run
that planned one (recorded through the ``job_finished`` reaction, as the agent's reports
are)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from terrapod.actions import service as actions
from terrapod.actions.models import TerraformAction
from terrapod.db.hooks import JobFinished
from terrapod.runner.actions import match_key
from terrapod.runner.spec import ActionInvocationReport, DeclaredAction, JobResult
from terrapod.runs.models import Run
from tests.runs_support import create_run, make_workspace, upload_configuration

PLACEHOLDERS: dict[str, str] = {
    "action_id": "action-AAAAAAAAAAAAAAAA",
    "actions_workspace_id": "ws-AAAAAAAAAAAAAAAB",
    "actions_run_id": "run-AAAAAAAAAAAAAAAB",
}


def _lifecycle(resource: str, status: str) -> ActionInvocationReport:
    return ActionInvocationReport(
        match_key=match_key("action.pinger_ping.watch", resource, 0, 0),
        module_address="",
        address="action.pinger_ping.watch",
        action_key=None,
        provider="pinger",
        method="lifecycle",
        status=status,  # type: ignore[arg-type]
        triggering_resource_address=resource,
        trigger_event="AfterCreate",
        trigger_block_index=0,
        actions_list_index=0,
        started_at="2026-05-12T15:40:00.000001Z" if status != "planned" else None,
        completed_at="2026-05-12T15:40:01Z" if status != "planned" else None,
    )


def _direct(status: str) -> ActionInvocationReport:
    return ActionInvocationReport(
        match_key=match_key("action.pinger_ping.hello", None, None, None),
        module_address="",
        address="action.pinger_ping.hello",
        action_key=None,
        provider="pinger",
        method="direct",
        status=status,  # type: ignore[arg-type]
        started_at="2026-05-12T15:41:00Z" if status != "planned" else None,
    )


async def extend(app: FastAPI, admin: httpx.AsyncClient, values: dict[str, str]) -> dict[str, str]:
    """Create what the Terraform actions routes need in the world; return the values their
    paths use."""
    workspace = await make_workspace(admin, "actions-ws")
    await upload_configuration(admin, workspace)
    run_id = (await create_run(admin, workspace))["id"]
    # A second run, queued behind the first, has planned one invocation so far.
    later_id = (await create_run(admin, workspace))["id"]
    declared = (
        DeclaredAction("", "action.pinger_ping.hello", "pinger"),
        DeclaredAction("", "action.pinger_ping.watch", "pinger"),
    )
    resources = ("terraform_data.a", "terraform_data.b")
    plan = JobResult(
        outcome="finished",
        actions=declared,
        action_invocations=(*(_lifecycle(r, "planned") for r in resources), _direct("planned")),
    )
    apply = JobResult(
        outcome="errored",
        action_invocations=(
            _lifecycle(resources[0], "successful"),
            _lifecycle(resources[1], "failed"),
            _direct("successful"),
        ),
    )
    async with app.state.sessionmaker() as session:
        run = await session.get(Run, run_id)
        assert run is not None
        await actions.on_job_finished(session, JobFinished(run, "plan", "finished", plan))
        await actions.on_job_finished(session, JobFinished(run, "apply", "errored", apply))
        later = await session.get(Run, later_id)
        assert later is not None
        planned = JobResult(
            outcome="finished",
            actions=declared,
            action_invocations=(_lifecycle(resources[0], "planned"),),
        )
        await actions.on_job_finished(session, JobFinished(later, "plan", "finished", planned))
        watch = await session.scalar(
            TerraformAction.__table__.select()
            .with_only_columns(TerraformAction.id)
            .where(TerraformAction.address == "action.pinger_ping.watch")
        )
        await session.commit()
    assert watch is not None
    return {"action_id": watch, "actions_workspace_id": workspace, "actions_run_id": run_id}
