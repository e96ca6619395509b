"""Runs through HTTP: creation, the workspace queue, actions, lists, plans, applies, logs.

Jobs are executed by :class:`tests.runs_support.ProtocolAgent`, which speaks the agent
protocol through the services without Terraform (the e2e suites run real Terraform).
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import make_user
from tests.runs_support import (
    ProtocolAgent,
    create_run,
    make_workspace,
    status_of,
    upload_configuration,
)


@pytest.fixture
async def ws(admin: httpx.AsyncClient) -> str:
    workspace_id = await make_workspace(admin, "runs")
    await upload_configuration(admin, workspace_id)
    return workspace_id


@pytest.fixture
def agent(app: FastAPI) -> ProtocolAgent:
    return ProtocolAgent(app)


async def test_run_plans_then_waits_for_confirmation_then_applies(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws, message="first")
    attrs = run["attributes"]
    assert attrs["status"] == "plan_queued"
    assert attrs["message"] == "first"
    assert "plan-queueable-at" in attrs["status-timestamps"]
    assert run["relationships"]["plan"]["data"]["type"] == "plans"
    assert run["relationships"]["apply"]["data"]["type"] == "applies"
    await agent.run_phase()
    r = (await admin.get(f"/api/v2/runs/{run['id']}")).json()["data"]
    assert r["attributes"]["status"] == "planned"
    assert r["attributes"]["has-changes"] is True
    assert r["attributes"]["actions"]["is-confirmable"] is True
    assert (await admin.post(f"/api/v2/runs/{run['id']}/actions/apply", json={})).status_code == 202
    assert await status_of(admin, run["id"]) == "apply_queued"
    await agent.run_phase()
    final = (await admin.get(f"/api/v2/runs/{run['id']}")).json()["data"]["attributes"]
    assert final["status"] == "applied"
    assert {"planned-at", "confirmed-at", "apply-queued-at", "applying-at", "applied-at"} <= set(
        final["status-timestamps"]
    )
    workspace = (await admin.get(f"/api/v2/workspaces/{ws}")).json()["data"]
    assert workspace["attributes"]["locked"] is False
    assert workspace["relationships"]["current-run"]["data"]["id"] == run["id"]


async def test_second_run_waits_until_the_first_ends(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    first = await create_run(admin, ws)
    second = await create_run(admin, ws)
    assert second["attributes"]["status"] == "pending"
    await agent.run_phase()  # first planned, holds the workspace
    assert await status_of(admin, second["id"]) == "pending"
    assert (await admin.post(f"/api/v2/runs/{first['id']}/actions/discard")).status_code == 202
    assert await status_of(admin, first["id"]) == "discarded"
    assert await status_of(admin, second["id"]) == "plan_queued"


async def test_plan_only_runs_never_wait_for_the_workspace(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    await create_run(admin, ws)
    speculative = await create_run(admin, ws, **{"plan-only": True})
    assert speculative["attributes"]["status"] == "plan_queued"
    jobs = [await agent.claim(), await agent.claim()]
    assert {j.run_id for j in jobs if j} == {speculative["id"], jobs[0].run_id if jobs[0] else ""}


async def test_speculative_plan_ends_planned_and_finished_and_cannot_be_applied(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws, **{"plan-only": True})
    await agent.run_phase()
    attrs = (await admin.get(f"/api/v2/runs/{run['id']}")).json()["data"]["attributes"]
    assert attrs["status"] == "planned_and_finished"
    assert attrs["actions"]["is-confirmable"] is False
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/apply")
    assert r.status_code == 409


async def test_plan_without_changes_finishes_and_frees_the_workspace(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws)
    waiting = await create_run(admin, ws)
    await agent.run_phase(has_changes=False, additions=0)
    assert await status_of(admin, run["id"]) == "planned_and_finished"
    assert await status_of(admin, waiting["id"]) == "plan_queued"


async def test_auto_apply_applies_without_confirmation(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws, **{"auto-apply": True})
    await agent.run_phase()
    assert await status_of(admin, run["id"]) == "apply_queued"
    await agent.run_phase()
    assert await status_of(admin, run["id"]) == "applied"


async def test_saved_plan_waits_planned_and_saved_then_applies_when_confirmed(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws, **{"save-plan": True, "auto-apply": True})
    await agent.run_phase()
    attrs = (await admin.get(f"/api/v2/runs/{run['id']}")).json()["data"]["attributes"]
    assert attrs["status"] == "planned_and_saved"
    assert attrs["actions"]["is-confirmable"] is True
    # A saved plan does not hold the workspace: another run can take it meanwhile.
    workspace = (await admin.get(f"/api/v2/workspaces/{ws}")).json()["data"]
    assert workspace["attributes"]["locked"] is False
    assert (await admin.post(f"/api/v2/runs/{run['id']}/actions/apply")).status_code == 202
    assert await status_of(admin, run["id"]) == "apply_queued"
    await agent.run_phase()
    assert await status_of(admin, run["id"]) == "applied"


async def test_errored_plan_ends_the_run_and_starts_the_next(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws)
    nxt = await create_run(admin, ws)
    await agent.run_phase("errored", error="terraform plan exited 1")
    assert await status_of(admin, run["id"]) == "errored"
    plan = (await admin.get(f"/api/v2/runs/{run['id']}/plan")).json()["data"]
    assert plan["attributes"]["status"] == "errored"
    assert await status_of(admin, nxt["id"]) == "plan_queued"


async def test_cancel_of_a_running_plan_reaches_the_agent_and_ends_canceled(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws)
    job = await agent.claim()
    assert job is not None
    assert await status_of(admin, run["id"]) == "planning"
    assert (await admin.post(f"/api/v2/runs/{run['id']}/actions/cancel")).status_code == 202
    attrs = (await admin.get(f"/api/v2/runs/{run['id']}")).json()["data"]["attributes"]
    assert attrs["status"] == "planning"
    assert attrs["canceled-at"] is not None
    assert attrs["force-cancel-available-at"] is not None
    assert await agent.heartbeat(job) == "cancel"
    await agent.finish(job, "canceled", error="canceled")
    assert await status_of(admin, run["id"]) == "canceled"


async def test_cancel_of_a_waiting_run_ends_it_at_once(admin: httpx.AsyncClient, ws: str) -> None:
    await create_run(admin, ws)
    waiting = await create_run(admin, ws)
    assert (await admin.post(f"/api/v2/runs/{waiting['id']}/actions/cancel")).status_code == 202
    assert await status_of(admin, waiting["id"]) == "canceled"


async def test_force_cancel_needs_a_cancel_and_the_cool_off(
    app: FastAPI,
    admin: httpx.AsyncClient,
    ws: str,
    agent: ProtocolAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = await create_run(admin, ws)
    nxt = await create_run(admin, ws)
    job = await agent.claim()
    assert job is not None
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/force-cancel")
    assert r.status_code == 409
    assert "cancel the run first" in r.text
    # A cool-off of zero makes force-cancel available right after the cancel.
    monkeypatch.setattr(app.state.settings.runs, "force_cancel_cooloff_seconds", 0)
    assert (await admin.post(f"/api/v2/runs/{run['id']}/actions/cancel")).status_code == 202
    attrs = (await admin.get(f"/api/v2/runs/{run['id']}")).json()["data"]["attributes"]
    assert attrs["actions"]["is-force-cancelable"] is True
    assert (await admin.post(f"/api/v2/runs/{run['id']}/actions/force-cancel")).status_code == 202
    assert await status_of(admin, run["id"]) == "force_canceled"
    assert await agent.heartbeat(job) == "force"
    assert not await agent.log(job, b"late output\n")
    assert await status_of(admin, nxt["id"]) == "plan_queued"


async def test_force_cancel_before_the_cool_off_is_refused(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws)
    assert await agent.claim() is not None
    assert (await admin.post(f"/api/v2/runs/{run['id']}/actions/cancel")).status_code == 202
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/force-cancel")
    assert r.status_code == 409
    assert "cool-off" in r.text


async def test_force_execute_discards_the_runs_ahead(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    first = await create_run(admin, ws)
    second = await create_run(admin, ws)
    third = await create_run(admin, ws)
    await agent.run_phase()  # first: planned, holding the workspace
    assert (
        await admin.post(f"/api/v2/runs/{third['id']}/actions/force-execute")
    ).status_code == 202
    assert await status_of(admin, first["id"]) == "discarded"
    assert await status_of(admin, second["id"]) == "discarded"
    assert await status_of(admin, third["id"]) == "plan_queued"


async def test_force_execute_refuses_a_run_that_is_not_pending(
    admin: httpx.AsyncClient, ws: str
) -> None:
    run = await create_run(admin, ws)
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/force-execute")
    assert r.status_code == 403


async def test_retry_queues_a_copy_of_a_finished_run(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws, message="again", **{"target-addrs": ["terraform_data.x"]})
    assert (await admin.post(f"/api/v2/runs/{run['id']}/actions/retry")).status_code == 409
    await agent.run_phase("errored", error="boom")
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/retry")
    assert r.status_code == 201, r.text
    copy = r.json()["data"]["attributes"]
    assert copy["message"] == "again"
    assert copy["target-addrs"] == ["terraform_data.x"]
    assert copy["status"] == "plan_queued"


async def test_logs_stream_by_offset_with_stx_and_etx(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws)
    plan = (await admin.get(f"/api/v2/runs/{run['id']}/plan")).json()["data"]
    url = plan["attributes"]["log-read-url"]
    job = await agent.claim()
    assert job is not None
    await agent.log(job, b"line one\n")
    anon = httpx.AsyncClient(transport=admin._transport, base_url=str(admin.base_url))
    async with anon:
        first = await anon.get(url, params={"offset": 0, "limit": 65536})
        assert first.status_code == 200
        assert first.content == b"\x02line one\n"
        await agent.log(job, b"line two\n")
        more = await anon.get(url, params={"offset": len(first.content), "limit": 65536})
        assert more.content == b"line two\n"
        await agent.finish(job, "finished", has_changes=False)
        rest = await anon.get(url, params={"offset": len(first.content) + len(more.content)})
        assert rest.content == b"\x03"
        whole = await anon.get(url, params={"offset": 1, "limit": 4})
        assert whole.content == b"line", (whole.status_code, whole.text)
        forged = await anon.get(url.replace("/logs/", "/logs/x"))
        assert forged.status_code == 403


async def test_run_list_filters_and_leaves_plan_only_runs_out_by_default(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    normal = await create_run(admin, ws, message="normal")
    speculative = await create_run(admin, ws, **{"plan-only": True})
    destroy = await create_run(admin, ws, **{"is-destroy": True})
    listed = (await admin.get(f"/api/v2/workspaces/{ws}/runs")).json()
    assert [r["id"] for r in listed["data"]] == [destroy["id"], normal["id"]]
    assert listed["meta"]["pagination"]["total-count"] == 2
    every = (
        await admin.get(
            f"/api/v2/workspaces/{ws}/runs",
            params={"filter[operation]": "plan_only,plan_and_apply,destroy"},
        )
    ).json()["data"]
    assert {r["id"] for r in every} == {normal["id"], speculative["id"], destroy["id"]}
    only_destroy = (
        await admin.get(f"/api/v2/workspaces/{ws}/runs", params={"filter[operation]": "destroy"})
    ).json()["data"]
    assert [r["id"] for r in only_destroy] == [destroy["id"]]
    pending = (
        await admin.get(f"/api/v2/workspaces/{ws}/runs", params={"filter[status]": "pending"})
    ).json()["data"]
    assert [r["id"] for r in pending] == [destroy["id"]]
    final = (
        await admin.get(f"/api/v2/workspaces/{ws}/runs", params={"filter[status_group]": "final"})
    ).json()["data"]
    assert final == []
    found = (
        await admin.get(f"/api/v2/workspaces/{ws}/runs", params={"search[basic]": "norm"})
    ).json()["data"]
    assert [r["id"] for r in found] == [normal["id"]]
    bad = await admin.get(f"/api/v2/workspaces/{ws}/runs", params={"filter[status]": "nope"})
    assert bad.status_code == 400
    assert "filter[status]" in bad.text


async def test_organization_run_list_has_no_total_count(admin: httpx.AsyncClient, ws: str) -> None:
    for _ in range(3):
        await create_run(admin, ws)
    r = await admin.get("/api/v2/organizations/default/runs", params={"page[size]": 2})
    body = r.json()
    assert r.status_code == 200
    assert len(body["data"]) == 2
    assert body["meta"]["pagination"]["next-page"] == 2
    assert "total-count" not in body["meta"]["pagination"]
    named = await admin.get(
        "/api/v2/organizations/default/runs", params={"filter[workspace_names]": "nothing"}
    )
    assert named.json()["data"] == []


async def test_run_list_is_rate_limited_per_token(
    app: FastAPI, admin: httpx.AsyncClient, ws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.state.settings.runs, "list_rate_limit_per_minute", 3)
    for _ in range(3):
        assert (await admin.get(f"/api/v2/workspaces/{ws}/runs")).status_code == 200
    r = await admin.get(f"/api/v2/workspaces/{ws}/runs")
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["X-RateLimit-Reset"].isdigit()


async def test_create_refuses_bad_input_with_the_field_named(
    admin: httpx.AsyncClient, ws: str
) -> None:
    cases = [
        ({"is-destroy": True, "refresh-only": True}, "refresh-only"),
        ({"save-plan": True, "plan-only": True}, "save-plan"),
        ({"terraform-version": "1.15.5"}, "terraform-version"),
        ({"variables": [{"key": "1bad", "value": "1"}]}, "variables"),
        ({"target-addrs": "not-a-list"}, "target-addrs"),
    ]
    for attrs, field in cases:
        r = await admin.post(
            "/api/v2/runs",
            json={
                "data": {
                    "type": "runs",
                    "attributes": attrs,
                    "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws}}},
                }
            },
        )
        assert r.status_code == 422, (attrs, r.text)
        assert field in r.json()["errors"][0]["source"]["pointer"], r.text
    missing = await admin.post("/api/v2/runs", json={"data": {"type": "runs", "attributes": {}}})
    assert missing.status_code == 422


async def test_a_workspace_without_configuration_refuses_runs(admin: httpx.AsyncClient) -> None:
    empty = await make_workspace(admin, "empty")
    r = await admin.post(
        "/api/v2/runs",
        json={
            "data": {
                "type": "runs",
                "relationships": {"workspace": {"data": {"type": "workspaces", "id": empty}}},
            }
        },
    )
    assert r.status_code == 422
    assert "configuration version" in r.text


async def test_members_queue_runs_and_outsiders_see_nothing(
    app: FastAPI, admin: httpx.AsyncClient, ws: str
) -> None:
    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as client:
        run = await create_run(client, ws)
        perms = run["attributes"]["permissions"]
        assert perms["can-apply"] is True
        assert perms["can-force-cancel"] is False
    from tests.factories import make_org

    await make_org(app, "elsewhere")
    outsider = await make_user(app, organization="elsewhere", role="owner")
    async with outsider.client(app) as client:
        assert (await client.get(f"/api/v2/runs/{run['id']}")).status_code == 404
        assert (await client.post(f"/api/v2/runs/{run['id']}/actions/cancel")).status_code == 404


async def test_run_events_record_the_timeline(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws, **{"auto-apply": True})
    await agent.run_phase()
    await agent.run_phase()
    events = (await admin.get(f"/api/v2/runs/{run['id']}/run-events")).json()["data"]
    actions = [e["attributes"]["action"] for e in events]
    assert actions == ["queued", "planning", "planned", "applying", "applied"]
    one = await admin.get(f"/api/v2/run-events/{events[0]['id']}")
    assert one.status_code == 200


async def test_include_plan_apply_workspace_and_creator(admin: httpx.AsyncClient, ws: str) -> None:
    run = await create_run(admin, ws)
    r = await admin.get(
        f"/api/v2/runs/{run['id']}", params={"include": "plan,apply,workspace,created_by"}
    )
    types = sorted(i["type"] for i in r.json()["included"])
    assert types == ["applies", "plans", "users", "workspaces"]


async def test_task_stages_are_an_empty_list(admin: httpx.AsyncClient, ws: str) -> None:
    run = await create_run(admin, ws)
    r = await admin.get(f"/api/v2/runs/{run['id']}/task-stages")
    assert r.status_code == 200
    assert r.json()["data"] == []


async def test_queue_and_capacity_report_waiting_and_running_jobs(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    other = await make_workspace(admin, "other")
    await upload_configuration(admin, other)
    first = await create_run(admin, ws)
    second = await create_run(admin, other)
    assert await agent.claim() is not None
    capacity = (await admin.get("/api/v2/organizations/default/capacity")).json()["data"]
    assert capacity["attributes"] == {"pending": 1, "running": 1}
    queue = (await admin.get("/api/v2/organizations/default/runs/queue")).json()["data"]
    assert [q["id"] for q in queue] == [second["id"]]
    assert queue[0]["attributes"]["position-in-queue"] == 1
    assert first["id"] != second["id"]


async def test_stale_heartbeat_fails_the_run_and_frees_the_workspace(
    app: FastAPI, admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    from terrapod.runs import jobs as runs

    run = await create_run(admin, ws)
    nxt = await create_run(admin, ws)
    assert await agent.claim() is not None
    async with app.state.sessionmaker() as session:
        ended = await runs.fail_stale_jobs(session, timedelta(seconds=-1))
        await session.commit()
    assert ended == [run["id"]]
    assert await status_of(admin, run["id"]) == "errored"
    events = (await admin.get(f"/api/v2/runs/{run['id']}/run-events")).json()["data"]
    assert "stopped responding" in events[-1]["attributes"]["description"]
    assert await status_of(admin, nxt["id"]) == "plan_queued"


async def test_run_event_stream_sends_status_changes_of_its_workspace(
    app: FastAPI, admin: httpx.AsyncClient, ws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Driven at the ASGI level, so the test reads the stream while it is open and ends it by
    leaving, as a browser does (an in-process HTTP client would wait for the whole body)."""
    import asyncio
    from typing import Any

    import orjson

    from tests.conftest import ADMIN_TOKEN

    monkeypatch.setattr(app.state.settings.runs, "event_stream_seconds", 3600)
    bus = app.state.events
    before = bus.subscriber_count("run")
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    leave = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await leave.wait()
        return {"type": "http.disconnect"}

    path = f"/api/v2/workspaces/{ws}/runs/events"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"terrapod.test"),
            (b"authorization", f"Bearer {ADMIN_TOKEN}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("terrapod.test", 443),
    }
    call = asyncio.create_task(app(scope, receive, sent.put))
    start = await sent.get()
    assert start["status"] == 200
    assert dict(start["headers"])[b"content-type"].startswith(b"text/event-stream")
    body = (await sent.get())["body"]  # sent once the stream has subscribed
    assert bus.subscriber_count("run") == before + 1
    run = await create_run(admin, ws)
    while b'"status":"plan_queued"' not in body:
        body += (await sent.get())["body"]
    leave.set()
    await call
    events = [
        orjson.loads(block.split(b"data: ", 1)[1])
        for block in body.split(b"\n\n")
        if block.startswith(b"event: run_update")
    ]
    assert [e["status"] for e in events] == ["pending", "plan_queued"]
    assert all(e == {**e, "run_id": run["id"], "workspace_id": ws} for e in events)
    assert bus.subscriber_count("run") == before  # leaving ended the stream


