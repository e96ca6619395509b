"""The agent's HTTP client against the real application in process (through
``agent/asgi.py``'s transport, as the built-in agent reaches its server): every call of a plan
and an apply, a cancel reaching the job heartbeat, and the transport's own promises.

Pools and tokens are made as tests/api/test_listener_protocol.py makes them.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete

from terrapod.agent.asgi import InProcessTransport
from terrapod.agent.http import Backoff, ListenerClient, build_client, token_joiner
from terrapod.app import create_app
from terrapod.config import Settings
from terrapod.db import models as _models  # noqa: F401
from terrapod.db.base import Base
from terrapod.runner.spec import JobResult
from tests import statefiles
from tests.api.test_listener_protocol import agent_workspace, make_pool
from tests.conftest import ADMIN_TOKEN
from tests.runs_support import create_run, status_of

FAST = Backoff(initial_seconds=0.001, cap_seconds=0.01)


@pytest.fixture
async def app(migrated_settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(migrated_settings)  # the built-in agent is off in these settings
    async with application.router.lifespan_context(application):
        yield application
        async with application.state.sessionmaker() as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))
            await session.commit()


@pytest.fixture
async def admin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=InProcessTransport(app),
        base_url="https://terrapod.test",
        headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": "application/vnd.api+json",
        },
    ) as client:
        yield client


@pytest.fixture
async def listener(app: FastAPI) -> AsyncIterator[ListenerClient]:
    pool = await make_pool(app)
    app.state.test_pool = pool
    async with build_client("http://terrapod.builtin", transport=InProcessTransport(app)) as http:
        yield ListenerClient(
            http, token_joiner(http, pool.agent_token, name="host-1", capacity=1), backoff=FAST
        )


async def test_a_plan_and_an_apply_through_every_call_of_the_protocol(
    app: FastAPI, admin: httpx.AsyncClient, listener: ListenerClient, tmp_path: Path
) -> None:
    ws = await agent_workspace(app, admin, "agent-ws", app.state.test_pool)
    await listener.join()
    await listener.heartbeat(capacity=1, active_jobs=0)
    await listener.renew()
    await listener.heartbeat(capacity=1, active_jobs=0)  # the renewed credential works
    assert await listener.next_job(wait=0) is None

    run = await create_run(admin, ws)
    ticket = await listener.next_job(wait=0)
    assert ticket is not None and ticket.phase == "plan" and ticket.run_id == run["id"]
    assert ticket.spec.workspace_id == ws
    job = listener.job(ticket)
    assert await job.heartbeat(wait=0) is None
    assert await job.write_log(b"Plan: 1 to add.\n")
    await job.download("configuration", tmp_path / "config.tar.gz")
    with tarfile.open(tmp_path / "config.tar.gz") as tar:
        assert "main.tf" in tar.getnames()
    assert await job.fetch_state() is None
    plan_file = tmp_path / "plan"
    plan_file.write_bytes(b"binary plan " * 1000)
    await job.upload("plan_file_upload", plan_file)
    await job.upload("plan_json_upload", b"{}")
    await job.upload("plan_json_redacted_upload", b"{}")
    await job.finish(JobResult(outcome="finished", has_changes=True, additions=1))
    await job.finish(JobResult(outcome="finished", has_changes=True, additions=1))  # retried
    assert await status_of(admin, run["id"]) == "planned"
    assert not await job.write_log(b"late\n")  # the phase takes no more output

    assert (await admin.post(f"/api/v2/runs/{run['id']}/actions/apply", json={})).status_code == 202
    apply = await listener.next_job(wait=0)
    assert apply is not None and apply.phase == "apply"
    job = listener.job(apply)
    await job.download("plan_file", tmp_path / "plan.again")
    assert (tmp_path / "plan.again").read_bytes() == plan_file.read_bytes()
    raw = statefiles.state(1)
    await job.persist_state(raw)
    await job.persist_state(raw)  # the same state again (a lost answer): accepted
    await job.finish(JobResult(outcome="finished", additions=1))
    assert await status_of(admin, run["id"]) == "applied"
    current = (await admin.get(f"/api/v2/workspaces/{ws}/current-state-version")).json()
    assert current["data"]["attributes"]["serial"] == 1
    assert current["data"]["relationships"]["run"]["data"]["id"] == run["id"]


async def test_a_cancel_answers_the_waiting_job_heartbeat(
    app: FastAPI, admin: httpx.AsyncClient, listener: ListenerClient
) -> None:
    ws = await agent_workspace(app, admin, "agent-ws", app.state.test_pool)
    run = await create_run(admin, ws)
    ticket = await listener.next_job(wait=0)
    assert ticket is not None
    waiting = asyncio.create_task(listener.job(ticket).heartbeat(wait=10))
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/cancel", json={})
    assert r.status_code == 202, r.text
    assert await asyncio.wait_for(waiting, 10) == "cancel"


async def test_a_plan_handed_back_is_queued_again(
    app: FastAPI, admin: httpx.AsyncClient, listener: ListenerClient
) -> None:
    ws = await agent_workspace(app, admin, "agent-ws", app.state.test_pool)
    run = await create_run(admin, ws)
    ticket = await listener.next_job(wait=0)
    assert ticket is not None
    await listener.job(ticket).hand_back()
    assert await status_of(admin, run["id"]) == "plan_queued"
    again = await listener.next_job(wait=0)
    assert again is not None and again.run_id == run["id"] and again.job_id != ticket.job_id


# -- the in-process transport ------------------------------------------------------------------


class _Chunks:
    """An ASGI app that answers with ``count`` chunks and counts what it has sent."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.sent = 0

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(self.count):
            await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
            self.sent = i + 1
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def test_the_in_process_transport_streams_responses() -> None:
    app = _Chunks(1000)
    async with (
        httpx.AsyncClient(transport=InProcessTransport(app), base_url="http://x") as client,
        client.stream("GET", "/big") as response,
    ):
        chunks = response.aiter_raw()
        await anext(chunks)
        assert app.sent < 10  # the app waits for the reader: nothing piles up in memory
        rest = [chunk async for chunk in chunks]
    assert 1 + len(rest) == 1000


