"""Run triggers through HTTP: the CRUD routes with their rules, and the runs an applied run
queues in its destinations.

Jobs are executed by :class:`tests.runs_support.ProtocolAgent`, which speaks the agent
protocol through the services without Terraform (tests/e2e/test_run_trigger_chain.py runs
the same chain with real Terraform).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from terrapod.runs.models import Run
from tests.factories import make_org, make_user
from tests.runs_support import (
    ProtocolAgent,
    create_run,
    make_workspace,
    status_of,
    upload_configuration,
)

FILTER = "filter[run-trigger][type]"


def trigger_body(source_id: str) -> dict[str, Any]:
    return {
        "data": {
            "type": "run-triggers",
            "relationships": {"sourceable": {"data": {"type": "workspaces", "id": source_id}}},
        }
    }


def triggers_path(workspace_id: str) -> str:
    return f"/api/v2/workspaces/{workspace_id}/run-triggers"


async def connect(client: httpx.AsyncClient, source_id: str, destination_id: str) -> httpx.Response:
    return await client.post(triggers_path(destination_id), json=trigger_body(source_id))


async def connected(client: httpx.AsyncClient, source_id: str, destination_id: str) -> str:
    r = await connect(client, source_id, destination_id)
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def listed(
    client: httpx.AsyncClient, workspace_id: str, direction: str, **params: str
) -> dict[str, Any]:
    r = await client.get(triggers_path(workspace_id), params={FILTER: direction, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def runs_of(client: httpx.AsyncClient, workspace_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"/api/v2/workspaces/{workspace_id}/runs")
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def events_of(client: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"/api/v2/runs/{run_id}/run-events")
    assert r.status_code == 200, r.text
    return [e["attributes"] for e in r.json()["data"]]


def error_detail(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["detail"])


def pointer_of(r: httpx.Response) -> str | None:
    source = r.json()["errors"][0].get("source") or {}
    return source.get("pointer")


@pytest.fixture
def agent(app: FastAPI) -> ProtocolAgent:
    return ProtocolAgent(app)


async def apply_run(
    client: httpx.AsyncClient, agent: ProtocolAgent, workspace_id: str
) -> dict[str, Any]:
    """A run in ``workspace_id`` planned, confirmed and applied by the agent."""
    run = await create_run(client, workspace_id, message="source change")
    job = await agent.run_phase()
    assert job.run_id == run["id"]
    r = await client.post(f"/api/v2/runs/{run['id']}/actions/apply", json={})
    assert r.status_code == 202, r.text
    job = await agent.run_phase()
    assert (job.run_id, job.phase) == (run["id"], "apply")
    assert await status_of(client, run["id"]) == "applied"
    return run


# -- create, read, list, delete ------------------------------------------------------------


async def test_create_shows_both_workspaces_by_id_and_name(admin: httpx.AsyncClient) -> None:
    source = await make_workspace(admin, "network")
    destination = await make_workspace(admin, "app")
    r = await connect(admin, source, destination)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert data["type"] == "run-triggers"
    assert data["id"].startswith("rt-")
    assert data["attributes"]["workspace-name"] == "app"
    assert data["attributes"]["sourceable-name"] == "network"
    assert data["attributes"]["created-at"].endswith("Z")
    assert data["relationships"]["workspace"]["data"] == {"type": "workspaces", "id": destination}
    assert data["relationships"]["sourceable"]["data"] == {"type": "workspaces", "id": source}
    assert data["links"]["self"] == f"/api/v2/run-triggers/{data['id']}"

    shown = await admin.get(f"/api/v2/run-triggers/{data['id']}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["data"] == data


async def test_list_needs_the_direction_filter(admin: httpx.AsyncClient) -> None:
    ws = await make_workspace(admin, "app")
    missing = await admin.get(triggers_path(ws))
    assert missing.status_code == 422, missing.text
    assert "filter[run-trigger][type]" in error_detail(missing)
    assert "missing" in error_detail(missing)
    wrong = await admin.get(triggers_path(ws), params={FILTER: "oubound"})
    assert wrong.status_code == 422, wrong.text
    assert "filter[run-trigger][type]" in error_detail(wrong)
    assert "'oubound'" in error_detail(wrong)


async def test_inbound_and_outbound_lists_are_paginated(admin: httpx.AsyncClient) -> None:
    hub = await make_workspace(admin, "hub")
    sources = [await make_workspace(admin, f"in-{i}") for i in range(3)]
    destinations = [await make_workspace(admin, f"out-{i}") for i in range(2)]
    inbound_ids = [await connected(admin, s, hub) for s in sources]
    outbound_ids = [await connected(admin, hub, d) for d in destinations]

    first = await listed(admin, hub, "inbound", **{"page[size]": "2"})
    assert [t["id"] for t in first["data"]] == inbound_ids[:2]
    assert first["meta"]["pagination"]["total-count"] == 3
    assert first["meta"]["pagination"]["next-page"] == 2
    second = await listed(admin, hub, "inbound", **{"page[size]": "2", "page[number]": "2"})
    assert [t["id"] for t in second["data"]] == inbound_ids[2:]
    assert all(t["attributes"]["workspace-name"] == "hub" for t in first["data"])

    outbound = await listed(admin, hub, "outbound")
    assert [t["id"] for t in outbound["data"]] == outbound_ids
    assert [t["attributes"]["workspace-name"] for t in outbound["data"]] == ["out-0", "out-1"]
    assert {t["attributes"]["sourceable-name"] for t in outbound["data"]} == {"hub"}
    assert outbound["meta"]["pagination"]["total-count"] == 2


async def test_include_adds_the_workspaces(admin: httpx.AsyncClient) -> None:
    source = await make_workspace(admin, "network")
    destination = await make_workspace(admin, "app")
    trigger_id = await connected(admin, source, destination)
    body = await listed(admin, destination, "inbound", include="workspace,sourceable")
    included = {(i["type"], i["id"]): i for i in body["included"]}
    assert set(included) == {("workspaces", source), ("workspaces", destination)}
    assert included[("workspaces", source)]["attributes"]["name"] == "network"
    shown = (await admin.get(f"/api/v2/run-triggers/{trigger_id}?include=sourceable")).json()
    assert [(i["type"], i["id"]) for i in shown["included"]] == [("workspaces", source)]
    plain = await listed(admin, destination, "inbound")
    assert "included" not in plain


async def test_delete_removes_the_trigger(admin: httpx.AsyncClient) -> None:
    source = await make_workspace(admin, "network")
    destination = await make_workspace(admin, "app")
    trigger_id = await connected(admin, source, destination)
    assert (await admin.delete(f"/api/v2/run-triggers/{trigger_id}")).status_code == 204
    assert (await admin.get(f"/api/v2/run-triggers/{trigger_id}")).status_code == 404
    assert (await admin.delete(f"/api/v2/run-triggers/{trigger_id}")).status_code == 404
    assert (await listed(admin, destination, "inbound"))["data"] == []
    # The pair can be connected again.
    await connected(admin, source, destination)


async def test_unknown_or_malformed_trigger_ids_are_404(admin: httpx.AsyncClient) -> None:
    for trigger_id in ("rt-AAAAAAAAAAAAAAAA", "nonexisting", "ws-AAAAAAAAAAAAAAAA"):
        assert (await admin.get(f"/api/v2/run-triggers/{trigger_id}")).status_code == 404
        assert (await admin.delete(f"/api/v2/run-triggers/{trigger_id}")).status_code == 404


# -- validation ----------------------------------------------------------------------------


async def test_a_workspace_cannot_trigger_itself(admin: httpx.AsyncClient) -> None:
    ws = await make_workspace(admin, "app")
    r = await connect(admin, ws, ws)
    assert r.status_code == 422, r.text
    assert pointer_of(r) == "/data/relationships/sourceable"
    assert "its own" in error_detail(r)


async def test_the_same_pair_twice_is_refused(admin: httpx.AsyncClient) -> None:
    source = await make_workspace(admin, "network")
    destination = await make_workspace(admin, "app")
    await connected(admin, source, destination)
    r = await connect(admin, source, destination)
    assert r.status_code == 422, r.text
    assert pointer_of(r) == "/data/relationships/sourceable"
    assert "already has a run trigger from network" in error_detail(r)
    # The opposite direction is another trigger.
    await connected(admin, destination, source)


async def test_a_21st_source_is_refused(admin: httpx.AsyncClient) -> None:
    destination = await make_workspace(admin, "app")
    for i in range(20):
        await connected(admin, await make_workspace(admin, f"src-{i}"), destination)
    extra = await make_workspace(admin, "src-20")
    r = await connect(admin, extra, destination)
    assert r.status_code == 422, r.text
    assert "20 source workspaces" in error_detail(r)
    assert (await listed(admin, destination, "inbound"))["meta"]["pagination"]["total-count"] == 20
    # The limit is on sources per destination: the extra workspace may still be a source
    # elsewhere, and a destination may have any number of outbound triggers.
    await connected(admin, extra, await make_workspace(admin, "other"))


async def test_concurrent_creates_cannot_pass_the_limits(
    admin: httpx.AsyncClient,
) -> None:
    destination = await make_workspace(admin, "app")
    for i in range(19):
        await connected(admin, await make_workspace(admin, f"src-{i}"), destination)
    last = [await make_workspace(admin, f"last-{i}") for i in range(2)]
    answers = await asyncio.gather(*(connect(admin, s, destination) for s in last))
    assert sorted(r.status_code for r in answers) == [201, 422]
    assert (await listed(admin, destination, "inbound"))["meta"]["pagination"]["total-count"] == 20

    other = await make_workspace(admin, "other")
    source = await make_workspace(admin, "network")
    answers = await asyncio.gather(*(connect(admin, source, other) for _ in range(2)))
    assert sorted(r.status_code for r in answers) == [201, 422]
    assert len((await listed(admin, other, "inbound"))["data"]) == 1


async def test_missing_or_malformed_sourceable_is_422(admin: httpx.AsyncClient) -> None:
    ws = await make_workspace(admin, "app")
    bodies = [
        {"data": {"type": "run-triggers"}},
        {"data": {"type": "run-triggers", "relationships": {"sourceable": {"data": None}}}},
        {"data": {"type": "run-triggers", "relationships": {"sourceable": "ws-x"}}},
        {
            "data": {
                "type": "run-triggers",
                "relationships": {"sourceable": {"data": {"type": "runs", "id": ws}}},
            }
        },
    ]
    for body in bodies:
        r = await admin.post(triggers_path(ws), json=body)
        assert r.status_code == 422, (body, r.text)
        assert (pointer_of(r) or "").startswith("/data/relationships/sourceable"), r.text
    broken = await admin.post(
        triggers_path(ws), content=b"{", headers={"Content-Type": "application/vnd.api+json"}
    )
    assert broken.status_code == 400
    assert (await listed(admin, ws, "inbound"))["data"] == []


async def test_an_unknown_source_is_404(admin: httpx.AsyncClient) -> None:
    ws = await make_workspace(admin, "app")
    for source in ("ws-AAAAAAAAAAAAAAAA", "not-an-id"):
        r = await connect(admin, source, ws)
        assert r.status_code == 404, r.text
        assert "source workspace" in error_detail(r)


async def test_a_source_in_another_organization_is_refused(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    destination = await make_workspace(admin, "app")
    org = await make_org(app)
    r = await admin.post(
        f"/api/v2/organizations/{org}/workspaces",
        json={"data": {"type": "workspaces", "attributes": {"name": "elsewhere"}}},
    )
    assert r.status_code == 201, r.text
    foreign = r.json()["data"]["id"]
    # The platform admin sees both organizations: the refusal names the reason.
    refused = await connect(admin, foreign, destination)
    assert refused.status_code == 422, refused.text
    assert "another organization" in error_detail(refused)
    # An owner of the destination's organization cannot even see the other workspace.
    owner = await make_user(app, organization="default", role="owner")
    async with owner.client(app) as client:
        hidden = await connect(client, foreign, destination)
    assert hidden.status_code == 404, hidden.text


# -- permissions ---------------------------------------------------------------------------


async def test_members_read_but_only_admins_manage_triggers(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    source = await make_workspace(admin, "network")
    destination = await make_workspace(admin, "app")
    trigger_id = await connected(admin, source, destination)
    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as client:
        assert (await client.get(f"/api/v2/run-triggers/{trigger_id}")).status_code == 200
        r = await client.get(triggers_path(destination), params={FILTER: "inbound"})
        assert r.status_code == 200 and len(r.json()["data"]) == 1
        created = await connect(client, await make_workspace(admin, "more"), destination)
        assert created.status_code == 403, created.text
        assert error_detail(created) == "not permitted to manage the run triggers of this workspace"
        deleted = await client.delete(f"/api/v2/run-triggers/{trigger_id}")
        assert deleted.status_code == 403, deleted.text
        # A member who creates a workspace administers it, so may connect sources to it.
        own = await make_workspace(client, "members-own")
        r = await connect(client, source, own)
        assert r.status_code == 201, r.text
    assert (await admin.get(f"/api/v2/run-triggers/{trigger_id}")).status_code == 200

    owner = await make_user(app, organization="default", role="owner")
    async with owner.client(app) as client:
        assert (await client.delete(f"/api/v2/run-triggers/{trigger_id}")).status_code == 204


async def test_other_organizations_see_nothing(app: FastAPI, admin: httpx.AsyncClient) -> None:
    source = await make_workspace(admin, "network")
    destination = await make_workspace(admin, "app")
    trigger_id = await connected(admin, source, destination)
    org = await make_org(app)
    outsider = await make_user(app, organization=org, role="owner")
    async with outsider.client(app) as client:
        assert (await client.get(f"/api/v2/run-triggers/{trigger_id}")).status_code == 404
        assert (await client.delete(f"/api/v2/run-triggers/{trigger_id}")).status_code == 404
        r = await client.get(triggers_path(destination), params={FILTER: "inbound"})
        assert r.status_code == 404
        assert (await connect(client, source, destination)).status_code == 404
    assert (await admin.get(f"/api/v2/run-triggers/{trigger_id}")).status_code == 200


async def test_no_token_is_401(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/api/v2/run-triggers/rt-AAAAAAAAAAAAAAAA")).status_code == 401
    r = await anon.post(triggers_path("ws-AAAAAAAAAAAAAAAA"), json=trigger_body("ws-x"))
    assert r.status_code == 401


async def test_deleting_either_workspace_removes_its_triggers(admin: httpx.AsyncClient) -> None:
    a = await make_workspace(admin, "a")
    b = await make_workspace(admin, "b")
    c = await make_workspace(admin, "c")
    a_to_b = await connected(admin, a, b)
    b_to_c = await connected(admin, b, c)
    assert (await admin.delete(f"/api/v2/workspaces/{b}")).status_code == 204
    for trigger_id in (a_to_b, b_to_c):
        assert (await admin.get(f"/api/v2/run-triggers/{trigger_id}")).status_code == 404
    assert (await listed(admin, a, "outbound"))["data"] == []
    assert (await listed(admin, c, "inbound"))["data"] == []


# -- what a trigger does -------------------------------------------------------------------


async def test_an_applied_run_queues_a_run_in_each_destination(
    app: FastAPI, admin: httpx.AsyncClient, agent: ProtocolAgent
) -> None:
    source = await make_workspace(admin, "network")
    destinations = [await make_workspace(admin, name) for name in ("app", "db")]
    for ws in (source, *destinations):
        await upload_configuration(admin, ws)
    trigger_ids = [await connected(admin, source, d) for d in destinations]

    applied = await apply_run(admin, agent, source)

    for destination, trigger_id in zip(destinations, trigger_ids, strict=True):
        runs = await runs_of(admin, destination)
        assert len(runs) == 1, runs
        attrs = runs[0]["attributes"]
        assert attrs["source"] == "tfe-run-trigger"
        assert attrs["message"] == f"Triggered by workspace network run {applied['id']}"
        assert attrs["status"] == "plan_queued"
        assert attrs["auto-apply"] is False  # auto-apply-run-trigger is off
        assert runs[0]["relationships"]["created-by"]["data"] is None
        events = await events_of(admin, runs[0]["id"])
        assert any(
            e["action"] == "run-triggered"
            and applied["id"] in e["description"]
            and trigger_id in e["description"]
            for e in events
        ), events
        async with app.state.sessionmaker() as session:
            run = await session.get(Run, runs[0]["id"])
            assert run is not None
            assert (run.triggered_by_run_id, run.triggered_by_workspace_id) == (
                applied["id"],
                source,
            )
    fired = [e for e in await events_of(admin, applied["id"]) if e["action"] == "run-trigger-fired"]
    assert len(fired) == 2, fired
    # The triggered runs can be found by their source.
    r = await admin.get(
        f"/api/v2/workspaces/{destinations[0]}/runs", params={"filter[source]": "tfe-run-trigger"}
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 1


async def test_runs_that_do_not_apply_trigger_nothing(
    admin: httpx.AsyncClient, agent: ProtocolAgent
) -> None:
    source = await make_workspace(admin, "network")
    destination = await make_workspace(admin, "app")
    for ws in (source, destination):
        await upload_configuration(admin, ws)
    await connected(admin, source, destination)

    errored = await create_run(admin, source)
    await agent.run_phase("errored", error="boom")
    assert await status_of(admin, errored["id"]) == "errored"

    no_changes = await create_run(admin, source)
    await agent.run_phase(has_changes=False, additions=0)
    assert await status_of(admin, no_changes["id"]) == "planned_and_finished"

    discarded = await create_run(admin, source)
    await agent.run_phase()
    assert await status_of(admin, discarded["id"]) == "planned"
    r = await admin.post(f"/api/v2/runs/{discarded['id']}/actions/discard")
    assert r.status_code == 202, r.text

    speculative = await create_run(admin, source, **{"plan-only": True})
    await agent.run_phase()
    assert await status_of(admin, speculative["id"]) == "planned_and_finished"

    failed_apply = await create_run(admin, source)
    await agent.run_phase()
    assert (
        await admin.post(f"/api/v2/runs/{failed_apply['id']}/actions/apply", json={})
    ).status_code == 202
    await agent.run_phase("errored", error="apply failed")
    assert await status_of(admin, failed_apply["id"]) == "errored"

    assert await runs_of(admin, destination) == []


async def test_auto_apply_run_trigger_decides_whether_triggered_runs_apply(
    admin: httpx.AsyncClient, agent: ProtocolAgent
) -> None:
    source = await make_workspace(admin, "network")
    automatic = await make_workspace(admin, "automatic", **{"auto-apply-run-trigger": True})
    # HCP Terraform: auto-apply alone does not apply runs a trigger queued.
    manual = await make_workspace(admin, "manual", **{"auto-apply": True})
    for ws in (source, automatic, manual):
        await upload_configuration(admin, ws)
    await connected(admin, source, automatic)
    await connected(admin, source, manual)

    await apply_run(admin, agent, source)

    [auto_run] = await runs_of(admin, automatic)
    [manual_run] = await runs_of(admin, manual)
    assert auto_run["attributes"]["auto-apply"] is True
    assert manual_run["attributes"]["auto-apply"] is False
    for _ in range(2):  # both plans
        await agent.run_phase()
    assert await status_of(admin, manual_run["id"]) == "planned"
    assert await status_of(admin, auto_run["id"]) == "apply_queued"
    await agent.run_phase()
    assert await status_of(admin, auto_run["id"]) == "applied"


async def test_a_chain_runs_one_workspace_after_another(
    admin: httpx.AsyncClient, agent: ProtocolAgent
) -> None:
    a = await make_workspace(admin, "a")
    b = await make_workspace(admin, "b", **{"auto-apply-run-trigger": True})
    c = await make_workspace(admin, "c", **{"auto-apply-run-trigger": True})
    for ws in (a, b, c):
        await upload_configuration(admin, ws)
    await connected(admin, a, b)
    await connected(admin, b, c)

    applied = await apply_run(admin, agent, a)
    assert await runs_of(admin, c) == []  # C waits for B's apply
    [b_run] = await runs_of(admin, b)
    await agent.run_phase()  # B plans, auto-applies
    await agent.run_phase()
    assert await status_of(admin, b_run["id"]) == "applied"
    [c_run] = await runs_of(admin, c)
    assert c_run["attributes"]["message"] == f"Triggered by workspace b run {b_run['id']}"
    assert b_run["attributes"]["message"] == f"Triggered by workspace a run {applied['id']}"
    await agent.run_phase()
    await agent.run_phase()
    assert await status_of(admin, c_run["id"]) == "applied"


async def test_a_loop_of_triggers_stops_after_one_lap(
    admin: httpx.AsyncClient, agent: ProtocolAgent
) -> None:
    a = await make_workspace(admin, "a", **{"auto-apply-run-trigger": True})
    b = await make_workspace(admin, "b", **{"auto-apply-run-trigger": True})
    for ws in (a, b):
        await upload_configuration(admin, ws)
    await connected(admin, a, b)
    await connected(admin, b, a)

    await apply_run(admin, agent, a)
    [b_run] = await runs_of(admin, b)
    await agent.run_phase()
    await agent.run_phase()
    assert await status_of(admin, b_run["id"]) == "applied"
    assert len(await runs_of(admin, a)) == 1  # only the run started by hand
    skipped = [
        e for e in await events_of(admin, b_run["id"]) if e["action"] == "run-trigger-skipped"
    ]
    assert len(skipped) == 1 and "workspace a already ran" in skipped[0]["description"], skipped
    assert await agent.claim() is None  # nothing else was queued


async def test_a_destination_without_configuration_gets_no_run(
    admin: httpx.AsyncClient, agent: ProtocolAgent
) -> None:
    source = await make_workspace(admin, "network")
    empty = await make_workspace(admin, "empty")
    ready = await make_workspace(admin, "ready")
    local = await make_workspace(admin, "local", **{"execution-mode": "local"})
    for ws in (source, ready, local):
        await upload_configuration(admin, ws)
    for destination in (empty, ready, local):
        await connected(admin, source, destination)

    applied = await apply_run(admin, agent, source)

    assert await runs_of(admin, empty) == []
    assert await runs_of(admin, local) == []
    assert len(await runs_of(admin, ready)) == 1
    events = await events_of(admin, applied["id"])
    skipped = [e["description"] for e in events if e["action"] == "run-trigger-skipped"]
    assert len(skipped) == 2, events
    assert any("workspace empty has no uploaded configuration version" in d for d in skipped)
    assert any("workspace local uses local execution" in d for d in skipped)
    assert await status_of(admin, applied["id"]) == "applied"


async def test_a_deleted_trigger_no_longer_fires(
    admin: httpx.AsyncClient, agent: ProtocolAgent
) -> None:
    source = await make_workspace(admin, "network")
    destination = await make_workspace(admin, "app")
    for ws in (source, destination):
        await upload_configuration(admin, ws)
    trigger_id = await connected(admin, source, destination)
    assert (await admin.delete(f"/api/v2/run-triggers/{trigger_id}")).status_code == 204
    await apply_run(admin, agent, source)
    assert await runs_of(admin, destination) == []
