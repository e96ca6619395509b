"""Terraform actions (seed 002): what plan and apply jobs report becomes a workspace's
actions and each run's invocations, and every endpoint lists, filters, aggregates, pages and
refuses as the seed documents. The agent is tests.runs_support.ProtocolAgent, reporting what
the runner reports for a real engine (terrapod.runner.actions)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from terrapod.runner.actions import match_key
from terrapod.runner.spec import ActionInvocationReport, DeclaredAction, JobResult
from tests.factories import make_org, make_user
from tests.runs_support import ProtocolAgent, create_run, make_workspace, upload_configuration

WATCH, HELLO = "action.pinger_ping.watch", "action.pinger_ping.hello"
A, B = "terraform_data.a", "terraform_data.b"
DECLARED = (
    DeclaredAction("", HELLO, "pinger"),
    DeclaredAction("", WATCH, "pinger"),
    DeclaredAction("module.child", "action.other_x.y", "other"),
)


def lifecycle(
    resource: str, status: str = "planned", at: str | None = None
) -> ActionInvocationReport:
    return ActionInvocationReport(
        match_key=match_key(WATCH, resource, 0, 0),
        module_address="",
        address=WATCH,
        action_key=None,
        provider="pinger",
        method="lifecycle",
        status=status,  # type: ignore[arg-type]
        triggering_resource_address=resource,
        trigger_event="AfterCreate",
        trigger_block_index=0,
        actions_list_index=0,
        started_at=at,
        completed_at=at,
        error="boom" if status == "failed" else None,
    )


def direct(status: str = "planned", at: str | None = None) -> ActionInvocationReport:
    return ActionInvocationReport(
        match_key=match_key(HELLO, None, None, None),
        module_address="",
        address=HELLO,
        action_key=None,
        provider="pinger",
        method="direct",
        status=status,  # type: ignore[arg-type]
        started_at=at,
    )


PLAN = JobResult(
    outcome="finished",
    has_changes=True,
    actions=DECLARED,
    action_invocations=(lifecycle(A), lifecycle(B)),
)
APPLY = JobResult(
    outcome="errored",
    error="terraform apply exited 1",
    action_invocations=(
        lifecycle(B, "failed", "2026-05-12T15:40:02Z"),
        lifecycle(A, "successful", "2026-05-12T15:40:01Z"),
    ),
)


async def planned_run(app: FastAPI, admin: httpx.AsyncClient, ws: str, plan: JobResult) -> str:
    run = await create_run(admin, ws)
    job = await ProtocolAgent(app).run_phase(report=plan)
    assert job.run_id == run["id"]
    return str(run["id"])


async def applied_run(app: FastAPI, admin: httpx.AsyncClient, ws: str) -> str:
    """A run whose plan invoked watch on two resources and whose apply failed on one."""
    run_id = await planned_run(app, admin, ws, PLAN)
    r = await admin.post(f"/api/v2/runs/{run_id}/actions/apply", json={})
    assert r.status_code == 202, r.text
    await ProtocolAgent(app).run_phase("errored", report=APPLY, error="terraform apply exited 1")
    return run_id


async def workspace(admin: httpx.AsyncClient, name: str = "acts") -> str:
    ws = await make_workspace(admin, name)
    await upload_configuration(admin, ws)
    return ws


def data(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()["data"]


async def actions_of(admin: httpx.AsyncClient, ws: str, **params: str) -> list[dict[str, Any]]:
    return list(data(await admin.get(f"/api/v2/workspaces/{ws}/terraform-actions", params=params)))


async def action_id(admin: httpx.AsyncClient, ws: str, address: str) -> str:
    (found,) = [a for a in await actions_of(admin, ws) if a["attributes"]["address"] == address]
    return str(found["id"])


async def test_a_plan_and_its_apply_become_actions_and_invocations(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await workspace(admin)
    run_id = await applied_run(app, admin, ws)
    listed = await actions_of(admin, ws)
    assert [(a["attributes"]["module-address"], a["attributes"]["address"]) for a in listed] == [
        ("system:root_module", HELLO),
        ("system:root_module", WATCH),
        ("module.child", "action.other_x.y"),
    ]
    watch = next(a for a in listed if a["attributes"]["address"] == WATCH)
    assert watch["attributes"]["provider"] == "pinger"
    assert watch["attributes"]["documentation-url"] is None
    assert "invocation-count" not in watch["attributes"]
    shown = data(await admin.get(f"/api/v2/terraform-actions/{watch['id']}"))
    assert shown["attributes"]["invocation-count"] == 2
    hello = data(await admin.get(f"/api/v2/terraform-actions/{await action_id(admin, ws, HELLO)}"))
    assert hello["attributes"]["invocation-count"] == 0
    assert hello["relationships"]["last-invocation"]["data"] is None

    (summary,) = data(
        await admin.get(f"/api/v2/terraform-actions/{watch['id']}/invocations/run-summary")
    )
    assert summary["id"] == f"{watch['id']}:{run_id}"
    assert summary["attributes"] == {
        "aggregate-invocation-status": "not_successful",
        "invocation-method": "lifecycle",
        "invoked-at": "2026-05-12T15:40:02.000Z",
        "invoked-by": {"username": "admin", "avatar-url": None},
        "invocation-statuses": {"successful": 1, "failed": 1},
        "planned-invocation-count": 2,
    }

    r = await admin.get(f"/api/v2/terraform-actions/{watch['id']}/runs/{run_id}/invocations")
    invocations = data(r)
    assert r.json()["meta"]["counts"] == {"invocations": {"total": 2}}
    # Execution order: A was invoked first.
    assert [i["attributes"]["triggering-resource-address"] for i in invocations] == [A, B]
    assert [i["attributes"]["final-status"] for i in invocations] == ["successful", "failed"]
    # The last invocation is the newest one.
    assert shown["relationships"]["last-invocation"]["data"]["id"] == invocations[1]["id"]

    r = await admin.get(
        f"/api/v2/terraform-actions/{watch['id']}/runs/{run_id}/invocations/lifecycle-resource-groups"
    )
    groups = data(r)
    assert [(g["id"], g["attributes"]["aggregate-invocation-status"]) for g in groups] == [
        (A, "successful"),
        (B, "not_successful"),
    ]
    assert r.json()["meta"]["counts"] == {
        "invocations": {"total": 2},
        "resource-groups": {"total": 2},
    }


async def test_invocations_filter_and_search(app: FastAPI, admin: httpx.AsyncClient) -> None:
    ws = await workspace(admin)
    run_id = await applied_run(app, admin, ws)
    watch = await action_id(admin, ws, WATCH)
    base = f"/api/v2/terraform-actions/{watch}/runs/{run_id}/invocations"

    async def addresses(path: str, **params: str) -> list[str]:
        found = data(await admin.get(path, params=params))
        return [i["attributes"].get("triggering-resource-address") or i["id"] for i in found]

    assert await addresses(base, **{"filter[status]": "failed"}) == [B]
    assert await addresses(base, **{"filter[status]": "successful,failed"}) == [A, B]
    assert await addresses(base, **{"filter[status]": "not_invoked"}) == []
    assert await addresses(base, q="DATA.B") == [B]
    assert await addresses(base, q="aftercreate") == [A, B]
    assert await addresses(base, q="100%_") == []
    groups = base + "/lifecycle-resource-groups"
    assert await addresses(groups, **{"filter[aggregate_status]": "successful"}) == [A]
    assert await addresses(groups, **{"filter[aggregate_status]": "not_invoked"}) == []
    assert await addresses(groups, q="not_successful") == [B]
    assert await addresses(groups, q="failed") == [B]
    r = await admin.get(groups, params={"page[size]": "1", "page[number]": "2"})
    assert [g["id"] for g in data(r)] == [B]
    assert r.json()["meta"]["pagination"]["total-count"] == 2


async def test_a_run_that_never_applies_leaves_its_invocations_not_invoked(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await workspace(admin)
    run_id = await planned_run(app, admin, ws, PLAN)
    watch = await action_id(admin, ws, WATCH)
    summaries = f"/api/v2/terraform-actions/{watch}/invocations/run-summary"
    (summary,) = data(await admin.get(summaries))
    assert summary["attributes"]["aggregate-invocation-status"] == "run_in_progress"
    assert summary["attributes"]["invoked-at"] is None
    invocations = f"/api/v2/terraform-actions/{watch}/runs/{run_id}/invocations"
    assert {i["attributes"]["final-status"] for i in data(await admin.get(invocations))} == {None}

    r = await admin.post(f"/api/v2/runs/{run_id}/actions/discard", json={})
    assert r.status_code == 202, r.text
    (summary,) = data(await admin.get(summaries))
    assert summary["attributes"]["aggregate-invocation-status"] == "not_invoked"
    assert summary["attributes"]["invocation-statuses"] == {"successful": 0, "failed": 0}
    found = data(await admin.get(invocations, params={"filter[status]": "not_invoked"}))
    assert len(found) == 2
    assert data(
        await admin.get(summaries, params={"filter[aggregate_invocation_status]": "not_invoked"})
    )
    assert not data(
        await admin.get(summaries, params={"filter[aggregate_invocation_status]": "successful"})
    )


async def test_action_and_run_summary_filters(app: FastAPI, admin: httpx.AsyncClient) -> None:
    ws = await workspace(admin)
    first = await applied_run(app, admin, ws)
    second = await planned_run(
        app,
        admin,
        ws,
        JobResult(
            outcome="finished", has_changes=True, actions=DECLARED, action_invocations=(direct(),)
        ),
    )
    path = f"/api/v2/workspaces/{ws}/terraform-actions"
    assert [
        a["attributes"]["address"]
        for a in await actions_of(admin, ws, **{"filter[provider]": "other"})
    ] == ["action.other_x.y"]
    assert len(await actions_of(admin, ws, **{"filter[module_address]": "system:root_module"})) == 2
    assert len(await actions_of(admin, ws, **{"filter[module_address]": "module.child"})) == 1
    when = "filter[last_invocation][invoked_at]"
    assert [
        a["attributes"]["address"]
        for a in await actions_of(admin, ws, **{f"{when}[gte]": "2026-05-12T15:40:02Z"})
    ] == [WATCH]
    assert await actions_of(admin, ws, **{f"{when}[gt]": "2026-05-12T15:40:02Z"}) == []
    assert len(await actions_of(admin, ws, **{f"{when}[lt]": "2030-01-01T00:00:00+00:00"})) == 1
    r = await admin.get(path, params={"page[size]": "1", "page[number]": "3"})
    assert [a["attributes"]["address"] for a in data(r)] == ["action.other_x.y"]
    assert r.json()["meta"]["pagination"]["total-pages"] == 3
    assert r.json()["links"]["prev"] is not None and r.json()["links"]["next"] is None
    options = data(await admin.get(path + "/filter-options"))
    assert options == {
        "id": ws,
        "type": "action-filter-options",
        "attributes": {"providers": ["other", "pinger"]},
    }

    hello = await action_id(admin, ws, HELLO)
    summaries = f"/api/v2/terraform-actions/{hello}/invocations/run-summary"

    async def runs(**params: str) -> list[str]:
        return [
            s["relationships"]["run"]["data"]["id"]
            for s in data(await admin.get(summaries, params=params))
        ]

    assert await runs() == [second]
    assert await runs(**{"filter[invocation_method]": "direct"}) == [second]
    assert await runs(**{"filter[invocation_method]": "lifecycle"}) == []
    assert await runs(**{"filter[run][id]": first}) == []
    assert await runs(**{"filter[source]": "tfe-api"}) == [second]
    assert await runs(**{"filter[source]": "tfe-ui,terraform"}) == []
    assert await runs(**{"filter[invoked_by]": "admin"}) == [second]
    assert await runs(**{"filter[invoked_by]": "system:not_a_user"}) == []
    watch = await action_id(admin, ws, WATCH)
    watch_summaries = f"/api/v2/terraform-actions/{watch}/invocations/run-summary"
    assert (
        len(
            data(
                await admin.get(
                    watch_summaries, params={"filter[invoked_at][gte]": "2026-05-12T15:40:02Z"}
                )
            )
        )
        == 1
    )
    assert (
        data(
            await admin.get(
                watch_summaries, params={"filter[invoked_at][lt]": "2026-05-12T15:40:02Z"}
            )
        )
        == []
    )
    options = data(await admin.get(f"/api/v2/terraform-actions/{hello}/invocations/filter-options"))
    assert options == {
        "id": hello,
        "type": "action-invocation-filter-options",
        "attributes": {"invoked-by": ["admin"]},
    }


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("{ws}", {"filter[last_invocation][invoked_at][gte]": "yesterday"}, "invoked_at][gte]"),
        ("{summary}", {"filter[invocation_method]": "direct,manual"}, "filter[invocation_method]"),
        ("{summary}", {"filter[aggregate_invocation_status]": "failed"}, "aggregate_invocation"),
        ("{summary}", {"filter[source]": "cli"}, "filter[source]"),
        ("{summary}", {"filter[invoked_at][lt]": "2026-13-01"}, "filter[invoked_at][lt]"),
        ("{invocations}", {"filter[status]": "errored"}, "filter[status]"),
        ("{invocations}", {"q": "x" * 300}, "q must be"),
        ("{groups}", {"filter[aggregate_status]": "run_in_progress"}, "filter[aggregate_status]"),
        ("{ws}", {"page[size]": "0"}, "page[size]"),
    ],
)
async def test_bad_filters_are_400_naming_the_parameter(
    app: FastAPI, admin: httpx.AsyncClient, path: str, params: dict[str, str], named: str
) -> None:
    ws = await workspace(admin)
    run_id = await applied_run(app, admin, ws)
    watch = await action_id(admin, ws, WATCH)
    url = path.format(
        ws=f"/api/v2/workspaces/{ws}/terraform-actions",
        summary=f"/api/v2/terraform-actions/{watch}/invocations/run-summary",
        invocations=f"/api/v2/terraform-actions/{watch}/runs/{run_id}/invocations",
        groups=f"/api/v2/terraform-actions/{watch}/runs/{run_id}/invocations/lifecycle-resource-groups",
    )
    r = await admin.get(url, params=params)
    assert r.status_code == 400, r.text
    assert named in r.json()["errors"][0]["detail"]


async def test_only_those_who_may_read_the_workspace_see_its_actions(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await workspace(admin)
    run_id = await applied_run(app, admin, ws)
    watch = await action_id(admin, ws, WATCH)
    paths = [
        f"/api/v2/workspaces/{ws}/terraform-actions",
        f"/api/v2/workspaces/{ws}/terraform-actions/filter-options",
        f"/api/v2/terraform-actions/{watch}",
        f"/api/v2/terraform-actions/{watch}/invocations/run-summary",
        f"/api/v2/terraform-actions/{watch}/invocations/filter-options",
        f"/api/v2/terraform-actions/{watch}/runs/{run_id}/invocations",
        f"/api/v2/terraform-actions/{watch}/runs/{run_id}/invocations/lifecycle-resource-groups",
    ]
    member = await make_user(app, organization="default", role="member")
    await make_org(app, "elsewhere")
    outsider = await make_user(app, organization="elsewhere", role="owner")
    async with member.client(app) as m, outsider.client(app) as o:
        for path in paths:
            assert (await m.get(path)).status_code == 200, path
            r = await o.get(path)
            assert r.status_code == 404, path
            assert r.json()["errors"][0]["status"] == "404"


async def test_unknown_actions_and_runs_of_other_workspaces_are_404(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await workspace(admin)
    await applied_run(app, admin, ws)
    watch = await action_id(admin, ws, WATCH)
    other = await workspace(admin, "elsewhere-ws")
    foreign_run = (await create_run(admin, other))["id"]
    for path in (
        "/api/v2/terraform-actions/action-AAAAAAAAAAAAAAAA",
        "/api/v2/terraform-actions/not-an-id/invocations/run-summary",
        f"/api/v2/terraform-actions/{watch}/runs/{foreign_run}/invocations",
        f"/api/v2/terraform-actions/{watch}/runs/run-AAAAAAAAAAAAAAAA/invocations/lifecycle-resource-groups",
        "/api/v2/workspaces/ws-AAAAAAAAAAAAAAAA/terraform-actions",
    ):
        r = await admin.get(path)
        assert r.status_code == 404, path
        assert "not found" in r.json()["errors"][0]["detail"]


async def test_a_run_may_invoke_actions(app: FastAPI, admin: httpx.AsyncClient) -> None:
    ws = await workspace(admin)
    relationships = {"workspace": {"data": {"type": "workspaces", "id": ws}}}
    body = {
        "data": {
            "type": "runs",
            "attributes": {"invoke-action-addrs": [HELLO]},
            "relationships": relationships,
        }
    }
    run = data(await admin.post("/api/v2/runs", json=body), 201)
    assert run["attributes"]["invoke-action-addrs"] == [HELLO]
    body["data"]["attributes"] = {"invoke-action-addrs": ["-destroy"]}
    r = await admin.post("/api/v2/runs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/invoke-action-addrs"