async def test_the_in_process_transport_streams_request_bodies_and_answers_failures() -> None:
    received = io.BytesIO()

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.write(message.get("body", b""))
            if not message.get("more_body"):
                break
        if scope["path"] == "/fail":
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def body() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"abc"

    async with httpx.AsyncClient(transport=InProcessTransport(app), base_url="http://x") as client:
        ok = await client.put("/upload", content=body())
        failed = await client.put("/fail", content=b"")
    assert (ok.status_code, ok.content, received.getvalue()) == (201, b"ok", b"abcabcabc")
    assert failed.status_code == 500


async def test_a_state_beyond_the_inline_limit_is_uploaded_to_its_version(
    migrated_settings: Settings, tmp_path: Path
) -> None:
    settings = migrated_settings.model_copy(update={"max_inline_state_bytes": 1024})
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        try:
            async with (
                httpx.AsyncClient(
                    transport=InProcessTransport(application),
                    base_url="https://terrapod.test",
                    headers={
                        "Authorization": f"Bearer {ADMIN_TOKEN}",
                        "Content-Type": "application/vnd.api+json",
                    },
                ) as admin,
                build_client(
                    "http://terrapod.builtin", transport=InProcessTransport(application)
                ) as http,
            ):
                pool = await make_pool(application)
                listener = ListenerClient(
                    http, token_joiner(http, pool.agent_token, name="h", capacity=1), backoff=FAST
                )
                ws = await agent_workspace(application, admin, "big-state", pool)
                run = await create_run(admin, ws, **{"auto-apply": True})
                plan = await listener.next_job(wait=0)
                assert plan is not None
                for name in ("plan_file_upload", "plan_json_upload", "plan_json_redacted_upload"):
                    await listener.job(plan).upload(name, b"{}")
                await listener.job(plan).finish(JobResult(outcome="finished", has_changes=True))
                apply = await listener.next_job(wait=0)
                assert apply is not None and apply.phase == "apply"
                raw = statefiles.state(1, pad_bytes=4000)
                await listener.job(apply).persist_state(raw)
                await listener.job(apply).finish(JobResult(outcome="finished", additions=1))
                assert await status_of(admin, run["id"]) == "applied"
                current = (await admin.get(f"/api/v2/workspaces/{ws}/current-state-version")).json()
                url = current["data"]["attributes"]["hosted-state-download-url"]
                assert (await admin.get(url)).content == raw
                metrics = (await admin.get("/metrics")).text
                state_versions = 'route="/api/v2/workspaces/{workspace_id}/state-versions"'
                assert f'method="POST",{state_versions},status="413"' in metrics  # inline first
        finally:
            async with application.state.sessionmaker() as session:
                for table in reversed(Base.metadata.sorted_tables):
                    await session.execute(delete(table))
                await session.commit()
