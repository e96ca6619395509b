"""Organizations: CRUD, visibility, permissions and entitlements."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.factories import make_org, make_user


def org_body(**attrs: object) -> dict[str, object]:
    return {"data": {"type": "organizations", "attributes": attrs}}


async def test_fresh_install_has_default_org_owned_by_admin(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/api/v2/organizations/default")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["type"] == "organizations" and data["id"] == "default"
    assert data["attributes"]["permissions"]["can-update"] is True
    assert data["attributes"]["created-at"].endswith("Z")


async def test_create_read_update_delete(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/api/v2/organizations", json=org_body(name="acme", email="ops@acme.test"))
    assert r.status_code == 201, r.text
    assert r.json()["data"]["attributes"]["email"] == "ops@acme.test"
    r = await admin.patch(
        "/api/v2/organizations/acme",
        json=org_body(email="new@acme.test", **{"session-timeout": 60}),
    )
    assert r.status_code == 200
    attrs = r.json()["data"]["attributes"]
    assert attrs["email"] == "new@acme.test" and attrs["session-timeout"] == 60
    assert (await admin.get("/api/v2/organizations/acme")).json()["data"]["attributes"][
        "session-timeout"
    ] == 60
    assert (await admin.delete("/api/v2/organizations/acme")).status_code == 204
    assert (await admin.get("/api/v2/organizations/acme")).status_code == 404


async def test_rename_keeps_the_organization(admin: httpx.AsyncClient) -> None:
    await admin.post("/api/v2/organizations", json=org_body(name="old", email="a@b.test"))
    r = await admin.patch("/api/v2/organizations/old", json=org_body(name="new"))
    assert r.json()["data"]["id"] == "new"
    assert (await admin.get("/api/v2/organizations/old")).status_code == 404
    assert (await admin.get("/api/v2/organizations/new")).status_code == 200


async def test_duplicate_name_conflicts(admin: httpx.AsyncClient) -> None:
    body = org_body(name="dup", email="a@b.test")
    assert (await admin.post("/api/v2/organizations", json=body)).status_code == 201
    r = await admin.post("/api/v2/organizations", json=org_body(name="DUP", email="a@b.test"))
    assert r.status_code == 409
    assert r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/name"


async def test_several_organizations_side_by_side_list_paginates(admin: httpx.AsyncClient) -> None:
    for i in range(5):
        await admin.post("/api/v2/organizations", json=org_body(name=f"o{i}", email="a@b.test"))
    r = await admin.get("/api/v2/organizations", params={"page[size]": 2, "page[number]": 2})
    body = r.json()
    assert [o["id"] for o in body["data"]] == ["o1", "o2"]
    page = body["meta"]["pagination"]
    assert page == {
        "current-page": 2,
        "page-size": 2,
        "prev-page": 1,
        "next-page": 3,
        "total-pages": 3,
        "total-count": 6,
    }
    assert "page%5Bnumber%5D=3" in body["links"]["next"]


async def test_member_sees_only_own_orgs_and_cannot_manage(app: FastAPI) -> None:
    await make_org(app, "other")
    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as c:
        listed = (await c.get("/api/v2/organizations")).json()["data"]
        assert [o["id"] for o in listed] == ["default"]
        assert (await c.get("/api/v2/organizations/other")).status_code == 404
        shown = (await c.get("/api/v2/organizations/default")).json()["data"]
        assert shown["attributes"]["permissions"]["can-update"] is False
        r = await c.patch("/api/v2/organizations/default", json=org_body(email="x@y.test"))
        assert r.status_code == 403
        assert (await c.delete("/api/v2/organizations/default")).status_code == 403
        r = await c.post("/api/v2/organizations", json=org_body(name="mine", email="a@b.test"))
        assert r.status_code == 403


async def test_other_orgs_owner_gets_404_not_403(app: FastAPI) -> None:
    await make_org(app, "theirs")
    outsider = await make_user(app, organization="theirs", role="owner")
    async with outsider.client(app) as c:
        for method in ("GET", "PATCH", "DELETE"):
            r = await c.request(
                method, "/api/v2/organizations/default", json=org_body(email="a@b.test")
            )
            assert r.status_code == 404, method
        assert (await c.get("/api/v2/organizations/default/entitlement-set")).status_code == 404


async def test_entitlements_claim_only_what_terrapod_does(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/api/v2/organizations/default/entitlement-set")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["type"] == "entitlement-sets"
    # Terrapod runs plans and applies itself; each workspace's execution mode decides.
    assert data["attributes"]["operations"] is True
    assert data["attributes"]["run-tasks"] is True
    assert data["attributes"]["sentinel"] is False


async def test_permissions_say_who_manages_variable_sets_and_run_tasks(app: FastAPI) -> None:
    owner = await make_user(app, organization="default", role="owner")
    member = await make_user(app, organization="default", role="member")
    seen = {}
    for name, actor in (("owner", owner), ("member", member)):
        async with actor.client(app) as c:
            shown = (await c.get("/api/v2/organizations/default")).json()["data"]
        permissions = shown["attributes"]["permissions"]
        seen[name] = {
            key: permissions[key]
            for key in (
                "can-manage-varsets",
                "can-read-varsets",
                "can-manage-run-tasks",
                "can-read-run-tasks",
            )
        }
    assert seen["owner"] == dict.fromkeys(seen["owner"], True)
    assert seen["member"] == {
        "can-manage-varsets": False,
        "can-read-varsets": True,
        "can-manage-run-tasks": False,
        "can-read-run-tasks": False,
    }


async def test_create_validates_fields(admin: httpx.AsyncClient) -> None:
    cases = [
        (org_body(email="a@b.test"), "/data/attributes/name"),
        (org_body(name="has space", email="a@b.test"), "/data/attributes/name"),
        (org_body(name="ok", email="not-an-email"), "/data/attributes/email"),
        (org_body(name=12, email="a@b.test"), "/data/attributes/name"),
        (
            org_body(name="ok", email="a@b.test", **{"session-timeout": "soon"}),
            "/data/attributes/session-timeout",
        ),
        (
            org_body(name="ok", email="a@b.test", **{"default-execution-mode": "cloud"}),
            "/data/attributes/default-execution-mode",
        ),
    ]
    for body, pointer in cases:
        r = await admin.post("/api/v2/organizations", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["source"]["pointer"] == pointer, body
    assert (await admin.get("/api/v2/organizations/ok")).status_code == 404
