"""Workspaces: CRUD, filters, tags, locking, permissions, state sharing settings."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from tests.factories import make_org, make_user

WS = "/api/v2/organizations/default/workspaces"


def ws_body(**attrs: object) -> dict[str, object]:
    return {"data": {"type": "workspaces", "attributes": attrs}}


async def create(client: httpx.AsyncClient, name: str, **attrs: object) -> dict[str, object]:
    r = await client.post(WS, json=ws_body(name=name, **attrs))
    assert r.status_code == 201, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


async def test_create_and_read_by_name_and_id(admin: httpx.AsyncClient) -> None:
    data = await create(
        admin,
        "net",
        description="network",
        **{"terraform-version": "1.15.5", "tag-names": ["prod", "net"]},
        labels={"team": "platform"},
    )
    assert data["id"].startswith("ws-")
    attrs = data["attributes"]
    assert attrs["terraform-version"] == "1.15.5"
    assert attrs["tag-names"] == ["net", "prod"] or attrs["tag-names"] == ["prod", "net"]
    assert attrs["labels"] == {"team": "platform"}
    assert attrs["execution-mode"] == "remote" and attrs["operations"] is True
    assert attrs["permissions"]["can-queue-run"] is True
    assert attrs["permissions"]["can-force-delete"] is True
    assert attrs["locked"] is False and attrs["resource-count"] == 0
    assert data["relationships"]["organization"]["data"] == {
        "type": "organizations",
        "id": "default",
    }
    assert data["relationships"]["current-state-version"]["data"] is None
    by_name = (await admin.get(f"{WS}/net")).json()["data"]
    by_id = (await admin.get(f"/api/v2/workspaces/{data['id']}")).json()["data"]
    assert by_name["id"] == by_id["id"] == data["id"]


async def test_update_by_id_and_name_and_operations_flag(admin: httpx.AsyncClient) -> None:
    data = await create(admin, "app")
    r = await admin.patch(f"/api/v2/workspaces/{data['id']}", json=ws_body(**{"auto-apply": True}))
    assert r.json()["data"]["attributes"]["auto-apply"] is True
    r = await admin.patch(f"{WS}/app", json=ws_body(operations=False))
    assert r.json()["data"]["attributes"]["execution-mode"] == "local"
    r = await admin.patch(f"{WS}/app", json=ws_body(name="app2", **{"tag-names": ["x"]}))
    assert r.json()["data"]["attributes"]["name"] == "app2"
    assert r.json()["data"]["attributes"]["tag-names"] == ["x"]
    assert (await admin.get(f"{WS}/app")).status_code == 404


async def test_validation_names_the_field(admin: httpx.AsyncClient) -> None:
    await create(admin, "taken")
    cases = [
        (ws_body(), 422, "/data/attributes/name"),
        (ws_body(name="bad name"), 422, "/data/attributes/name"),
        (ws_body(name="taken"), 409, "/data/attributes/name"),
        (ws_body(name="TAKEN"), 409, "/data/attributes/name"),
        (
            ws_body(name="v", **{"terraform-version": "one"}),
            422,
            "/data/attributes/terraform-version",
        ),
        (ws_body(name="m", **{"execution-mode": "cloud"}), 422, "/data/attributes/execution-mode"),
        (
            ws_body(name="d", **{"working-directory": "../etc"}),
            422,
            "/data/attributes/working-directory",
        ),
        (ws_body(name="t", **{"tag-names": ["Has Space"]}), 422, "/data/attributes/tag-names"),
        (ws_body(name="a", **{"auto-apply": "yes"}), 422, "/data/attributes/auto-apply"),
        (ws_body(name="l", labels={"k": 5}), 422, "/data/attributes/labels/k"),
        (ws_body(name="g", **{"execution-mode": "agent"}), 422, "/data/attributes/agent-pool-id"),
        (
            ws_body(name="vcs", **{"vcs-repo": {"identifier": "a/b"}}),
            422,
            "/data/attributes/vcs-repo",
        ),
    ]
    for body, status, pointer in cases:
        r = await admin.post(WS, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["errors"][0]["source"]["pointer"] == pointer, (body, r.text)
    listed = (await admin.get(WS)).json()["data"]
    assert [w["attributes"]["name"] for w in listed] == ["taken"]


async def test_constraints_and_latest_are_valid_versions(admin: httpx.AsyncClient) -> None:
    for i, version in enumerate(("latest", "~> 1.15", ">= 1.0, < 2.0", "1.15.5")):
        await create(admin, f"v{i}", **{"terraform-version": version})


async def test_unsupported_tag_binding_filter_is_refused_not_ignored(
    admin: httpx.AsyncClient,
) -> None:
    await create(admin, "one")
    r = await admin.get(
        WS, params={"filter[tagged][0][key]": "env", "filter[tagged][0][value]": "prod"}
    )
    assert r.status_code == 400 and "search[tags]" in r.json()["errors"][0]["detail"]


async def test_list_filters_and_pagination(admin: httpx.AsyncClient) -> None:
    await create(admin, "prod-net", **{"tag-names": ["prod", "net"]})
    await create(admin, "prod-app", **{"tag-names": ["prod", "app"]})
    await create(admin, "dev-app", **{"tag-names": ["dev", "app"]})

    async def names(**params: str) -> list[str]:
        r = await admin.get(WS, params=params)
        assert r.status_code == 200, r.text
        return [w["attributes"]["name"] for w in r.json()["data"]]

    assert await names() == ["dev-app", "prod-app", "prod-net"]
    assert await names(**{"search[name]": "PROD"}) == ["prod-app", "prod-net"]
    assert await names(**{"search[tags]": "prod,app"}) == ["prod-app"]
    assert await names(**{"search[tags]": "app", "search[exclude-tags]": "dev"}) == ["prod-app"]
    assert await names(**{"search[wildcard-name]": "*-app"}) == ["dev-app", "prod-app"]
    assert await names(**{"search[name]": "%"}) == []
    r = (await admin.get(WS, params={"page[size]": 2, "page[number]": 2})).json()
    assert [w["attributes"]["name"] for w in r["data"]] == ["prod-net"]
    assert r["meta"]["pagination"]["total-count"] == 3
    assert r["meta"]["pagination"]["next-page"] is None


async def test_tags_relationship(admin: httpx.AsyncClient) -> None:
    data = await create(admin, "tagged", **{"tag-names": ["a"]})
    url = f"/api/v2/workspaces/{data['id']}/relationships/tags"
    body = {"data": [{"type": "tags", "attributes": {"name": "b"}}]}
    assert (await admin.post(url, json=body)).status_code == 204
    assert [t["id"] for t in (await admin.get(url)).json()["data"]] == ["a", "b"]
    assert (
        await admin.request(
            "DELETE", url, json={"data": [{"type": "tags", "attributes": {"name": "a"}}]}
        )
    ).status_code == 204
    assert [t["id"] for t in (await admin.get(url)).json()["data"]] == ["b"]
    r = await admin.post(url, json={"data": [{"type": "tags", "attributes": {}}]})
    assert (
        r.status_code == 422
        and r.json()["errors"][0]["source"]["pointer"] == "/data/0/attributes/name"
    )


async def test_exactly_one_of_many_concurrent_lockers_wins(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    data = await create(admin, "contended")
    lockers = [await make_user(app, organization="default") for _ in range(6)]
    clients = [u.client(app) for u in lockers]
    try:
        results = await asyncio.gather(
            *(
                c.post(
                    f"/api/v2/workspaces/{data['id']}/actions/lock",
                    json={"data": {"type": "", "attributes": {"reason": f"r{i}"}}},
                )
                for i, c in enumerate(clients)
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 409, 409, 409, 409, 409]
    winner = next(i for i, r in enumerate(results) if r.status_code == 200)
    shown = (await admin.get(f"/api/v2/workspaces/{data['id']}")).json()["data"]
    assert shown["attributes"]["locked"] is True
    assert shown["attributes"]["locked-reason"] == f"r{winner}"
    assert shown["relationships"]["locked-by"]["data"] == {
        "type": "users",
        "id": lockers[winner].user_id,
    }


async def test_only_holder_unlocks_admin_force_unlocks(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    data = await create(admin, "held")
    base = f"/api/v2/workspaces/{data['id']}/actions"
    alice = await make_user(app, organization="default")
    bob = await make_user(app, organization="default")
    async with alice.client(app) as a, bob.client(app) as b:
        assert (await a.post(f"{base}/lock")).status_code == 200
        r = await b.post(f"{base}/unlock")
        assert r.status_code == 409 and "locked by another user" in r.json()["errors"][0]["detail"]
        assert (await b.post(f"{base}/force-unlock")).status_code == 403
        assert (await admin.post(f"{base}/force-unlock")).status_code == 200
        assert (await a.post(f"{base}/unlock")).status_code == 409  # already unlocked
        assert (await a.post(f"{base}/lock")).status_code == 200
        assert (await a.post(f"{base}/unlock")).status_code == 200


async def test_member_writes_but_does_not_administer(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    data = await create(admin, "shared")
    member = await make_user(app, organization="default")
    async with member.client(app) as c:
        shown = (await c.get(f"/api/v2/workspaces/{data['id']}")).json()["data"]["attributes"]
        assert shown["permissions"]["can-lock"] is True
        assert shown["permissions"]["can-update"] is False
        assert (
            await c.patch(f"/api/v2/workspaces/{data['id']}", json=ws_body(description="x"))
        ).status_code == 403
        assert (await c.delete(f"/api/v2/workspaces/{data['id']}")).status_code == 403
        created = await c.post(WS, json=ws_body(name="mine"))
        assert created.status_code == 201
        # Its creator administers it (terraform PATCHes terraform-version right after).
        mine = created.json()["data"]
        assert mine["attributes"]["permissions"]["can-update"] is True
        r = await c.patch(
            f"/api/v2/workspaces/{mine['id']}", json=ws_body(**{"terraform-version": "1.15.5"})
        )
        assert r.status_code == 200


async def test_other_organization_sees_404(app: FastAPI, admin: httpx.AsyncClient) -> None:
    data = await create(admin, "private")
    await make_org(app, "other")
    outsider = await make_user(app, organization="other", role="owner")
    async with outsider.client(app) as c:
        assert (await c.get(f"/api/v2/workspaces/{data['id']}")).status_code == 404
        assert (await c.get(f"{WS}/private")).status_code == 404
        assert (await c.get(WS)).status_code == 404
        assert (await c.post(f"/api/v2/workspaces/{data['id']}/actions/lock")).status_code == 404
        assert (await c.post(WS, json=ws_body(name="intruder"))).status_code == 404


async def test_delete_and_safe_delete(admin: httpx.AsyncClient) -> None:
    one = await create(admin, "one")
    await create(admin, "two")
    assert (
        await admin.post(f"/api/v2/workspaces/{one['id']}/actions/safe-delete")
    ).status_code == 204
    assert (await admin.get(f"/api/v2/workspaces/{one['id']}")).status_code == 404
    assert (await admin.delete(f"{WS}/two")).status_code == 204
    assert (await admin.get(f"{WS}/two")).status_code == 404


async def test_remote_state_consumers(admin: httpx.AsyncClient) -> None:
    producer = await create(admin, "producer")
    consumer = await create(admin, "consumer")
    url = f"/api/v2/workspaces/{producer['id']}/relationships/remote-state-consumers"
    body = {"data": [{"type": "workspaces", "id": consumer["id"]}]}
    assert (await admin.post(url, json=body)).status_code == 204
    assert (await admin.post(url, json=body)).status_code == 204  # idempotent
    listed = (await admin.get(url)).json()
    assert [w["id"] for w in listed["data"]] == [consumer["id"]]
    r = await admin.post(url, json={"data": [{"type": "workspaces", "id": producer["id"]}]})
    assert r.status_code == 422
    r = await admin.post(url, json={"data": [{"type": "workspaces", "id": "ws-doesnotexist0000"}]})
    assert r.status_code == 404
    assert (await admin.request("DELETE", url, json=body)).status_code == 204
    assert (await admin.get(url)).json()["data"] == []
    assert (await admin.patch(url, json=body)).status_code == 204
    assert len((await admin.get(url)).json()["data"]) == 1