async def test_uploading_an_auto_queue_configuration_queues_a_run(
    admin: httpx.AsyncClient,
) -> None:
    from tests.runs_support import tarball

    workspace_id = await make_workspace(admin, "auto")
    r = await admin.post(
        f"/api/v2/workspaces/{workspace_id}/configuration-versions",
        json={"data": {"type": "configuration-versions", "attributes": {}}},
    )
    cv = r.json()["data"]
    assert (await admin.put(cv["attributes"]["upload-url"], content=tarball())).status_code == 200
    runs = (await admin.get(f"/api/v2/workspaces/{workspace_id}/runs")).json()["data"]
    assert len(runs) == 1
    assert runs[0]["attributes"]["source"] == "tfe-configuration-version"
    assert runs[0]["relationships"]["configuration-version"]["data"]["id"] == cv["id"]


async def test_a_person_unlocking_the_workspace_starts_the_waiting_run(
    admin: httpx.AsyncClient, ws: str
) -> None:
    assert (await admin.post(f"/api/v2/workspaces/{ws}/actions/lock")).status_code == 200
    run = await create_run(admin, ws)
    assert run["attributes"]["status"] == "pending"
    # The CLI reads the waiting run as the current run to say the workspace is locked by hand.
    workspace = (await admin.get(f"/api/v2/workspaces/{ws}")).json()["data"]
    assert workspace["relationships"]["current-run"]["data"]["id"] == run["id"]
    assert (await admin.post(f"/api/v2/workspaces/{ws}/actions/unlock")).status_code == 200
    assert await status_of(admin, run["id"]) == "plan_queued"


