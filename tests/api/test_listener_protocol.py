"""The listener protocol (docs/dev/agents.md) over HTTP: agents joining, their credentials,
claiming jobs by pool, the job routes bound to a run token, cancels reaching a job at once,
hand-back, run-token scope and stale jobs.

Pools and agent tokens are made directly in the database here (their TFE API is tested with
the agent pools domain); everything an agent does goes through the listener routes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from terrapod.agent.ticket import JobTicket
from terrapod.agentpools import listeners
from terrapod.agentpools.models import Agent, AgentPool
from terrapod.auth.models import Token
from terrapod.auth.tokens import generate_token, hash_token
from terrapod.db.ids import new_id
from terrapod.db.transactions import write_transaction
from terrapod.organizations.models import Organization
from terrapod.runner.spec import JobResult
from terrapod.runner.wire import result_to_dict
from terrapod.runs import jobs
from terrapod.runs.models import Job
from terrapod.workspaces.models import Workspace
from tests import statefiles
from tests.runs_support import create_run, make_workspace, status_of, upload_configuration

BASE = "https://terrapod.test"


@dataclass
class Pool:
    id: str
    agent_token: str
    token_id: str


@dataclass
class Joined:
    agent_id: str
    credential: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}


async def make_pool(app: FastAPI, name: str = "pool") -> Pool:
    plaintext = generate_token()
    async with write_transaction(app.state.sessionmaker) as session:
        org = (
            await session.execute(select(Organization).where(Organization.name == "default"))
        ).scalar_one()
        pool = AgentPool(id=new_id("apool"), organization_id=org.id, name=name)
        session.add(pool)
        await session.flush()
        token = Token(
            id=new_id("at"),
            kind="agent-pool",
            token_hash=hash_token(plaintext),
            organization_id=org.id,
            agent_pool_id=pool.id,
        )
        session.add(token)
    return Pool(pool.id, plaintext, token.id)


async def agent_workspace(app: FastAPI, admin: httpx.AsyncClient, name: str, pool: Pool) -> str:
    """A workspace with an uploaded configuration that executes on ``pool``."""
    ws = await make_workspace(admin, name)
    async with write_transaction(app.state.sessionmaker) as session:
        await session.execute(
            update(Workspace)
            .where(Workspace.id == ws)
            .values(execution_mode="agent", agent_pool_id=pool.id)
        )
    await upload_configuration(admin, ws)
    return ws


async def remote_workspace(admin: httpx.AsyncClient, name: str) -> str:
    ws = await make_workspace(admin, name)
    await upload_configuration(admin, ws)
    return ws


async def join(anon: httpx.AsyncClient, pool: Pool, name: str = "host-1") -> Joined:
    r = await anon.post(
        "/api/v2/agent-pools/join",
        json={"join_token": pool.agent_token, "name": name, "capacity": 2},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    return Joined(body["agent_id"], body["credential"])


async def next_job(
    anon: httpx.AsyncClient, agent: Joined, wait: float = 0
) -> dict[str, Any] | None:
    r = await anon.get(
        f"/api/v2/listeners/{agent.agent_id}/runs/next", params={"wait": wait}, headers=agent.auth
    )
    if r.status_code == 204:
        return None
    assert r.status_code == 200, r.text
    return dict(r.json())


def job_path(ticket: dict[str, Any]) -> str:
    return f"/api/v2/listeners/{ticket['agent_id']}/runs/{ticket['run_id']}"


def run_auth(ticket: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {ticket['run_token']}"}


async def finish(
    anon: httpx.AsyncClient, ticket: dict[str, Any], status: str = "finished", **fields: Any
) -> httpx.Response:
    body: dict[str, Any] = {"status": status}
    if status != "handed_back":
        if ticket["phase"] == "plan" and status == "finished":
            fields.setdefault("has_changes", True)
            fields.setdefault("additions", 1)
        body["result"] = result_to_dict(JobResult(outcome=status, **fields))  # type: ignore[arg-type]
    return await anon.patch(job_path(ticket), json=body, headers=run_auth(ticket))


async def plan_log(admin: httpx.AsyncClient, run_id: str) -> bytes:
    run = (await admin.get(f"/api/v2/runs/{run_id}")).json()["data"]
    plan_id = run["relationships"]["plan"]["data"]["id"]
    plan = (await admin.get(f"/api/v2/plans/{plan_id}")).json()["data"]
    return (await admin.get(plan["attributes"]["log-read-url"])).content


# -- joining and credentials ---------------------------------------------------------------


async def test_join_gives_a_credential_and_rejoining_reuses_the_agent(
    app: FastAPI, anon: httpx.AsyncClient
) -> None:
    pool = await make_pool(app)
    r = await anon.post(
        "/api/v2/agent-pools/join",
        json={
            "join_token": pool.agent_token,
            "name": "host-1",
            "capacity": 3,
            "runner_definitions": [{"anything": 1}],
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["content-type"].startswith("application/json")
    assert body["agent_id"].startswith("agent-")
    assert body["pool_id"] == pool.id
    assert body["credential"].startswith("tpod.")
    assert body["heartbeat_seconds"] == 5
    assert body["heartbeat_timeout_seconds"] == 60
    assert body["credential_expires_at"]
    first = Joined(body["agent_id"], body["credential"])
    hb = await anon.post(
        f"/api/v2/listeners/{first.agent_id}/heartbeat",
        json={"capacity": 4, "active_jobs": 1},
        headers=first.auth,
    )
    assert hb.status_code == 200, hb.text
    assert hb.json()["credential_expires_at"]
    async with app.state.sessionmaker() as session:
        agent = await session.get(Agent, first.agent_id)
        assert agent is not None
        assert (agent.capacity, agent.status, agent.token_id) == (4, "busy", pool.token_id)
        assert agent.credential_hash == hash_token(first.credential)  # only the hash is stored
    again = await join(anon, pool)
    assert again.agent_id == first.agent_id
    assert again.credential != first.credential
    refused = await anon.post(f"/api/v2/listeners/{first.agent_id}/heartbeat", headers=first.auth)
    assert refused.status_code == 401
    assert (
        await anon.post(f"/api/v2/listeners/{again.agent_id}/heartbeat", headers=again.auth)
    ).status_code == 200


async def test_legacy_join_path_must_name_the_tokens_pool(
    app: FastAPI, anon: httpx.AsyncClient
) -> None:
    pool = await make_pool(app, "one")
    other = await make_pool(app, "two")
    body = {"join_token": pool.agent_token, "name": "legacy"}
    wrong = await anon.post(f"/api/v2/agent-pools/{other.id}/listeners/join", json=body)
    assert wrong.status_code == 404
    right = await anon.post(f"/api/v2/agent-pools/{pool.id}/listeners/join", json=body)
    assert right.status_code == 201, right.text
    assert right.json()["pool_id"] == pool.id


async def test_renewal_replaces_the_credential_and_the_old_one_works_for_a_grace(
    app: FastAPI, anon: httpx.AsyncClient
) -> None:
    agent = await join(anon, await make_pool(app))
    r = await anon.post(f"/api/v2/listeners/{agent.agent_id}/renew", headers=agent.auth)
    assert r.status_code == 200, r.text
    renewed = Joined(agent.agent_id, r.json()["credential"])
    assert renewed.credential != agent.credential
    for who in (renewed, agent):
        hb = await anon.post(f"/api/v2/listeners/{who.agent_id}/heartbeat", headers=who.auth)
        assert hb.status_code == 200, hb.text
    async with write_transaction(app.state.sessionmaker) as session:
        await session.execute(
            update(Agent)
            .where(Agent.id == agent.agent_id)
            .values(previous_credential_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    old = await anon.post(f"/api/v2/listeners/{agent.agent_id}/heartbeat", headers=agent.auth)
    assert old.status_code == 401


async def test_revoked_agent_token_refuses_its_agents_at_their_next_call(
    app: FastAPI, anon: httpx.AsyncClient
) -> None:
    pool = await make_pool(app)
    agent = await join(anon, pool)
    async with write_transaction(app.state.sessionmaker) as session:
        await session.delete(await session.get(Token, pool.token_id))
    for method, path in (
        ("POST", "heartbeat"),
        ("POST", "renew"),
        ("GET", "runs/next"),
    ):
        r = await anon.request(
            method, f"/api/v2/listeners/{agent.agent_id}/{path}", headers=agent.auth
        )
        assert r.status_code == 401, (path, r.text)
        assert "revoked" in r.json()["errors"][0]["detail"]
    rejoin = await anon.post(
        "/api/v2/agent-pools/join", json={"join_token": pool.agent_token, "name": "host-1"}
    )
    assert rejoin.status_code == 401


async def test_revoking_the_agent_token_or_deleting_the_pool_through_the_api_stops_agents(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    pool = await make_pool(app, "revoked")
    agent = await join(anon, pool)
    r = await admin.delete(f"/api/v2/authentication-tokens/{pool.token_id}")
    assert r.status_code == 204, r.text
    hb = await anon.post(f"/api/v2/listeners/{agent.agent_id}/heartbeat", headers=agent.auth)
    assert hb.status_code == 401
    gone = await make_pool(app, "deleted")
    other = await join(anon, gone)
    r = await admin.delete(f"/api/v2/agent-pools/{gone.id}")
    assert r.status_code == 204, r.text
    nxt = await anon.get(f"/api/v2/listeners/{other.agent_id}/runs/next", headers=other.auth)
    assert nxt.status_code == 401


async def test_expired_credential_is_refused(app: FastAPI, anon: httpx.AsyncClient) -> None:
    agent = await join(anon, await make_pool(app))
    async with write_transaction(app.state.sessionmaker) as session:
        await session.execute(
            update(Agent)
            .where(Agent.id == agent.agent_id)
            .values(credential_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    r = await anon.post(f"/api/v2/listeners/{agent.agent_id}/heartbeat", headers=agent.auth)
    assert r.status_code == 401
    assert "join again" in r.json()["errors"][0]["detail"]


async def test_wrong_or_missing_credentials_are_refused(
    app: FastAPI, anon: httpx.AsyncClient
) -> None:
    pool = await make_pool(app)
    one = await join(anon, pool, "one")
    two = await join(anon, pool, "two")
    cases = [
        (one.agent_id, two.auth),  # another agent's credential
        (one.agent_id, {"Authorization": f"Bearer {generate_token()}"}),
        (one.agent_id, {}),
        ("agent-doesnotexist0000", one.auth),
        ("not-an-id", one.auth),
        (one.agent_id, {"Authorization": f"Bearer {pool.agent_token}"}),  # the agent token
    ]
    for agent_id, headers in cases:
        r = await anon.post(f"/api/v2/listeners/{agent_id}/heartbeat", headers=headers)
        assert r.status_code == 401, (agent_id, r.text)


async def test_malformed_joins_name_what_is_wrong(app: FastAPI, anon: httpx.AsyncClient) -> None:
    pool = await make_pool(app)
    cases: list[tuple[Any, int, str]] = [
        ({"name": "x"}, 422, "join_token"),
        ({"join_token": 5, "name": "x"}, 422, "join_token"),
        ({"join_token": generate_token(), "name": "x"}, 401, "agent token"),
        ({"join_token": pool.agent_token}, 422, "name"),
        ({"join_token": pool.agent_token, "name": ""}, 422, "name"),
        ({"join_token": pool.agent_token, "name": "x" * 300}, 422, "name"),
        ({"join_token": pool.agent_token, "name": "x", "capacity": "2"}, 422, "capacity"),
        ({"join_token": pool.agent_token, "name": "x", "capacity": 0}, 422, "capacity"),
        ([1, 2], 400, "object"),
    ]
    for body, status, word in cases:
        r = await anon.post("/api/v2/agent-pools/join", json=body)
        assert r.status_code == status, (body, r.text)
        assert word in r.json()["errors"][0]["detail"], (body, r.text)
    raw = await anon.post("/api/v2/agent-pools/join", content=b"{not json")
    assert raw.status_code == 400
    agent = await join(anon, pool)
    bad_wait = await anon.get(
        f"/api/v2/listeners/{agent.agent_id}/runs/next?wait=soon", headers=agent.auth
    )
    assert bad_wait.status_code == 400
    assert "wait" in bad_wait.json()["errors"][0]["detail"]
    bad_hb = await anon.post(
        f"/api/v2/listeners/{agent.agent_id}/heartbeat",
        json={"active_jobs": -1},
        headers=agent.auth,
    )
    assert bad_hb.status_code == 422
    assert "active_jobs" in bad_hb.json()["errors"][0]["detail"]


# -- claiming ----------------------------------------------------------------------------------


async def test_runs_next_claims_only_the_agents_pools_jobs(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    mine, theirs = await make_pool(app, "mine"), await make_pool(app, "theirs")
    ws = await agent_workspace(app, admin, "on-agents", mine)
    remote = await remote_workspace(admin, "on-the-server")
    agent_run = await create_run(admin, ws)
    remote_run = await create_run(admin, remote)
    outsider = await join(anon, theirs)
    assert await next_job(anon, outsider) is None
    agent = await join(anon, mine)
    ticket = await next_job(anon, agent)
    assert ticket is not None
    assert ticket["run_id"] == agent_run["id"]
    assert ticket["phase"] == "plan"
    assert await next_job(anon, agent) is None  # the remote workspace's job is not the pool's
    parsed = JobTicket.from_dict(ticket, base_url=BASE, agent_id=agent.agent_id)
    assert parsed.spec.workspace_id == ws
    assert parsed.spec.workspace_name == "on-agents"
    assert parsed.urls["configuration"] is not None
    assert parsed.urls["configuration"].startswith(f"{BASE}/objects/")
    assert parsed.urls["state"] is None  # no state yet
    assert parsed.urls["plan_file"] is None
    assert all(parsed.urls[n] for n in ("plan_file_upload", "plan_json_upload"))
    tarball = await anon.get(parsed.urls["configuration"])
    assert tarball.status_code == 200
    assert await status_of(admin, agent_run["id"]) == "planning"
    # the servers' built-in agents (no pool) take the remote workspace's job
    async with write_transaction(app.state.sessionmaker) as session:
        builtin, credential = await listeners.register_builtin(session, "builtin-test", 2)
    assert builtin.pool_id is None
    taken = await next_job(anon, Joined(builtin.id, credential))
    assert taken is not None
    assert taken["run_id"] == remote_run["id"]


async def test_builtin_agent_reregisters_under_its_name(app: FastAPI) -> None:
    async with write_transaction(app.state.sessionmaker) as session:
        first, one = await listeners.register_builtin(session, "builtin-x", 2)
    async with write_transaction(app.state.sessionmaker) as session:
        again, two = await listeners.register_builtin(session, "builtin-x", 3)
    assert again.id == first.id
    assert one != two
    async with app.state.sessionmaker() as session:
        assert (await listeners.authenticate(session, first.id, two)).capacity == 3


async def test_builtin_agents_of_servers_gone_for_a_day_are_removed(app: FastAPI) -> None:
    async with write_transaction(app.state.sessionmaker) as session:
        old, _ = await listeners.register_builtin(session, "builtin-host-111", 2)
        recent, _ = await listeners.register_builtin(session, "builtin-host-222", 2)
        await session.execute(
            update(Agent)
            .where(Agent.id == old.id)
            .values(last_ping_at=datetime.now(UTC) - timedelta(days=1, minutes=1))
        )
        await session.execute(
            update(Agent)
            .where(Agent.id == recent.id)
            .values(last_ping_at=datetime.now(UTC) - timedelta(hours=23))
        )
    async with write_transaction(app.state.sessionmaker) as session:
        await listeners.register_builtin(session, "builtin-host-333", 2)
    async with app.state.sessionmaker() as session:
        names = set(
            (
                await session.execute(select(Agent.name).where(Agent.name.like("builtin-host-%")))
            ).scalars()
        )
    assert names == {"builtin-host-222", "builtin-host-333"}


async def test_concurrent_claims_take_each_job_exactly_once(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    pool = await make_pool(app)
    run_ids = set()
    for i in range(6):
        ws = await agent_workspace(app, admin, f"busy-{i}", pool)
        run_ids.add((await create_run(admin, ws))["id"])
    agents = [await join(anon, pool, f"host-{i}") for i in range(10)]
    tickets = await asyncio.gather(*(next_job(anon, a) for a in agents))
    claimed = [t for t in tickets if t is not None]
    assert len(claimed) == 6
    assert {t["run_id"] for t in claimed} == run_ids
    assert len({t["job_id"] for t in claimed}) == 6
    async with app.state.sessionmaker() as session:
        owners = (await session.execute(select(Job.agent_id).where(Job.status == "running"))).all()
    assert len(owners) == 6


async def test_long_poll_returns_a_job_queued_while_it_waits(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    pool = await make_pool(app)
    ws = await agent_workspace(app, admin, "later", pool)
    agent = await join(anon, pool)
    waiting = asyncio.create_task(next_job(anon, agent, wait=15))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    run = await create_run(admin, ws)
    ticket = await asyncio.wait_for(waiting, 10)
    assert ticket is not None
    assert ticket["run_id"] == run["id"]


async def test_long_poll_finds_a_job_queued_by_another_server(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    """A job queued without a bus publication (as by another server process) is found by
    the long poll's look at the database."""
    pool = await make_pool(app)
    ws = await agent_workspace(app, admin, "elsewhere", pool)
    agent = await join(anon, pool)
    bus = app.state.events
    app.state.events = None  # this app's listener hears nothing from the bus
    try:
        waiting = asyncio.create_task(next_job(anon, agent, wait=15))
        await asyncio.sleep(0.2)
        run = await create_run(admin, ws)
        ticket = await asyncio.wait_for(waiting, 10)
    finally:
        app.state.events = bus
    assert ticket is not None
    assert ticket["run_id"] == run["id"]


