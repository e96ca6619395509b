"""Run tasks through HTTP: the organization's tasks and their attachment to workspaces, and
runs passing their stages with a real task service on 127.0.0.1 that checks the request's
signature and calls back (the agent is tests/runs_support.ProtocolAgent). The application allows
private task addresses (``runtasks.allow_private_addresses``) unless a test says otherwise."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import delete, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from terrapod.app import create_app
from terrapod.config import RunTaskSettings, Settings
from terrapod.db.base import Base
from terrapod.db.ids import new_id
from terrapod.organizations.models import Organization
from terrapod.runtasks.models import RunTask
from tests.conftest import ADMIN_TOKEN
from tests.factories import make_org, make_user
from tests.runs_support import ProtocolAgent, create_run, make_workspace, upload_configuration

BASE = "https://terrapod.test"
KEY = "correct horse battery staple"
DEADLINE_SECONDS = 20.0


# -- the application, with run task timings for tests ---------------------------------------


def _settings(base: Settings, **runtasks: Any) -> Settings:
    options = {
        "callback_timeout_seconds": 600.0,
        "sweep_seconds": 0.2,
        "callback_base_url": BASE,
        "allow_private_addresses": True,  # the task service is on 127.0.0.1
    }
    return base.model_copy(update={"runtasks": RunTaskSettings(**{**options, **runtasks})})


@pytest.fixture
def runtask_options() -> dict[str, Any]:
    return {}


@pytest.fixture
async def app(
    migrated_settings: Settings, runtask_options: dict[str, Any]
) -> AsyncIterator[FastAPI]:
    application = create_app(_settings(migrated_settings, **runtask_options))
    async with application.router.lifespan_context(application):
        yield application
        async with application.state.sessionmaker() as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))
            await session.commit()


def _client(app: FastAPI, token: str = ADMIN_TOKEN) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=BASE,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/vnd.api+json"},
    )


@pytest.fixture
async def admin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as client:
        yield client


# -- a task service -------------------------------------------------------------------------


@dataclass
class TaskService:
    """A run task service on 127.0.0.1: records each request, checks its signature, and
    answers as ``behaviour`` says: ``pass``/``fail`` (200, then calls back), ``silent`` (200,
    never calls back) or ``refuse`` (HTTP 500)."""

    app: FastAPI
    key: str | None = KEY
    behaviour: str = "pass"
    message: str = "all good"
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    signatures_ok: list[bool] = field(default_factory=list)
    callbacks: list[httpx.Response] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        sent = request.headers.get("x-tfc-task-signature")
        if self.key is None:
            ok = sent is None
        else:
            expected = hmac.new(self.key.encode(), body, hashlib.sha512).hexdigest()
            ok = sent is not None and hmac.compare_digest(sent, expected)
        self.signatures_ok.append(ok)
        payload = json.loads(body)
        self.requests.append(payload)
        if not ok:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        if self.behaviour == "refuse":
            return JSONResponse({"error": "down"}, status_code=500)
        if self.behaviour in ("pass", "fail"):
            status = "passed" if self.behaviour == "pass" else "failed"
            task = asyncio.create_task(self.report(payload, status, self.message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return Response(status_code=200)

    async def report(self, payload: dict[str, Any], status: str, message: str) -> httpx.Response:
        """Call back as a service does: PATCH the callback URL with the request's token."""
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=BASE
        ) as client:
            r = await client.patch(
                payload["task_result_callback_url"],
                headers={
                    "Authorization": f"Bearer {payload['access_token']}",
                    "Content-Type": "application/vnd.api+json",
                },
                json={
                    "data": {
                        "type": "task-results",
                        "attributes": {
                            "status": status,
                            "message": message,
                            "url": "https://scanner.example.com/r/1",
                        },
                    }
                },
            )
        self.callbacks.append(r)
        return r


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def service(app: FastAPI) -> AsyncIterator[TaskService]:
    svc = TaskService(app)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/hook", svc.handle, methods=["POST"])]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    running = asyncio.create_task(server.serve())
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not server.started:
        assert time.monotonic() < deadline, "the task service did not start"
        await asyncio.sleep(0.01)
    svc.url = f"http://127.0.0.1:{port}/hook"
    yield svc
    server.should_exit = True
    await running