async def test_deleting_a_workspace_deletes_its_run_objects(
    app: FastAPI, admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    from terrapod.storage import keys

    run = await create_run(admin, ws)
    job = await agent.claim()
    assert job is not None
    await agent.log(job, b"output\n")
    await agent.finish(job, "finished", has_changes=False)
    store = app.state.object_store
    await store.put_bytes(keys.plan_json(run["id"]), b"{}")
    assert (await admin.delete(f"/api/v2/workspaces/{ws}")).status_code == 204
    assert await store.head(keys.plan_json(run["id"])) is None


async def test_a_run_waits_for_its_configuration_upload(admin: httpx.AsyncClient) -> None:
    from tests.runs_support import tarball

    workspace_id = await make_workspace(admin, "early")
    r = await admin.post(
        f"/api/v2/workspaces/{workspace_id}/configuration-versions",
        json={"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": False}}},
    )
    cv = r.json()["data"]
    run = await create_run(admin, workspace_id, cv["id"])
    assert run["attributes"]["status"] == "pending"
    assert (await admin.put(cv["attributes"]["upload-url"], content=tarball())).status_code == 200
    assert await status_of(admin, run["id"]) == "plan_queued"


async def test_plan_only_run_may_pick_an_available_terraform_version(
    admin: httpx.AsyncClient, ws: str
) -> None:
    run = await create_run(admin, ws, **{"plan-only": True, "terraform-version": "1.15.5"})
    assert run["attributes"]["terraform-version"] == "1.15.5"
    r = await admin.post(
        "/api/v2/runs",
        json={
            "data": {
                "type": "runs",
                "attributes": {"plan-only": True, "terraform-version": "0.12.31"},
                "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws}}},
            }
        },
    )
    assert r.status_code == 422
    assert "0.12.31" in r.json()["errors"][0]["detail"]