# -- job routes --------------------------------------------------------------------------------


@pytest.fixture
async def pool(app: FastAPI) -> Pool:
    return await make_pool(app)


@pytest.fixture
async def agent(anon: httpx.AsyncClient, pool: Pool) -> Joined:
    return await join(anon, pool)


@pytest.fixture
async def ws(app: FastAPI, admin: httpx.AsyncClient, pool: Pool) -> str:
    return await agent_workspace(app, admin, "agent-ws", pool)


async def test_cancel_reaches_the_job_heartbeat_at_once(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, agent: Joined, ws: str
) -> None:
    run = await create_run(admin, ws)
    ticket = await next_job(anon, agent)
    assert ticket is not None
    quiet = await anon.post(
        job_path(ticket) + "/heartbeat", params={"wait": 0}, headers=run_auth(ticket)
    )
    assert quiet.status_code == 200, quiet.text
    assert quiet.json() == {"control": None}
    order: list[str] = []

    async def beat() -> dict[str, Any]:
        r = await anon.post(
            job_path(ticket) + "/heartbeat", params={"wait": 10}, headers=run_auth(ticket)
        )
        order.append("heartbeat answered")
        assert r.status_code == 200, r.text
        return dict(r.json())

    waiting = asyncio.create_task(beat())
    await asyncio.sleep(0.3)
    assert not waiting.done()
    order.append("cancel requested")
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/cancel", json={})
    assert r.status_code == 202, r.text
    answer = await asyncio.wait_for(waiting, 1.0)
    assert answer == {"control": "cancel"}
    assert order == ["cancel requested", "heartbeat answered"]
    # the agent stops the engine and reports the cancel: the run ends canceled
    done = await finish(anon, ticket, "canceled", error="canceled")
    assert done.status_code == 200, done.text
    assert await status_of(admin, run["id"]) == "canceled"


