"""What the generic endpoint suite's world holds for the run routes: runs in the states each
action needs (the API tier has no built-in agent; tests/runs_support.ProtocolAgent plays it)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from terrapod.runs.models import Run
from terrapod.storage import keys
from tests.runs_support import ProtocolAgent, create_run, make_workspace, upload_configuration

PLACEHOLDERS: dict[str, str] = {
    "run_id": "run-AAAAAAAAAAAAAAAA",
    "held_workspace_id": "ws-DDDDDDDDDDDDDDDD",
    "planned_run_id": "run-BBBBBBBBBBBBBBBB",
    "pending_run_id": "run-CCCCCCCCCCCCCCCC",
    "final_run_id": "run-DDDDDDDDDDDDDDDD",
    "stuck_run_id": "run-EEEEEEEEEEEEEEEE",
    "plan_id": "plan-AAAAAAAAAAAAAAAA",
    "apply_id": "apply-AAAAAAAAAAAAAAAA",
    "event_id": "re-AAAAAAAAAAAAAAAA",
}


async def extend(app: FastAPI, admin: httpx.AsyncClient, values: dict[str, str]) -> dict[str, str]:
    """``runs-held``: a planned run holding the workspace and a pending one behind it;
    ``other``: a finished (errored) run and two speculative ones waiting for an agent;
    ``runs-stuck``: a planning run whose cancel did not stop it. ``main`` gets an uploaded
    configuration so a run can be created there, and stays unlocked for the lock routes."""
    agent = ProtocolAgent(app)
    main, other = values["workspace_id"], values["other_workspace_id"]
    held = await make_workspace(admin, "runs-held")
    stuck_ws = await make_workspace(admin, "runs-stuck")
    for workspace_id in (main, other, held, stuck_ws):
        await upload_configuration(admin, workspace_id)
    planned = await create_run(admin, held, message="planned")
    await agent.run_phase()
    pending = await create_run(admin, held, message="pending")
    final = await create_run(admin, other, message="final")
    await agent.run_phase("errored", error="boom")
    stuck = await create_run(admin, stuck_ws, message="stuck")
    assert await agent.claim() is not None
    async with app.state.sessionmaker() as session:
        run = await session.get(Run, stuck["id"])
        assert run is not None
        run.canceled_at = run.force_cancel_available_at = datetime.now(UTC)
        await session.commit()
    for _ in range(2):  # speculative runs waiting for an agent: the organization's queue
        await create_run(admin, other, **{"plan-only": True})
    plan_id = planned["relationships"]["plan"]["data"]["id"]
    for key in (keys.plan_json(planned["id"]), keys.plan_json_redacted(planned["id"])):
        await app.state.object_store.put_bytes(key, b'{"format_version": "1.2"}')
    events = (await admin.get(f"/api/v2/runs/{planned['id']}/run-events")).json()["data"]
    await app.state.housekeeping.idle()  # logs archived now, not while queries are counted
    return {
        "run_id": planned["id"],
        "held_workspace_id": held,
        "planned_run_id": planned["id"],
        "pending_run_id": pending["id"],
        "final_run_id": final["id"],
        "stuck_run_id": stuck["id"],
        "plan_id": plan_id,
        "apply_id": planned["relationships"]["apply"]["data"]["id"],
        "event_id": events[0]["id"],
    }
