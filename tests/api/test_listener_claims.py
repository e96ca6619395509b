"""Claim keys on ``runs/next`` (docs/dev/agents.md, "Claim keys"): a poll whose answer was lost
after the server claimed a job gets that job again when it is retried with the same key, with
a new run token (the first one stops working); a new key, another agent or a job that ended
never get it.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from terrapod.runs.models import Job
from tests.api.test_listener_protocol import (
    Joined,
    Pool,
    agent_workspace,
    finish,
    job_path,
    join,
    make_pool,
    next_job,
    run_auth,
)
from tests.runs_support import create_run


def new_key() -> str:
    return secrets.token_urlsafe(16)


async def poll(
    anon: httpx.AsyncClient, agent: Joined, key: str, attempt: int = 0, wait: float = 0
) -> dict[str, Any] | None:
    """One request of a keyed ``runs/next`` poll: the ticket, or None for 204."""
    r = await anon.get(
        f"/api/v2/listeners/{agent.agent_id}/runs/next",
        params={"wait": wait, "claim": key, "claim_attempt": attempt},
        headers=agent.auth,
    )
    if r.status_code == 204:
        return None
    assert r.status_code == 200, r.text
    return dict(r.json())


async def beat(anon: httpx.AsyncClient, ticket: dict[str, Any]) -> int:
    r = await anon.post(job_path(ticket) + "/heartbeat", headers=run_auth(ticket))
    return r.status_code


async def statuses(app: FastAPI) -> dict[str, tuple[str, str | None]]:
    """Job id -> (status, agent)."""
    async with app.state.sessionmaker() as session:
        rows = (await session.execute(select(Job.id, Job.status, Job.agent_id))).all()
    return {row[0]: (row[1], row[2]) for row in rows}


@pytest.fixture
async def pool(app: FastAPI) -> Pool:
    return await make_pool(app)


@pytest.fixture
async def agent(anon: httpx.AsyncClient, pool: Pool) -> Joined:
    return await join(anon, pool, "one")


@pytest.fixture
async def two_runs(app: FastAPI, admin: httpx.AsyncClient, pool: Pool) -> list[str]:
    """Two queued plan jobs of the pool (two workspaces); their run ids, oldest first."""
    runs = []
    for name in ("claims-a", "claims-b"):
        ws = await agent_workspace(app, admin, name, pool)
        runs.append((await create_run(admin, ws))["id"])
    return runs


async def test_a_retry_after_a_lost_answer_gets_the_same_job_with_a_new_run_token(
    app: FastAPI,
    admin: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    agent: Joined,
    two_runs: list[str],
) -> None:
    key = new_key()
    lost = await poll(anon, agent, key, attempt=0)
    assert lost is not None
    again = await poll(anon, agent, key, attempt=1)
    assert again is not None
    assert (again["job_id"], again["run_id"], again["phase"]) == (
        lost["job_id"],
        lost["run_id"],
        lost["phase"],
    )
    assert again["run_token"] != lost["run_token"]
    # only the new token reaches the job and the workspace; the lost one is gone at once
    assert await beat(anon, again) == 200
    assert await beat(anon, lost) == 401
    r = await anon.post(job_path(lost) + "/logs", content=b"x", headers=run_auth(lost))
    assert r.status_code == 401
    assert (await finish(anon, lost)).status_code == 401
    ws_id = again["spec"]["workspace_id"]
    assert (await anon.get(f"/api/v2/workspaces/{ws_id}", headers=run_auth(lost))).status_code == (
        401
    )
    assert (
        await anon.get(f"/api/v2/workspaces/{ws_id}", headers=run_auth(again))
    ).status_code == 200
    # the other job was not claimed by the retry
    jobs_now = await statuses(app)
    assert sorted(s for s, _ in jobs_now.values()) == ["queued", "running"]
    # the job carries on with the new token
    assert (await finish(anon, again)).status_code == 200
    run = (await admin.get(f"/api/v2/runs/{again['run_id']}")).json()["data"]
    assert run["attributes"]["status"] == "planned"


async def test_a_new_key_claims_another_job(
    anon: httpx.AsyncClient, agent: Joined, two_runs: list[str]
) -> None:
    first = await poll(anon, agent, new_key())
    second = await poll(anon, agent, new_key())
    assert first is not None and second is not None
    assert [first["run_id"], second["run_id"]] == two_runs
    assert await poll(anon, agent, new_key()) is None
    assert await beat(anon, first) == 200
    assert await beat(anon, second) == 200


async def test_another_agent_presenting_the_key_is_not_given_the_job(
    app: FastAPI,
    anon: httpx.AsyncClient,
    pool: Pool,
    agent: Joined,
    two_runs: list[str],
) -> None:
    key = new_key()
    mine = await poll(anon, agent, key)
    assert mine is not None
    other = await join(anon, pool, "two")
    theirs = await poll(anon, other, key, attempt=5)
    assert theirs is not None
    assert theirs["job_id"] != mine["job_id"]
    assert await beat(anon, mine) == 200  # its token was not replaced
    assert await poll(anon, other, key, attempt=6) is not None  # its own claim with the key
    jobs_now = await statuses(app)
    assert jobs_now[mine["job_id"]] == ("running", agent.agent_id)
    assert jobs_now[theirs["job_id"]] == ("running", other.agent_id)


async def test_a_key_whose_job_ended_claims_nothing(
    app: FastAPI, anon: httpx.AsyncClient, agent: Joined, two_runs: list[str]
) -> None:
    key = new_key()
    ticket = await poll(anon, agent, key)
    assert ticket is not None
    assert (await finish(anon, ticket, "errored")).status_code == 200
    # answered at once: nobody waits for the answer of a poll whose job already ended
    assert await poll(anon, agent, key, attempt=1, wait=15) is None
    jobs_now = await statuses(app)
    assert sorted(s for s, _ in jobs_now.values()) == ["errored", "queued"]
    # a new key claims the other job
    later = await poll(anon, agent, new_key())
    assert later is not None
    assert later["run_id"] == two_runs[1]


async def test_an_earlier_attempt_is_not_answered_after_a_later_one_was(
    anon: httpx.AsyncClient, agent: Joined, two_runs: list[str]
) -> None:
    """A request the agent gave up on (its connection broke while the server still held it)
    must not take the job, or its token, from the retry the agent got its answer from."""
    key = new_key()
    answered = await poll(anon, agent, key, attempt=1)
    assert answered is not None
    assert await poll(anon, agent, key, attempt=0) is None
    assert await beat(anon, answered) == 200


async def test_a_retry_waiting_while_the_lost_request_claims_gets_that_job(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, pool: Pool, agent: Joined
) -> None:
    """The agent's first request lost its connection but the server still holds it; the
    retry waits too. When the first one claims, the retry answers that job (found by the
    key in its look at the database; the bus is off, as for a job queued elsewhere)."""
    ws = await agent_workspace(app, admin, "claims-late", pool)
    key = new_key()
    bus = app.state.events
    app.state.events = None
    try:
        retry = asyncio.create_task(poll(anon, agent, key, attempt=1, wait=15))
        run = await create_run(admin, ws)
        lost = await poll(anon, agent, key, attempt=0)
        again = await asyncio.wait_for(retry, 10)
    finally:
        app.state.events = bus
    assert again is not None
    assert again["run_id"] == run["id"]
    # Whichever request claimed, only the retry's answer holds the live token.
    assert await beat(anon, again) == 200
    if lost is not None:
        assert lost["job_id"] == again["job_id"]
        assert await beat(anon, lost) == 401


async def test_two_attempts_claiming_at_once_take_one_job(
    app: FastAPI, anon: httpx.AsyncClient, agent: Joined, two_runs: list[str]
) -> None:
    key = new_key()
    earlier, later = await asyncio.gather(
        poll(anon, agent, key, attempt=0), poll(anon, agent, key, attempt=1)
    )
    assert later is not None
    assert await beat(anon, later) == 200
    if earlier is not None:
        assert earlier["job_id"] == later["job_id"]
        assert await beat(anon, earlier) == 401
    jobs_now = await statuses(app)
    assert sorted(s for s, _ in jobs_now.values()) == ["queued", "running"]


async def test_polls_without_a_key_claim_as_before(
    anon: httpx.AsyncClient, agent: Joined, two_runs: list[str]
) -> None:
    first, second = await next_job(anon, agent), await next_job(anon, agent)
    assert first is not None and second is not None
    assert first["job_id"] != second["job_id"]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"claim": "too-short"}, "claim"),
        ({"claim": "x" * 65}, "claim"),
        ({"claim": "a" * 21 + "/"}, "claim"),
        ({"claim": "a b" * 10}, "claim"),
        ({"claim": new_key(), "claim_attempt": -1}, "claim_attempt"),
        ({"claim": new_key(), "claim_attempt": "first"}, "claim_attempt"),
    ],
)
async def test_malformed_claim_keys_are_refused_naming_the_parameter(
    anon: httpx.AsyncClient, agent: Joined, params: dict[str, Any], name: str
) -> None:
    r = await anon.get(
        f"/api/v2/listeners/{agent.agent_id}/runs/next", params=params, headers=agent.auth
    )
    assert r.status_code == 400, r.text
    assert repr(name) in r.json()["errors"][0]["detail"], r.text