async def test_cancel_made_on_another_server_reaches_the_heartbeat(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, agent: Joined, ws: str
) -> None:
    run = await create_run(admin, ws)
    ticket = await next_job(anon, agent)
    assert ticket is not None
    bus = app.state.events
    app.state.events = None  # no bus wake-up: only the database says so
    try:
        waiting = asyncio.create_task(
            anon.post(
                job_path(ticket) + "/heartbeat", params={"wait": 10}, headers=run_auth(ticket)
            )
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        r = await admin.post(f"/api/v2/runs/{run['id']}/actions/cancel", json={})
        assert r.status_code == 202
        answer = await asyncio.wait_for(waiting, 3.0)
    finally:
        app.state.events = bus
    assert answer.json() == {"control": "cancel"}


async def test_logs_and_final_report_move_the_run_on(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, agent: Joined, ws: str
) -> None:
    run = await create_run(admin, ws)
    ticket = await next_job(anon, agent)
    assert ticket is not None
    for line in (b"Terraform will perform the following actions:\n", b"Plan: 1 to add.\n"):
        r = await anon.post(job_path(ticket) + "/logs", content=line, headers=run_auth(ticket))
        assert r.status_code == 204, r.text
    before = datetime.now(UTC)
    hb = await anon.post(job_path(ticket) + "/heartbeat", headers=run_auth(ticket))
    assert hb.status_code == 200
    async with app.state.sessionmaker() as session:
        job = await session.get(Job, ticket["job_id"])
        assert job is not None and job.heartbeat_at is not None
        assert job.heartbeat_at >= before - timedelta(seconds=1)
    done = await finish(anon, ticket)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "finished"
    assert done.json()["run_status"] == "planned"
    assert await status_of(admin, run["id"]) == "planned"
    log = await plan_log(admin, run["id"])
    assert log.startswith(b"\x02Terraform will perform")
    assert log.endswith(b"Plan: 1 to add.\n\x03")
    # repeating the final report is harmless; the job is over for everything else
    again = await finish(anon, ticket)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "finished"
    late = await anon.post(job_path(ticket) + "/logs", content=b"late", headers=run_auth(ticket))
    assert late.status_code == 409
    hb = await anon.post(job_path(ticket) + "/heartbeat", headers=run_auth(ticket))
    assert hb.status_code == 409
    # confirm: the apply job gets the plan file's URL and a new run token
    assert (await admin.post(f"/api/v2/runs/{run['id']}/actions/apply", json={})).status_code == 202
    apply = await next_job(anon, agent)
    assert apply is not None
    assert apply["phase"] == "apply"
    assert apply["run_token"] != ticket["run_token"]
    assert apply["urls"]["plan_file"] is not None
    assert apply["urls"]["plan_file_upload"] is None
    assert (await finish(anon, apply, additions=1)).status_code == 200
    assert await status_of(admin, run["id"]) == "applied"


async def test_malformed_final_reports_name_what_is_wrong(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, agent: Joined, ws: str
) -> None:
    await create_run(admin, ws)
    ticket = await next_job(anon, agent)
    assert ticket is not None
    cases: list[tuple[Any, str]] = [
        ({"status": "done"}, "status"),
        ({"status": "finished"}, "result"),
        ({"status": "finished", "result": {"outcome": "finished", "additions": "1"}}, "additions"),
        ({"status": "finished", "result": {"outcome": "errored"}}, "outcome"),
        ({"status": "errored", "result": []}, "result"),
    ]
    for body, word in cases:
        r = await anon.patch(job_path(ticket), json=body, headers=run_auth(ticket))
        assert r.status_code == 422, (body, r.text)
        assert word in r.json()["errors"][0]["detail"], (body, r.text)
    r = await anon.patch(job_path(ticket), content=b"nope", headers=run_auth(ticket))
    assert r.status_code == 400


async def test_job_routes_are_bound_to_their_run_and_agent(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, pool: Pool, ws: str
) -> None:
    other_ws = await agent_workspace(app, admin, "agent-ws-2", pool)
    await create_run(admin, ws)
    await create_run(admin, other_ws)
    one, two = await join(anon, pool, "one"), await join(anon, pool, "two")
    first, second = await next_job(anon, one), await next_job(anon, two)
    assert first is not None and second is not None
    # the run token of the first job on the second run's path
    crossed = f"/api/v2/listeners/{second['agent_id']}/runs/{second['run_id']}"
    r = await anon.post(crossed + "/logs", content=b"x", headers=run_auth(first))
    assert r.status_code == 404
    # the right run, but an agent that does not own the job
    wrong_agent = f"/api/v2/listeners/{two.agent_id}/runs/{first['run_id']}"
    r = await anon.post(wrong_agent + "/heartbeat", headers=run_auth(first))
    assert r.status_code == 404
    # an agent credential is no run token, and no token is refused
    r = await anon.post(job_path(first) + "/heartbeat", headers=one.auth)
    assert r.status_code == 401
    r = await anon.patch(job_path(first), json={"status": "errored"})
    assert r.status_code == 401


async def test_handed_back_plan_is_queued_again_with_one_log_stream(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, pool: Pool, agent: Joined, ws: str
) -> None:
    run = await create_run(admin, ws)
    ticket = await next_job(anon, agent)
    assert ticket is not None
    await anon.post(job_path(ticket) + "/logs", content=b"first try\n", headers=run_auth(ticket))
    r = await finish(anon, ticket, "handed_back")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "handed_back"
    assert await status_of(admin, run["id"]) == "plan_queued"
    assert (await finish(anon, ticket, "handed_back")).status_code == 200  # repeat: harmless
    other = await join(anon, pool, "host-2")
    retry = await next_job(anon, other)
    assert retry is not None
    assert retry["run_id"] == run["id"]
    assert retry["job_id"] != ticket["job_id"]
    await anon.post(job_path(retry) + "/logs", content=b"second try\n", headers=run_auth(retry))
    assert (await finish(anon, retry)).status_code == 200
    assert await status_of(admin, run["id"]) == "planned"
    log = await plan_log(admin, run["id"])
    assert log.count(b"\x02") == 1 and log.count(b"\x03") == 1
    assert log.startswith(b"\x02first try\n")
    assert b"handed it back" in log
    assert log.endswith(b"second try\n\x03")


async def test_an_apply_cannot_be_handed_back(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, agent: Joined, ws: str
) -> None:
    run = await create_run(admin, ws, **{"auto-apply": True})
    plan = await next_job(anon, agent)
    assert plan is not None
    assert (await finish(anon, plan)).status_code == 200
    apply = await next_job(anon, agent)
    assert apply is not None and apply["phase"] == "apply"
    r = await finish(anon, apply, "handed_back")
    assert r.status_code == 409
    assert await status_of(admin, run["id"]) == "applying"


# -- the run token through the ordinary API ----------------------------------------------------


async def test_run_token_reaches_only_its_own_workspaces_state(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, agent: Joined, ws: str
) -> None:
    other = await make_workspace(admin, "someone-elses")
    assert (
        await admin.post(f"/api/v2/workspaces/{other}/actions/lock", json={})
    ).status_code == 200
    other_state = statefiles.state(1, "other")
    r = await admin.post(
        f"/api/v2/workspaces/{other}/state-versions",
        json=statefiles.create_body(other_state, 1, lineage="other"),
    )
    assert r.status_code == 201, r.text
    run = await create_run(admin, ws, **{"auto-apply": True})
    plan = await next_job(anon, agent)
    assert plan is not None
    raw = statefiles.state(1)
    body = statefiles.create_body(raw, 1)
    body["data"]["relationships"] = {"run": {"data": {"type": "runs", "id": run["id"]}}}
    # a plan never writes state: its token may not (the run holds the workspace all the same)
    refused = await anon.post(
        f"/api/v2/workspaces/{ws}/state-versions",
        json=body,
        headers={**run_auth(plan), "Content-Type": "application/vnd.api+json"},
    )
    assert refused.status_code == 403, refused.text
    assert (await finish(anon, plan)).status_code == 200
    ticket = await next_job(anon, agent)
    assert ticket is not None and ticket["phase"] == "apply"
    token = {
        "Authorization": f"Bearer {ticket['run_token']}",
        "Content-Type": "application/vnd.api+json",
    }
    created = await anon.post(f"/api/v2/workspaces/{ws}/state-versions", json=body, headers=token)
    assert created.status_code == 201, created.text
    # the same state again (a retry after a lost answer) is that version, not a conflict
    again = await anon.post(f"/api/v2/workspaces/{ws}/state-versions", json=body, headers=token)
    assert again.status_code in (200, 201), again.text
    assert again.json()["data"]["id"] == created.json()["data"]["id"]
    current = await anon.get(f"/api/v2/workspaces/{ws}/current-state-version", headers=token)
    assert current.status_code == 200, current.text
    download = current.json()["data"]["attributes"]["hosted-state-download-url"]
    assert (await anon.get(download)).content == raw
    outputs = await anon.get(
        f"/api/v2/workspaces/{ws}/current-state-version-outputs", headers=token
    )
    assert outputs.status_code == 200, outputs.text
    # another workspace's state is invisible
    for path in (
        f"/api/v2/workspaces/{other}/current-state-version",
        f"/api/v2/workspaces/{other}/current-state-version-outputs",
    ):
        assert (await anon.get(path, headers=token)).status_code == 404, path
    r = await anon.post(
        f"/api/v2/workspaces/{other}/state-versions",
        json=statefiles.create_body(statefiles.state(2, "other"), 2, lineage="other"),
        headers=token,
    )
    assert r.status_code == 404
    # and nothing else: no runs, no workspace lists or settings, no variables to change,
    # no organizations
    refused = [
        await anon.post(
            "/api/v2/runs",
            json={
                "data": {
                    "type": "runs",
                    "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws}}},
                }
            },
            headers=token,
        ),
        await anon.get("/api/v2/organizations/default/workspaces", headers=token),
        await anon.get("/api/v2/organizations/default", headers=token),
        await anon.patch(
            f"/api/v2/workspaces/{ws}",
            json={"data": {"type": "workspaces", "attributes": {"description": "x"}}},
            headers=token,
        ),
        await anon.post(
            f"/api/v2/workspaces/{ws}/vars",
            json={
                "data": {
                    "type": "vars",
                    "attributes": {"key": "k", "value": "v", "category": "terraform"},
                }
            },
            headers=token,
        ),
        await anon.post(f"/api/v2/runs/{run['id']}/actions/discard", json={}, headers=token),
        await anon.get(f"/api/v2/workspaces/{other}", headers=token),
    ]
    for r in refused:
        assert r.status_code == 404, (r.request.url, r.text)
    listed = (await anon.get("/api/v2/organizations", headers=token)).json()
    assert listed["data"] == []
    # once the job has ended the token reaches nothing
    assert (await finish(anon, ticket)).status_code == 200
    gone = await anon.get(f"/api/v2/workspaces/{ws}/current-state-version", headers=token)
    assert gone.status_code == 401


async def test_expired_run_token_is_refused(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, agent: Joined, ws: str
) -> None:
    await create_run(admin, ws)
    ticket = await next_job(anon, agent)
    assert ticket is not None
    async with write_transaction(app.state.sessionmaker) as session:
        await session.execute(
            update(Token)
            .where(Token.token_hash == hash_token(ticket["run_token"]))
            .values(expired_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    r = await anon.post(job_path(ticket) + "/logs", content=b"x", headers=run_auth(ticket))
    assert r.status_code == 401
    r = await anon.get(f"/api/v2/workspaces/{ws}", headers=run_auth(ticket))
    assert r.status_code == 401


async def test_force_cancel_ends_the_job_and_its_report_is_still_accepted(
    app: FastAPI,
    admin: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    agent: Joined,
    ws: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app.state.settings.runs, "force_cancel_cooloff_seconds", 0)
    run = await create_run(admin, ws)
    ticket = await next_job(anon, agent)
    assert ticket is not None
    assert (
        await admin.post(f"/api/v2/runs/{run['id']}/actions/cancel", json={})
    ).status_code == 202
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/force-cancel", json={})
    assert r.status_code == 202, r.text
    assert await status_of(admin, run["id"]) == "force_canceled"
    hb = await anon.post(job_path(ticket) + "/heartbeat", headers=run_auth(ticket))
    assert hb.status_code == 409
    state = await anon.get(
        f"/api/v2/workspaces/{ws}/current-state-version", headers=run_auth(ticket)
    )
    assert state.status_code == 401
    late = await finish(anon, ticket, "canceled")
    assert late.status_code == 200, late.text
    assert late.json()["status"] == "canceled"
    assert late.json()["run_status"] == "force_canceled"


async def test_next_job_hands_out_the_current_state(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, agent: Joined, ws: str
) -> None:
    raw = statefiles.state(3)
    assert (await admin.post(f"/api/v2/workspaces/{ws}/actions/lock", json={})).status_code == 200
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/state-versions", json=statefiles.create_body(raw, 3)
    )
    assert r.status_code == 201, r.text
    assert (await admin.post(f"/api/v2/workspaces/{ws}/actions/unlock", json={})).status_code == 200
    await create_run(admin, ws)
    ticket = await next_job(anon, agent)
    assert ticket is not None
    assert (await anon.get(ticket["urls"]["state"])).content == raw


# -- stale jobs --------------------------------------------------------------------------------


async def test_stale_job_fails_with_the_reason_in_its_log_and_the_next_run_starts(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, agent: Joined, ws: str
) -> None:
    first = await create_run(admin, ws)
    second = await create_run(admin, ws)
    ticket = await next_job(anon, agent)
    assert ticket is not None and ticket["run_id"] == first["id"]
    await anon.post(job_path(ticket) + "/logs", content=b"working\n", headers=run_auth(ticket))
    async with write_transaction(app.state.sessionmaker) as session:
        await session.execute(
            update(Job)
            .where(Job.id == ticket["job_id"])
            .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    async with write_transaction(app.state.sessionmaker) as session:
        ended = await jobs.fail_stale_jobs(session, timedelta(seconds=60))
    assert ended == [first["id"]]
    assert await status_of(admin, first["id"]) == "errored"
    log = await plan_log(admin, first["id"])
    assert log.startswith(b"\x02working\n")
    assert log.endswith(b"\x03")
    assert f"({agent.agent_id}) stopped responding".encode() in log
    assert await status_of(admin, second["id"]) == "plan_queued"
    # the agent that comes back is told its job is over
    r = await anon.post(job_path(ticket) + "/heartbeat", headers=run_auth(ticket))
    assert r.status_code == 409
    nxt = await next_job(anon, agent)
    assert nxt is not None and nxt["run_id"] == second["id"]


async def test_a_job_whose_variables_cannot_be_read_ends_errored_with_the_reason(
    admin: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    agent: Joined,
    ws: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from terrapod.errors import Invalid

    async def undecryptable(*_: Any) -> Any:
        raise Invalid("the sensitive variable 'token' cannot be decrypted")

    monkeypatch.setattr(listeners, "values_for_run", undecryptable)
    run = await create_run(admin, ws)
    assert await next_job(anon, agent) is None  # claimed, failed, and nothing else queued
    assert await status_of(admin, run["id"]) == "errored"
    log = await plan_log(admin, run["id"])
    assert b"'token' cannot be decrypted" in log
    assert log.startswith(b"\x02") and log.endswith(b"\x03")