async def test_metrics_count_runs_entering_each_status(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    await create_run(admin, ws, **{"auto-apply": True})
    await agent.run_phase()
    await agent.run_phase()
    text = (await admin.get("/metrics")).text
    assert 'terrapod_run_status_changes_total{status="applied"} 1.0' in text
    assert 'terrapod_run_status_changes_total{status="plan_queued"} 1.0' in text


async def test_a_provisional_configuration_becomes_current_only_when_its_run_applies(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    def cv_of(run: dict[str, object]) -> str:
        rel = run["relationships"]
        assert isinstance(rel, dict)
        return str(rel["configuration-version"]["data"]["id"])

    current = cv_of(await create_run(admin, ws, **{"plan-only": True}))
    provisional = await upload_configuration(admin, ws, provisional=True)
    saved = await create_run(admin, ws, provisional, **{"save-plan": True})
    await agent.run_phase()  # the speculative run
    await agent.run_phase()  # the saved plan: planned_and_saved
    assert cv_of(await create_run(admin, ws, **{"plan-only": True})) == current
    assert (await admin.post(f"/api/v2/runs/{saved['id']}/actions/apply")).status_code == 202
    await agent.run_phase()  # the speculative run queued above
    await agent.run_phase()  # the saved plan's apply
    assert await status_of(admin, saved["id"]) == "applied"
    assert cv_of(await create_run(admin, ws, **{"plan-only": True})) == provisional


async def test_a_job_whose_variables_cannot_be_decrypted_errors_instead_of_looping(
    app: FastAPI, admin: httpx.AsyncClient, ws: str
) -> None:
    from terrapod.agentpools import listeners
    from terrapod.db.transactions import write_transaction
    from terrapod.variables.models import Variable

    r = await admin.post(
        f"/api/v2/workspaces/{ws}/vars",
        json={
            "data": {
                "type": "vars",
                "attributes": {
                    "key": "secret",
                    "value": "s3cret",
                    "category": "terraform",
                    "sensitive": True,
                },
            }
        },
    )
    assert r.status_code == 201, r.text
    async with app.state.sessionmaker() as session:
        variable = await session.get(Variable, r.json()["data"]["id"])
        assert variable is not None
        variable.value_encrypted = "v1:" + "A" * 40  # as if the secret key had changed
        await session.commit()
    run = await create_run(admin, ws)
    async with write_transaction(app.state.sessionmaker) as session:
        agent, credential = await listeners.register_builtin(session, "builtin-test", 1)
    r = await admin.get(
        f"/api/v2/listeners/{agent.id}/runs/next",
        headers={"Authorization": f"Bearer {credential}"},
    )
    assert r.status_code == 204  # claimed, ended errored, and not handed out
    assert await status_of(admin, run["id"]) == "errored"
    plan = (await admin.get(f"/api/v2/runs/{run['id']}/plan")).json()["data"]
    log = (await admin.get(plan["attributes"]["log-read-url"])).content
    assert b"secret" in log
    assert b"s3cret" not in log


async def test_a_planned_run_whose_workspace_was_force_unlocked_cannot_be_applied(
    admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    run = await create_run(admin, ws)
    await agent.run_phase()
    assert (await admin.post(f"/api/v2/workspaces/{ws}/actions/force-unlock")).status_code == 200
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/apply")
    assert r.status_code == 409
    assert "force-unlocked" in r.text
    assert (await admin.post(f"/api/v2/runs/{run['id']}/actions/discard")).status_code == 202


async def test_a_workspace_that_forbids_destroy_plans_refuses_them(
    admin: httpx.AsyncClient, ws: str
) -> None:
    r = await admin.patch(
        f"/api/v2/workspaces/{ws}",
        json={"data": {"type": "workspaces", "attributes": {"allow-destroy-plan": False}}},
    )
    assert r.status_code == 200
    r = await admin.post(
        "/api/v2/runs",
        json={
            "data": {
                "type": "runs",
                "attributes": {"is-destroy": True, "plan-only": True},
                "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws}}},
            }
        },
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/is-destroy"


async def test_refusals_name_what_is_missing(
    app: FastAPI, ws: str, admin: httpx.AsyncClient
) -> None:
    member = await make_user(app, organization="default", role="member")
    run = await create_run(admin, ws)
    async with member.client(app) as client:
        r = await client.post(f"/api/v2/runs/{run['id']}/actions/force-cancel")
        assert r.status_code == 403
        assert "force-cancel runs in this workspace" in r.text


async def test_organization_tokens_cannot_queue_runs_through_an_upload(
    admin: httpx.AsyncClient, ws: str
) -> None:
    token = (await admin.post("/api/v2/organizations/default/authentication-token")).json()["data"][
        "attributes"
    ]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/configuration-versions",
        headers=headers,
        json={"data": {"type": "configuration-versions", "attributes": {}}},
    )
    assert r.status_code == 403
    r = await admin.post(
        "/api/v2/runs",
        headers=headers,
        json={
            "data": {
                "type": "runs",
                "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws}}},
            }
        },
    )
    assert r.status_code == 403


async def test_accepted_actions_are_documented_without_a_body(
    app: FastAPI, admin: httpx.AsyncClient, ws: str, agent: ProtocolAgent
) -> None:
    # A run action and an archive answer 202 with no body; the fuzzer found them documented
    # with a JSON:API body (FastAPI adds the router's media type to a 202 of its own).
    run = await create_run(admin, ws)
    await agent.run_phase()
    r = await admin.post(f"/api/v2/runs/{run['id']}/actions/discard")
    assert (r.status_code, r.content, r.headers.get("content-type")) == (202, b"", None)
    paths = app.openapi()["paths"]
    for path in (
        "/api/v2/runs/{run_id}/actions/apply",
        "/api/v2/runs/{run_id}/actions/confirm",
        "/api/v2/runs/{run_id}/actions/discard",
        "/api/v2/runs/{run_id}/actions/cancel",
        "/api/v2/runs/{run_id}/actions/force-cancel",
        "/api/v2/runs/{run_id}/actions/force-execute",
        "/api/v2/configuration-versions/{cv_id}/actions/archive",
    ):
        documented = paths[path]["post"]["responses"]
        assert "content" not in documented["202"], path
        error = documented["404"]["content"]
        assert list(error) == ["application/vnd.api+json"], path