async def until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll ``check`` until it returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# -- helpers --------------------------------------------------------------------------------


def task_body(**attrs: Any) -> dict[str, Any]:
    return {"data": {"type": "tasks", "attributes": attrs}}


async def make_task(
    client: httpx.AsyncClient, name: str, url: str, key: str | None = KEY, org: str = "default"
) -> str:
    attrs: dict[str, Any] = {"name": name, "url": url, "category": "task"}
    if key is not None:
        attrs["hmac-key"] = key
    r = await client.post(f"/api/v2/organizations/{org}/tasks", json=task_body(**attrs))
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


def attach_body(task_id: str, level: str = "mandatory", **attrs: Any) -> dict[str, Any]:
    return {
        "data": {
            "type": "workspace-tasks",
            "attributes": {"enforcement-level": level, **attrs},
            "relationships": {"task": {"data": {"type": "tasks", "id": task_id}}},
        }
    }


async def attach(client: httpx.AsyncClient, ws: str, task_id: str, level: str, *stages: str) -> str:
    r = await client.post(
        f"/api/v2/workspaces/{ws}/tasks", json=attach_body(task_id, level, stages=list(stages))
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def run_attrs(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v2/runs/{run_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"]["attributes"])


async def wait_status(client: httpx.AsyncClient, run_id: str, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        attrs = await run_attrs(client, run_id)
        return attrs if attrs["status"] in statuses else None

    result: dict[str, Any] = await until(check, f"run {run_id} to reach {statuses}")
    return result


async def stages_of(client: httpx.AsyncClient, run_id: str) -> dict[str, dict[str, Any]]:
    r = await client.get(f"/api/v2/runs/{run_id}/task-stages?include=task_results")
    assert r.status_code == 200, r.text
    doc = r.json()
    results = {i["id"]: i for i in doc.get("included", [])}
    out = {}
    for stage in doc["data"]:
        ids = [ref["id"] for ref in stage["relationships"]["task-results"]["data"]]
        out[stage["attributes"]["stage"]] = {**stage, "results": [results[i] for i in ids]}
    return out


async def workspace_with_config(client: httpx.AsyncClient, name: str) -> str:
    ws = await make_workspace(client, name)
    await upload_configuration(client, ws)
    return ws


# -- organization tasks ---------------------------------------------------------------------


async def test_create_show_list_update_delete_task(admin: httpx.AsyncClient) -> None:
    r = await admin.post(
        "/api/v2/organizations/default/tasks",
        json=task_body(
            name="scanner",
            url="https://scanner.example.com/hook",
            category="task",
            description="scans plans",
            **{"hmac-key": KEY},
        ),
    )
    assert r.status_code == 201, r.text
    task = r.json()["data"]
    assert task["type"] == "tasks" and task["id"].startswith("task-")
    attrs = task["attributes"]
    assert attrs["name"] == "scanner" and attrs["enabled"] is True
    assert attrs["category"] == "task" and attrs["description"] == "scans plans"
    assert attrs["hmac-key"] is None
    assert task["relationships"]["organization"]["data"] == {
        "type": "organizations",
        "id": "default",
    }
    shown = await admin.get(f"/api/v2/tasks/{task['id']}")
    assert shown.status_code == 200 and shown.json()["data"]["attributes"]["name"] == "scanner"

    listed = await admin.get("/api/v2/organizations/default/tasks")
    assert [t["id"] for t in listed.json()["data"]] == [task["id"]]
    assert listed.json()["meta"]["pagination"]["total-count"] == 1

    # pytfe sends the key as hmac_key on update; both spellings are accepted.
    r = await admin.patch(
        f"/api/v2/tasks/{task['id']}",
        json=task_body(name="scanner-2", enabled=False, hmac_key="another key"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["attributes"]["name"] == "scanner-2"
    assert r.json()["data"]["attributes"]["enabled"] is False
    assert r.json()["data"]["attributes"]["hmac-key"] is None

    assert (await admin.delete(f"/api/v2/tasks/{task['id']}")).status_code == 204
    assert (await admin.get(f"/api/v2/tasks/{task['id']}")).status_code == 404


async def test_hmac_key_is_sealed_at_rest_and_never_returned(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    task_id = await make_task(admin, "sealed", "https://x.example.com/hook")
    for path in (f"/api/v2/tasks/{task_id}", "/api/v2/organizations/default/tasks"):
        r = await admin.get(path)
        assert KEY not in r.text
    async with app.state.sessionmaker() as session:
        stored = (
            await session.execute(select(RunTask.hmac_key_encrypted).where(RunTask.id == task_id))
        ).scalar_one()
    assert stored is not None and KEY not in stored and stored.startswith("v1:")


@pytest.mark.parametrize(
    ("attrs", "pointer", "words"),
    [
        ({"url": "https://x.example.com", "category": "task"}, "name", "required"),
        ({"name": "a b", "url": "https://x.example.com", "category": "task"}, "name", "letters"),
        ({"name": "a", "category": "task"}, "url", "required"),
        ({"name": "a", "url": "ftp://x.example.com", "category": "task"}, "url", "http"),
        ({"name": "a", "url": "https://x.example.com", "category": "hook"}, "category", "task"),
        ({"name": "a", "url": "https://x.example.com"}, "category", "required"),
        ({"name": "a", "url": "https://x", "category": "task", "enabled": "yes"}, "enabled", ""),
    ],
)
async def test_invalid_task_is_422_naming_the_attribute(
    admin: httpx.AsyncClient, attrs: dict[str, Any], pointer: str, words: str
) -> None:
    r = await admin.post("/api/v2/organizations/default/tasks", json=task_body(**attrs))
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert error["source"]["pointer"] == f"/data/attributes/{pointer}"
    assert words in error["detail"]


async def test_task_names_are_unique_in_an_organization(admin: httpx.AsyncClient) -> None:
    await make_task(admin, "dup", "https://x.example.com/hook")
    r = await admin.post(
        "/api/v2/organizations/default/tasks",
        json=task_body(name="DUP", url="https://y.example.com", category="task"),
    )
    assert r.status_code == 422 and "already been taken" in r.text
    other = await make_org(admin_app(admin))
    await make_task(admin, "dup", "https://x.example.com/hook", org=other)


def admin_app(client: httpx.AsyncClient) -> FastAPI:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    application: FastAPI = transport.app  # type: ignore[assignment]
    return application


async def test_only_owners_manage_tasks_and_outsiders_see_nothing(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    task_id = await make_task(admin, "guarded", "https://x.example.com/hook")
    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as client:
        assert (await client.get("/api/v2/organizations/default/tasks")).status_code == 403
        r = await client.post(
            "/api/v2/organizations/default/tasks",
            json=task_body(name="m", url="https://x.example.com", category="task"),
        )
        assert r.status_code == 403
        assert (await client.get(f"/api/v2/tasks/{task_id}")).status_code == 403
        assert (await client.delete(f"/api/v2/tasks/{task_id}")).status_code == 403
    await make_org(app, "elsewhere")
    outsider = await make_user(app, organization="elsewhere", role="owner")
    async with outsider.client(app) as client:
        assert (await client.get(f"/api/v2/tasks/{task_id}")).status_code == 404
        assert (await client.get("/api/v2/organizations/default/tasks")).status_code == 404


# -- workspace tasks ------------------------------------------------------------------------


async def test_attach_list_update_detach_workspace_task(admin: httpx.AsyncClient) -> None:
    ws = await make_workspace(admin, "attached")
    task_id = await make_task(admin, "attach-me", "https://x.example.com/hook")
    # seed 000's older body: the task in relationships.event-hook, no stage (post_plan).
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/tasks",
        json={
            "data": {
                "type": "tasks",
                "attributes": {"enforcement-level": "advisory"},
                "relationships": {"event-hook": {"data": {"type": "event-hooks", "id": task_id}}},
            }
        },
    )
    assert r.status_code == 201, r.text
    wt = r.json()["data"]
    assert wt["type"] == "workspace-tasks" and wt["id"].startswith("wstask-")
    assert wt["attributes"]["stages"] == ["post_plan"] and wt["attributes"]["stage"] == "post_plan"
    assert wt["relationships"]["task"]["data"] == {"type": "tasks", "id": task_id}
    assert wt["relationships"]["workspace"]["data"] == {"type": "workspaces", "id": ws}

    listed = (await admin.get(f"/api/v2/workspaces/{ws}/tasks")).json()
    assert [w["id"] for w in listed["data"]] == [wt["id"]]

    r = await admin.patch(
        f"/api/v2/workspaces/{ws}/tasks/{wt['id']}",
        json={"data": {"type": "workspace-tasks", "attributes": {"stage": "pre_plan"}}},
    )
    assert r.status_code == 200 and r.json()["data"]["attributes"]["stages"] == ["pre_plan"]
    r = await admin.patch(
        f"/api/v2/workspaces/{ws}/tasks/{wt['id']}",
        json={
            "data": {
                "type": "workspace-tasks",
                "attributes": {
                    "enforcement-level": "mandatory",
                    "stages": ["pre_apply", "pre_plan"],
                },
            }
        },
    )
    attrs = r.json()["data"]["attributes"]
    assert attrs["enforcement-level"] == "mandatory"
    assert attrs["stages"] == ["pre_plan", "pre_apply"]

    # The organization's task lists its attachments, and includes them on request.
    shown = (await admin.get(f"/api/v2/tasks/{task_id}?include=workspace_tasks.workspace")).json()
    assert shown["data"]["relationships"]["workspace-tasks"]["data"] == [
        {"type": "workspace-tasks", "id": wt["id"]}
    ]
    assert {(i["type"], i["id"]) for i in shown["included"]} == {
        ("workspace-tasks", wt["id"]),
        ("workspaces", ws),
    }

    assert (await admin.delete(f"/api/v2/workspaces/{ws}/tasks/{wt['id']}")).status_code == 204
    assert (await admin.get(f"/api/v2/workspaces/{ws}/tasks/{wt['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("attrs", "pointer"),
    [
        ({"enforcement-level": "strict"}, "enforcement-level"),
        ({}, "enforcement-level"),
        ({"enforcement-level": "advisory", "stages": ["post_apply"]}, "stages"),
        ({"enforcement-level": "advisory", "stages": []}, "stages"),
        ({"enforcement-level": "advisory", "stage": "later"}, "stage"),
    ],
)
async def test_invalid_workspace_task_is_422(
    admin: httpx.AsyncClient, attrs: dict[str, Any], pointer: str
) -> None:
    ws = await make_workspace(admin, "invalid-attach")
    task_id = await make_task(admin, "t", "https://x.example.com/hook")
    body = attach_body(task_id)
    body["data"]["attributes"] = attrs
    r = await admin.post(f"/api/v2/workspaces/{ws}/tasks", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["source"]["pointer"] == f"/data/attributes/{pointer}"


async def test_attaching_twice_conflicts_and_foreign_tasks_are_not_found(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await make_workspace(admin, "twice")
    task_id = await make_task(admin, "once", "https://x.example.com/hook")
    await attach(admin, ws, task_id, "advisory", "post_plan")
    r = await admin.post(f"/api/v2/workspaces/{ws}/tasks", json=attach_body(task_id))
    assert r.status_code == 409
    other = await make_org(app)
    foreign = await make_task(admin, "foreign", "https://x.example.com/hook", org=other)
    r = await admin.post(f"/api/v2/workspaces/{ws}/tasks", json=attach_body(foreign))
    assert r.status_code == 404
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/tasks",
        json={"data": {"type": "workspace-tasks", "attributes": {"enforcement-level": "advisory"}}},
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["source"]["pointer"] == "/data/relationships/task"


async def test_members_read_workspace_tasks_but_only_admins_attach(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await make_workspace(admin, "admins-only")
    task_id = await make_task(admin, "t", "https://x.example.com/hook")
    wt = await attach(admin, ws, task_id, "advisory", "post_plan")
    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as client:
        assert (await client.get(f"/api/v2/workspaces/{ws}/tasks")).status_code == 200
        assert (await client.get(f"/api/v2/workspaces/{ws}/tasks/{wt}")).status_code == 200
        r = await client.patch(
            f"/api/v2/workspaces/{ws}/tasks/{wt}",
            json={"data": {"type": "workspace-tasks", "attributes": {"stage": "pre_plan"}}},
        )
        assert r.status_code == 403
        assert (await client.delete(f"/api/v2/workspaces/{ws}/tasks/{wt}")).status_code == 403


# -- runs through their stages ---------------------------------------------------------------


async def test_mandatory_post_plan_failure_stops_the_run_with_the_tasks_message(
    app: FastAPI, admin: httpx.AsyncClient, service: TaskService
) -> None:
    service.behaviour, service.message = "fail", "3 critical findings in aws_s3_bucket.logs"
    ws = await workspace_with_config(admin, "post-plan-fails")
    task_id = await make_task(admin, "scanner", service.url)
    await attach(admin, ws, task_id, "mandatory", "post_plan")
    run = await create_run(admin, ws)
    # The CLI reads the stages once, right after creating the run: they exist already.
    created = await stages_of(admin, run["id"])
    assert list(created) == ["post_plan"]
    assert created["post_plan"]["attributes"]["status"] == "pending"
    assert [r["attributes"]["status"] for r in created["post_plan"]["results"]] == ["pending"]

    await ProtocolAgent(app).run_phase()
    final = await wait_status(admin, run["id"], "errored")
    assert "post-plan-running-at" in final["status-timestamps"]

    assert service.signatures_ok == [True]
    (payload,) = service.requests
    assert payload["payload_version"] == 1 and payload["stage"] == "post_plan"
    assert payload["run_id"] == run["id"] and payload["workspace_id"] == ws
    assert payload["workspace_name"] == "post-plan-fails"
    assert payload["organization_name"] == "default"
    assert payload["task_result_enforcement_level"] == "mandatory"
    assert payload["is_speculative"] is False
    assert payload["run_created_by"] == "admin"
    assert payload["capabilities"] == {"outcomes": True}
    assert payload["plan_json_api_url"].startswith(BASE + "/objects/")
    assert payload["configuration_version_download_url"].startswith(BASE + "/objects/")
    assert payload["task_result_callback_url"] == (
        f"{BASE}/api/v2/task-results/{payload['task_result_id']}/callback"
    )
    stage = (await stages_of(admin, run["id"]))["post_plan"]
    assert stage["attributes"]["status"] == "failed"
    (result,) = stage["results"]
    assert result["attributes"]["status"] == "failed"
    assert result["attributes"]["message"] == service.message
    assert result["attributes"]["task-name"] == "scanner"
    assert result["attributes"]["url"] == "https://scanner.example.com/r/1"
    events = (await admin.get(f"/api/v2/runs/{run['id']}/run-events")).json()["data"]
    assert any(service.message in e["attributes"]["description"] for e in events)
    # The run let go of its workspace: the next run may start.
    ws_doc = (await admin.get(f"/api/v2/workspaces/{ws}")).json()["data"]
    assert ws_doc["attributes"]["locked"] is False


async def test_advisory_failure_is_reported_and_the_run_goes_on(
    app: FastAPI, admin: httpx.AsyncClient, service: TaskService
) -> None:
    service.behaviour, service.message = "fail", "style nits"
    ws = await workspace_with_config(admin, "advisory")
    await attach(admin, ws, await make_task(admin, "linter", service.url), "advisory", "post_plan")
    run = await create_run(admin, ws)
    agent = ProtocolAgent(app)
    await agent.run_phase()
    attrs = await wait_status(admin, run["id"], "post_plan_completed")
    assert attrs["actions"]["is-confirmable"] is True
    stage = (await stages_of(admin, run["id"]))["post_plan"]
    assert stage["attributes"]["status"] == "passed"
    assert stage["results"][0]["attributes"]["status"] == "failed"
    assert stage["results"][0]["attributes"]["message"] == "style nits"
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/apply", json={})
    assert r.status_code == 202, r.text
    await wait_status(admin, run["id"], "apply_queued")
    await agent.run_phase()
    await wait_status(admin, run["id"], "applied")


@pytest.mark.parametrize("runtask_options", [{"callback_timeout_seconds": 0.5}])
async def test_a_service_that_never_calls_back_times_out(
    app: FastAPI, admin: httpx.AsyncClient, service: TaskService
) -> None:
    service.behaviour = "silent"
    ws = await workspace_with_config(admin, "silent")
    await attach(admin, ws, await make_task(admin, "slow", service.url), "mandatory", "post_plan")
    run = await create_run(admin, ws)
    await ProtocolAgent(app).run_phase()
    await wait_status(admin, run["id"], "errored")
    assert len(service.requests) == 1
    result = (await stages_of(admin, run["id"]))["post_plan"]["results"][0]["attributes"]
    assert result["status"] == "errored"
    assert "did not report a result within 0.5 seconds" in result["message"]


async def test_an_undeliverable_request_errors_its_result(
    app: FastAPI, admin: httpx.AsyncClient, service: TaskService
) -> None:
    service.behaviour = "refuse"
    ws = await workspace_with_config(admin, "refused")
    await attach(admin, ws, await make_task(admin, "down", service.url), "mandatory", "pre_plan")
    run = await create_run(admin, ws)
    attrs = await wait_status(admin, run["id"], "errored")
    assert "plan-queued-at" not in attrs["status-timestamps"]
    result = (await stages_of(admin, run["id"]))["pre_plan"]["results"][0]["attributes"]
    assert result["status"] == "errored" and "HTTP 500" in result["message"]


PRIVATE = {"allow_private_addresses": False}


@pytest.mark.parametrize("runtask_options", [PRIVATE])
@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://127.0.0.1:9/hook", "127.0.0.1 is a private"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a private"),
        ("http://[::1]:9/hook", "::1 is a private"),
        ("http://localhost:9/hook", "localhost ("),
    ],
)
async def test_a_private_task_url_is_refused_at_create_and_update(
    admin: httpx.AsyncClient, url: str, named: str
) -> None:
    r = await admin.post(
        "/api/v2/organizations/default/tasks",
        json=task_body(name="inside", url=url, category="task"),
    )
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert error["source"]["pointer"] == "/data/attributes/url"
    assert named in error["detail"] and "runtasks.allow_private_addresses" in error["detail"]

    # A public URL, or a host that does not resolve yet (checked again at every request).
    task_id = await make_task(admin, "outside", "https://task.invalid/hook")
    r = await admin.patch(f"/api/v2/tasks/{task_id}", json=task_body(url=url))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/url"
    shown = await admin.get(f"/api/v2/tasks/{task_id}")
    assert shown.json()["data"]["attributes"]["url"] == "https://task.invalid/hook"


async def test_a_private_task_url_is_allowed_with_the_setting(admin: httpx.AsyncClient) -> None:
    task_id = await make_task(admin, "inside", "http://127.0.0.1:9/hook")
    r = await admin.patch(f"/api/v2/tasks/{task_id}", json=task_body(url="http://10.0.0.1/hook"))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["attributes"]["url"] == "http://10.0.0.1/hook"


@pytest.mark.parametrize("runtask_options", [PRIVATE])
async def test_a_task_at_a_private_address_errors_its_result_without_a_request(
    app: FastAPI, admin: httpx.AsyncClient, service: TaskService
) -> None:
    # A task saved while private addresses were allowed, or whose host has since come to
    # resolve to one: the API refuses such a URL now, so the task is stored directly.
    async with app.state.sessionmaker() as session:
        org_id = (
            await session.execute(select(Organization.id).where(Organization.name == "default"))
        ).scalar_one()
        task = RunTask(id=new_id("task"), organization_id=org_id, name="inside", url=service.url)
        session.add(task)
        await session.commit()
    ws = await workspace_with_config(admin, "inside")
    await attach(admin, ws, task.id, "mandatory", "pre_plan")
    run = await create_run(admin, ws)
    attrs = await wait_status(admin, run["id"], "errored")
    assert "plan-queued-at" not in attrs["status-timestamps"]
    result = (await stages_of(admin, run["id"]))["pre_plan"]["results"][0]["attributes"]
    assert result["status"] == "errored"
    assert (
        f"the task request to {service.url} was not sent: 127.0.0.1 is a private"
        in (result["message"])
    )
    assert "runtasks.allow_private_addresses" in result["message"]
    assert service.requests == []


async def test_pre_plan_and_pre_apply_stages_are_reached(
    app: FastAPI, admin: httpx.AsyncClient, service: TaskService
) -> None:
    ws = await workspace_with_config(admin, "before-both")
    task_id = await make_task(admin, "gate", service.url)
    await attach(admin, ws, task_id, "mandatory", "pre_plan", "pre_apply")
    run = await create_run(admin, ws)
    attrs = await wait_status(admin, run["id"], "plan_queued")
    for key in ("pre-plan-running-at", "pre-plan-completed-at"):
        assert key in attrs["status-timestamps"], attrs["status-timestamps"]
    agent = ProtocolAgent(app)
    await agent.run_phase()
    await wait_status(admin, run["id"], "planned")
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/apply", json={})
    assert r.status_code == 202, r.text
    attrs = await wait_status(admin, run["id"], "apply_queued")
    for key in ("pre-apply-running-at", "pre-apply-completed-at"):
        assert key in attrs["status-timestamps"], attrs["status-timestamps"]
    await agent.run_phase()
    await wait_status(admin, run["id"], "applied")
    assert [p["stage"] for p in service.requests] == ["pre_plan", "pre_apply"]
    assert service.requests[0]["plan_json_api_url"] is None
    assert service.requests[1]["plan_json_api_url"] is not None
    stages = await stages_of(admin, run["id"])
    assert {k: v["attributes"]["status"] for k, v in stages.items()} == {
        "pre_plan": "passed",
        "pre_apply": "passed",
    }
    # The run document lists its stages, and includes them for the CLI.
    doc = (await admin.get(f"/api/v2/runs/{run['id']}?include=task_stages")).json()
    refs = doc["data"]["relationships"]["task-stages"]["data"]
    assert [r["id"] for r in refs] == [stages["pre_plan"]["id"], stages["pre_apply"]["id"]]
    assert {i["type"] for i in doc["included"]} == {"task-stages", "task-results"}


async def test_a_speculative_run_has_no_pre_apply_stage(
    admin: httpx.AsyncClient, service: TaskService
) -> None:
    ws = await workspace_with_config(admin, "speculative")
    task_id = await make_task(admin, "gate", service.url)
    await attach(admin, ws, task_id, "mandatory", "post_plan", "pre_apply")
    run = await create_run(admin, ws, **{"plan-only": True})
    assert list(await stages_of(admin, run["id"])) == ["post_plan"]


async def test_the_callback_token_works_for_its_own_result_only_and_only_once(
    app: FastAPI, admin: httpx.AsyncClient, service: TaskService
) -> None:
    service.behaviour = "silent"
    ws = await workspace_with_config(admin, "tokens")
    for name in ("first", "second"):
        await attach(admin, ws, await make_task(admin, name, service.url), "mandatory", "pre_plan")
    run = await create_run(admin, ws)

    async def two_requests() -> bool:
        return len(service.requests) == 2

    await until(two_requests, "both task requests")
    a, b = service.requests
    assert a["task_result_id"] != b["task_result_id"]

    def with_token(payload: dict[str, Any], token: str) -> dict[str, Any]:
        return {**payload, "access_token": token}

    # A's token on B's result: refused, and B is untouched.
    refused = await service.report(with_token(b, a["access_token"]), "passed", "forged")
    assert refused.status_code == 401
    # No token, or an API token, is no credential either.
    async with _client(app) as client:
        r = await client.patch(
            b["task_result_callback_url"],
            json={"data": {"type": "task-results", "attributes": {"status": "passed"}}},
        )
        assert r.status_code == 401
    ok = await service.report(a, "passed", "fine")
    assert ok.status_code == 200 and ok.json()["data"]["attributes"]["status"] == "passed"
    again = await service.report(a, "failed", "changed my mind")
    assert again.status_code == 401
    result_a = (await admin.get(f"/api/v2/task-results/{a['task_result_id']}")).json()["data"]
    assert result_a["attributes"]["status"] == "passed"
    assert result_a["attributes"]["message"] == "fine"
    assert (await run_attrs(admin, run["id"]))["status"] == "pre_plan_running"
    # A bad status is named; the token stays valid for a proper report.
    bad = await service.report(b, "maybe", "?")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["source"]["pointer"] == "/data/attributes/status"
    progress = await service.report(b, "running", "halfway")
    assert progress.status_code == 200
    assert (await service.report(b, "passed", "done")).status_code == 200
    await wait_status(admin, run["id"], "plan_queued")


@pytest.mark.parametrize("runtask_options", [{"mandatory_failures_overridable": True}])
async def test_an_owner_overrides_a_failed_mandatory_post_plan_stage(
    app: FastAPI, admin: httpx.AsyncClient, service: TaskService
) -> None:
    service.behaviour, service.message = "fail", "policy says no"
    ws = await workspace_with_config(admin, "override")
    await attach(admin, ws, await make_task(admin, "policy", service.url), "mandatory", "post_plan")
    run = await create_run(admin, ws)
    await ProtocolAgent(app).run_phase()
    attrs = await wait_status(admin, run["id"], "post_plan_awaiting_decision")
    assert attrs["actions"]["is-discardable"] is True
    stage = (await stages_of(admin, run["id"]))["post_plan"]
    assert stage["attributes"]["status"] == "awaiting_override"
    assert stage["attributes"]["actions"]["is-overridable"] is True
    assert stage["attributes"]["permissions"]["can-override-tasks"] is True

    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as client:
        shown = (await client.get(f"/api/v2/task-stages/{stage['id']}")).json()["data"]
        assert shown["attributes"]["permissions"]["can-override"] is False
        r = await client.post(f"/api/v2/task-stages/{stage['id']}/actions/override")
        assert r.status_code == 403
    owner = await make_user(app, organization="default", role="owner")
    async with owner.client(app) as client:
        r = await client.post(
            f"/api/v2/task-stages/{stage['id']}/actions/override", json={"comment": "accepted"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"]["attributes"]["status"] == "passed"
        again = await client.post(f"/api/v2/task-stages/{stage['id']}/actions/override")
        assert again.status_code == 409
    attrs = await wait_status(admin, run["id"], "post_plan_completed")
    assert attrs["actions"]["is-confirmable"] is True
    shown = (await admin.get(f"/api/v2/task-stages/{stage['id']}?include=task_results")).json()
    assert shown["included"][0]["attributes"]["status"] == "failed"


async def test_canceling_a_run_in_a_stage_closes_the_stage(
    app: FastAPI, admin: httpx.AsyncClient, service: TaskService
) -> None:
    service.behaviour = "silent"
    ws = await workspace_with_config(admin, "cancel-in-stage")
    task_id = await make_task(admin, "waits", service.url)
    await attach(admin, ws, task_id, "mandatory", "pre_plan", "post_plan")
    run = await create_run(admin, ws)
    await wait_status(admin, run["id"], "pre_plan_running")
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/cancel", json={})
    assert r.status_code == 202, r.text
    await wait_status(admin, run["id"], "canceled")
    stages = await stages_of(admin, run["id"])
    assert stages["pre_plan"]["attributes"]["status"] == "canceled"
    assert stages["post_plan"]["attributes"]["status"] == "unreachable"
    assert stages["pre_plan"]["results"][0]["attributes"]["status"] == "unreachable"


async def test_task_stage_and_result_reads_are_scoped_to_the_run(
    app: FastAPI, admin: httpx.AsyncClient, service: TaskService
) -> None:
    service.behaviour = "silent"
    ws = await workspace_with_config(admin, "scoped")
    await attach(admin, ws, await make_task(admin, "s", service.url), "advisory", "post_plan")
    run = await create_run(admin, ws)
    stage = (await stages_of(admin, run["id"]))["post_plan"]
    result_id = stage["results"][0]["id"]
    await make_org(app, "elsewhere")
    outsider = await make_user(app, organization="elsewhere", role="owner")
    async with outsider.client(app) as client:
        for path in (
            f"/api/v2/runs/{run['id']}/task-stages",
            f"/api/v2/task-stages/{stage['id']}",
            f"/api/v2/task-results/{result_id}",
        ):
            assert (await client.get(path)).status_code == 404, path
    assert (await admin.get("/api/v2/task-stages/ts-AAAAAAAAAAAAAAAA")).status_code == 404
    assert (await admin.get("/api/v2/task-results/nonsense")).status_code == 404
