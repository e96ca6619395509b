"""Variable sets: TFE shapes, names, set variables (the workspace variables' rules, sensitive
values write-only and encrypted), workspace assignments, permissions, organization
isolation, and the precedence of what a run receives."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidTag
from fastapi import FastAPI
from sqlalchemy import func, select

from terrapod.crypto import SecretBox
from terrapod.variables.service import VariableValue
from terrapod.varsets import service
from terrapod.varsets.models import VariableSetVariable, VariableSetWorkspace
from tests.factories import make_org, make_user

ORG_SETS = "/api/v2/organizations/default/varsets"
SECRET = "hunter2-do-not-leak"


def set_body(
    name: str | None = None,
    *,
    workspaces: list[str] | None = None,
    variables: list[dict[str, Any]] | None = None,
    **attrs: Any,
) -> dict[str, Any]:
    if name is not None:
        attrs["name"] = name
    data: dict[str, Any] = {"type": "varsets", "attributes": attrs}
    relationships: dict[str, Any] = {}
    if workspaces is not None:
        relationships["workspaces"] = {
            "data": [{"type": "workspaces", "id": w} for w in workspaces]
        }
    if variables is not None:
        relationships["vars"] = {"data": [{"type": "vars", "attributes": v} for v in variables]}
    if relationships:
        data["relationships"] = relationships
    return {"data": data}


def var_body(**attrs: Any) -> dict[str, Any]:
    return {"data": {"type": "vars", "attributes": attrs}}


def ws_list(*ids: str) -> dict[str, Any]:
    return {"data": [{"type": "workspaces", "id": i} for i in ids]}


def vars_path(varset: str, var: str | None = None) -> str:
    return f"/api/v2/varsets/{varset}/relationships/vars" + (f"/{var}" if var else "")


def error(r: httpx.Response, status: int) -> tuple[str, str | None]:
    assert r.status_code == status, r.text
    first = r.json()["errors"][0]
    return first["detail"], first.get("source", {}).get("pointer")


async def new_workspace(client: httpx.AsyncClient, name: str, org: str = "default") -> str:
    r = await client.post(
        f"/api/v2/organizations/{org}/workspaces",
        json={"data": {"type": "workspaces", "attributes": {"name": name}}},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def new_set(client: httpx.AsyncClient, name: str, **kw: Any) -> dict[str, Any]:
    org = kw.pop("org", "default")
    r = await client.post(f"/api/v2/organizations/{org}/varsets", json=set_body(name, **kw))
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def new_var(client: httpx.AsyncClient, varset: str, **attrs: Any) -> dict[str, Any]:
    r = await client.post(vars_path(varset), json=var_body(**attrs))
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def run_values(app: FastAPI, ws: str) -> list[VariableValue]:
    async with app.state.sessionmaker() as session:
        return await service.values_for_run(session, app.state.secret_box, ws)


async def value_of(app: FastAPI, ws: str, key: str, category: str = "terraform") -> str | None:
    found = [v.value for v in await run_values(app, ws) if (v.category, v.key) == (category, key)]
    assert len(found) <= 1, found
    return found[0] if found else None


# -- shapes and the happy path -------------------------------------------------------------


async def test_create_read_list_update_delete_in_tfe_shape(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin, "app")
    r = await admin.post(
        ORG_SETS,
        json=set_body(
            "aws",
            description="AWS credentials",
            workspaces=[ws],
            variables=[{"key": "region", "value": "eu-west-1", "category": "terraform"}],
        ),
    )
    assert r.status_code == 201 and r.headers["content-type"] == "application/vnd.api+json"
    data = r.json()["data"]
    assert data["type"] == "varsets" and data["id"].startswith("varset-")
    attrs = data["attributes"]
    assert {k: attrs[k] for k in ("name", "description", "global", "priority")} == {
        "name": "aws",
        "description": "AWS credentials",
        "global": False,
        "priority": False,
    }
    assert (attrs["var-count"], attrs["workspace-count"], attrs["project-count"]) == (1, 1, 0)
    assert attrs["created-at"].endswith("Z") and attrs["updated-at"].endswith("Z")
    rel = data["relationships"]
    assert rel["organization"] == {"data": {"type": "organizations", "id": "default"}}
    assert rel["parent"] == rel["organization"]
    assert rel["workspaces"] == {"data": [{"type": "workspaces", "id": ws}]}
    assert [v["type"] for v in rel["vars"]["data"]] == ["vars"]
    assert rel["projects"] == {"data": []}
    assert data["links"] == {"self": f"/api/v2/varsets/{data['id']}"}

    shown = (await admin.get(f"/api/v2/varsets/{data['id']}")).json()
    assert shown == {"data": data}
    listed = (await admin.get(ORG_SETS)).json()
    assert listed["data"] == [data] and listed["meta"]["pagination"]["total-count"] == 1

    r = await admin.patch(
        f"/api/v2/varsets/{data['id']}", json=set_body(description="changed", priority=True)
    )
    assert r.status_code == 200
    changed = r.json()["data"]["attributes"]
    assert changed["description"] == "changed" and changed["priority"] is True
    assert changed["name"] == "aws" and changed["workspace-count"] == 1  # untouched
    # PUT is accepted as TFE accepts it: only what is sent changes.
    r = await admin.put(f"/api/v2/varsets/{data['id']}", json=set_body(name="aws-2"))
    assert r.status_code == 200 and r.json()["data"]["attributes"]["priority"] is True

    assert (await admin.delete(f"/api/v2/varsets/{data['id']}")).status_code == 204
    assert (await admin.get(f"/api/v2/varsets/{data['id']}")).status_code == 404
    assert (await admin.get(ORG_SETS)).json()["data"] == []


async def test_deleting_a_set_deletes_its_variables_and_assignments(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin, "app")
    s = await new_set(admin, "s", workspaces=[ws], variables=[{"key": "a", "category": "env"}])
    assert (await admin.delete(f"/api/v2/varsets/{s['id']}")).status_code == 204
    async with app.state.sessionmaker() as session:
        for model in (VariableSetVariable, VariableSetWorkspace):
            assert (await session.execute(select(func.count()).select_from(model))).scalar() == 0
    assert await run_values(app, ws) == []


# -- names and attributes ------------------------------------------------------------------


async def test_name_is_required_unique_and_bounded(app: FastAPI, admin: httpx.AsyncClient) -> None:
    await new_set(admin, "Shared")
    cases: list[tuple[dict[str, Any], int, str]] = [
        (set_body(description="no name"), 422, "/data/attributes/name"),
        (set_body(""), 422, "/data/attributes/name"),
        (set_body("  "), 422, "/data/attributes/name"),
        ({"data": {"type": "varsets", "attributes": {"name": None}}}, 422, "/data/attributes/name"),
        (set_body("x" * 256), 422, "/data/attributes/name"),
        (set_body("ok", description="d" * 1025), 422, "/data/attributes/description"),
        (set_body("ok", **{"global": None}), 422, "/data/attributes/global"),
        (set_body("ok", priority="yes"), 422, "/data/attributes/priority"),
        (set_body("Shared"), 409, "/data/attributes/name"),
        (set_body("shared"), 409, "/data/attributes/name"),  # names differ only in case
    ]
    for body, status, pointer in cases:
        detail, got = error(await admin.post(ORG_SETS, json=body), status)
        assert got == pointer, (body, detail)
        assert pointer.rsplit("/", 1)[1] in detail
    assert [s["attributes"]["name"] for s in (await admin.get(ORG_SETS)).json()["data"]] == [
        "Shared"
    ]
    # Renaming onto a taken name is refused too; onto itself is fine.
    other = await new_set(admin, "other")
    r = await admin.patch(f"/api/v2/varsets/{other['id']}", json=set_body("SHARED"))
    assert error(r, 409)[1] == "/data/attributes/name"
    r = await admin.patch(f"/api/v2/varsets/{other['id']}", json=set_body("other"))
    assert r.status_code == 200
    # The same name in another organization is fine.
    org = await make_org(app)
    await new_set(admin, "Shared", org=org)


async def test_list_filters_by_q_and_paginates(admin: httpx.AsyncClient) -> None:
    for name in ("aws-prod", "aws-dev", "gcp", "AWS-legacy", "100%_off"):
        await new_set(admin, name)
    names = [s["attributes"]["name"] for s in (await admin.get(ORG_SETS)).json()["data"]]
    assert sorted(names) == sorted(["aws-prod", "aws-dev", "gcp", "AWS-legacy", "100%_off"])
    r = await admin.get(ORG_SETS, params={"q": "aws"})
    assert sorted(s["attributes"]["name"] for s in r.json()["data"]) == [
        "AWS-legacy",
        "aws-dev",
        "aws-prod",
    ]
    # LIKE wildcards in q are literal.
    r = await admin.get(ORG_SETS, params={"q": "%_"})
    assert [s["attributes"]["name"] for s in r.json()["data"]] == ["100%_off"]
    page = (await admin.get(ORG_SETS, params={"page[size]": "2", "page[number]": "2"})).json()
    assert len(page["data"]) == 2
    assert page["meta"]["pagination"] == {
        "current-page": 2,
        "page-size": 2,
        "prev-page": 1,
        "next-page": 3,
        "total-pages": 3,
        "total-count": 5,
    }
    assert error(await admin.get(ORG_SETS, params={"page[size]": "0"}), 400)
    assert error(await admin.get("/api/v2/organizations/nope/varsets"), 404)


# -- variables of a set ----------------------------------------------------------------------


async def test_set_variables_crud_in_tfe_shape(admin: httpx.AsyncClient) -> None:
    s = await new_set(admin, "s")
    v = await new_var(admin, s["id"], key="region", value="eu-west-1", category="terraform")
    assert v["type"] == "vars" and v["id"].startswith("var-")
    assert v["attributes"] == {
        "key": "region",
        "value": "eu-west-1",
        "description": None,
        "category": "terraform",
        "hcl": False,
        "sensitive": False,
        "version-id": v["attributes"]["version-id"],
        "created-at": v["attributes"]["created-at"],
    }
    assert v["relationships"] == {
        "varset": {
            "data": {"type": "varsets", "id": s["id"]},
            "links": {"related": f"/api/v2/varsets/{s['id']}"},
        }
    }
    assert v["links"] == {"self": f"/api/v2/varsets/{s['id']}/relationships/vars/{v['id']}"}
    assert (await admin.get(vars_path(s["id"], v["id"]))).json() == {"data": v}
    env = await new_var(admin, s["id"], key="TF_LOG", value="INFO", category="env")
    listed = (await admin.get(vars_path(s["id"]))).json()
    assert listed["data"] == [v, env]  # terraform before env
    assert listed["meta"]["pagination"]["total-count"] == 2

    r = await admin.patch(vars_path(s["id"], v["id"]), json=var_body(value="eu-central-1"))
    assert r.status_code == 200
    updated = r.json()["data"]["attributes"]
    assert updated["value"] == "eu-central-1"
    assert updated["version-id"] != v["attributes"]["version-id"]
    shown = (await admin.get(f"/api/v2/varsets/{s['id']}")).json()["data"]
    assert shown["attributes"]["var-count"] == 2
    assert (await admin.delete(vars_path(s["id"], v["id"]))).status_code == 204
    assert (await admin.get(vars_path(s["id"], v["id"]))).status_code == 404
    assert [x["id"] for x in (await admin.get(vars_path(s["id"]))).json()["data"]] == [env["id"]]


async def test_set_variables_follow_the_workspace_variable_rules(
    admin: httpx.AsyncClient,
) -> None:
    s = await new_set(admin, "s")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"key": "1abc", "category": "terraform"}, "/data/attributes/key"),
        ({"key": "a=b", "category": "env"}, "/data/attributes/key"),
        ({"key": "x" * 129, "category": "env"}, "/data/attributes/key"),
        ({"value": "v", "category": "terraform"}, "/data/attributes/key"),
        ({"key": "k"}, "/data/attributes/category"),
        ({"key": "k", "category": "policy-set"}, "/data/attributes/category"),
        ({"key": "k", "category": "env", "hcl": True}, "/data/attributes/hcl"),
        ({"key": "k", "category": "env", "sensitive": None}, "/data/attributes/sensitive"),
        ({"key": "k", "category": "env", "description": "d" * 513}, "/data/attributes/description"),
    ]
    for attrs, pointer in cases:
        detail, got = error(await admin.post(vars_path(s["id"]), json=var_body(**attrs)), 422)
        assert got == pointer, (attrs, detail)
    await new_var(admin, s["id"], key="region", category="terraform")
    detail, pointer = error(
        await admin.post(vars_path(s["id"]), json=var_body(key="region", category="terraform")),
        422,
    )
    assert detail.startswith("Key has already been taken") and pointer == "/data/attributes/key"
    # The same key in the other category is another variable.
    other = await new_var(admin, s["id"], key="region", category="env")
    r = await admin.patch(vars_path(s["id"], other["id"]), json=var_body(category="terraform"))
    assert error(r, 422)[1] == "/data/attributes/key"
    assert (await admin.get(vars_path(s["id"]))).json()["meta"]["pagination"]["total-count"] == 2


async def test_sensitive_set_variable_is_never_returned_and_is_encrypted_at_rest(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin, "app")
    s = await new_set(admin, "secrets", workspaces=[ws])
    r = await admin.post(
        vars_path(s["id"]),
        json=var_body(key="password", value=SECRET, category="terraform", sensitive=True),
    )
    assert r.status_code == 201
    var = r.json()["data"]
    assert var["attributes"]["value"] is None and var["attributes"]["sensitive"] is True
    responses = [
        r,
        await admin.get(vars_path(s["id"])),
        await admin.get(vars_path(s["id"], var["id"])),
        await admin.get(f"/api/v2/varsets/{s['id']}"),
        await admin.get(f"/api/v2/workspaces/{ws}/all-vars"),
        await admin.get(f"/api/v2/workspaces/{ws}/varsets"),
        await admin.patch(vars_path(s["id"], var["id"]), json=var_body(description="db")),
        await admin.patch(vars_path(s["id"], var["id"]), json=var_body(value=SECRET + "!")),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert SECRET not in response.text
        assert "v1:" not in response.text
    async with app.state.sessionmaker() as session:
        row = await session.get(VariableSetVariable, var["id"])
    assert row is not None and row.value is None and row.value_encrypted is not None
    assert SECRET not in row.value_encrypted
    box: SecretBox = app.state.secret_box
    context = f"varset-variable:{var['id']}"
    assert box.decrypt(row.value_encrypted, context=context) == (SECRET + "!").encode()
    with pytest.raises(InvalidTag):
        box.decrypt(row.value_encrypted, context="varset-variable:var-AAAAAAAAAAAAAAAA")
    # A run receives the value; its repr never shows it.
    values = await run_values(app, ws)
    assert [(v.key, v.value, v.sensitive) for v in values] == [("password", SECRET + "!", True)]
    assert SECRET not in repr(values)
    # It cannot be made non-sensitive, and an update without a value keeps it.
    r = await admin.patch(vars_path(s["id"], var["id"]), json=var_body(sensitive=False))
    assert error(r, 422)[1] == "/data/attributes/sensitive"
    r = await admin.patch(vars_path(s["id"], var["id"]), json=var_body(key="pw"))
    assert r.status_code == 200
    assert await value_of(app, ws, "pw") == SECRET + "!"


async def test_a_variable_can_become_sensitive_and_its_value_is_then_sealed(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin, "app")
    s = await new_set(admin, "s", workspaces=[ws])
    v = await new_var(admin, s["id"], key="token", value=SECRET, category="env")
    r = await admin.patch(vars_path(s["id"], v["id"]), json=var_body(sensitive=True))
    assert r.status_code == 200 and r.json()["data"]["attributes"]["value"] is None
    async with app.state.sessionmaker() as session:
        row = await session.get(VariableSetVariable, v["id"])
    assert row is not None and row.value is None and row.value_encrypted
    assert await value_of(app, ws, "token", "env") == SECRET


async def test_nested_variables_are_checked_and_errors_point_into_the_relationship(
    admin: httpx.AsyncClient,
) -> None:
    bad = set_body(
        "s", variables=[{"key": "ok", "category": "env"}, {"key": "1x", "category": "terraform"}]
    )
    detail, pointer = error(await admin.post(ORG_SETS, json=bad), 422)
    assert pointer == "/data/relationships/vars/data/1/attributes/key" and "1x" in detail
    bad = set_body("s", variables=[{"key": 5, "category": "env"}])
    detail, pointer = error(await admin.post(ORG_SETS, json=bad), 422)
    assert pointer == "/data/relationships/vars/data/0/attributes/key"
    dup = set_body("s", variables=[{"key": "a", "category": "env"}] * 2)
    assert error(await admin.post(ORG_SETS, json=dup), 422)[1] == (
        "/data/relationships/vars/data/1/attributes/key"
    )
    r = await admin.post(
        ORG_SETS,
        json={
            "data": {
                "type": "varsets",
                "attributes": {"name": "s"},
                "relationships": {"vars": {"data": "x"}},
            }
        },
    )
    assert error(r, 422)[1] == "/data/relationships/vars"
    # Nothing was half-written.
    assert (await admin.get(ORG_SETS)).json()["data"] == []
    # PATCH adds complete definitions, as TFE's update does.
    s = await new_set(admin, "s")
    r = await admin.patch(
        f"/api/v2/varsets/{s['id']}", json=set_body(variables=[{"key": "b", "category": "env"}])
    )
    assert r.status_code == 200 and r.json()["data"]["attributes"]["var-count"] == 1


# -- global sets and assignments --------------------------------------------------------------


async def test_global_sets_cannot_hold_conflicting_variables(admin: httpx.AsyncClient) -> None:
    g1 = await new_set(admin, "g1", **{"global": True})
    await new_var(admin, g1["id"], key="region", value="a", category="terraform")
    g2 = await new_set(admin, "g2", **{"global": True})
    r = await admin.post(vars_path(g2["id"]), json=var_body(key="region", category="terraform"))
    detail, pointer = error(r, 422)
    assert "'g1'" in detail and pointer == "/data/attributes/key"
    # Another category, or a non-global set, is no conflict.
    await new_var(admin, g2["id"], key="region", category="env")
    plain = await new_set(admin, "plain")
    await new_var(admin, plain["id"], key="region", category="terraform")
    # ... until the set becomes global; then nothing changes.
    r = await admin.patch(f"/api/v2/varsets/{plain['id']}", json=set_body(**{"global": True}))
    assert error(r, 422)[1] == "/data/attributes/key"
    shown = (await admin.get(f"/api/v2/varsets/{plain['id']}")).json()["data"]["attributes"]
    assert shown["global"] is False
    # Creating a global set with a conflicting variable is refused whole.
    r = await admin.post(
        ORG_SETS,
        json=set_body(
            "g3", variables=[{"key": "region", "category": "terraform"}], **{"global": True}
        ),
    )
    assert error(r, 422)[1] == "/data/relationships/vars/data/0/attributes/key"
    names = {s["attributes"]["name"] for s in (await admin.get(ORG_SETS)).json()["data"]}
    assert names == {"g1", "g2", "plain"}


async def test_assignments_are_idempotent_and_stay_in_the_organization(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    a, b = await new_workspace(admin, "a"), await new_workspace(admin, "b")
    s = await new_set(admin, "s")
    path = f"/api/v2/varsets/{s['id']}/relationships/workspaces"
    assert (await admin.post(path, json=ws_list(a))).status_code == 204
    assert (await admin.post(path, json=ws_list(a, b, a))).status_code == 204  # again: fine
    shown = (await admin.get(f"/api/v2/varsets/{s['id']}")).json()["data"]
    assert sorted(w["id"] for w in shown["relationships"]["workspaces"]["data"]) == sorted([a, b])
    assert shown["attributes"]["workspace-count"] == 2

    other_org = await make_org(app)
    foreign = await new_workspace(admin, "foreign", org=other_org)
    for ids in ([foreign], ["ws-AAAAAAAAAAAAAAAA"], ["not-an-id"]):
        detail, _ = error(await admin.post(path, json=ws_list(a, *ids)), 404)
        assert ids[0] in detail
    detail, pointer = error(await admin.post(path, json={"data": [{"type": "runs", "id": a}]}), 422)
    assert pointer == "/data/0/type"
    assert error(await admin.post(path, json={"data": "x"}), 400)[1] == "/data"

    assert (await admin.request("DELETE", path, json=ws_list(a))).status_code == 204
    assert (await admin.request("DELETE", path, json=ws_list(a))).status_code == 204
    shown = (await admin.get(f"/api/v2/varsets/{s['id']}")).json()["data"]
    assert shown["relationships"]["workspaces"]["data"] == [{"type": "workspaces", "id": b}]


async def test_global_sets_have_no_workspace_list(admin: httpx.AsyncClient) -> None:
    a = await new_workspace(admin, "a")
    g = await new_set(admin, "g", **{"global": True})
    path = f"/api/v2/varsets/{g['id']}/relationships/workspaces"
    assert error(await admin.post(path, json=ws_list(a)), 422)[0].startswith("a global")
    r = await admin.post(ORG_SETS, json=set_body("g2", workspaces=[a], **{"global": True}))
    assert error(r, 422)[1] == "/data/relationships/workspaces"
    # Making a set global clears its workspaces (it applies to all of them now).
    s = await new_set(admin, "s", workspaces=[a])
    r = await admin.patch(f"/api/v2/varsets/{s['id']}", json=set_body(**{"global": True}))
    assert r.status_code == 200
    assert r.json()["data"]["relationships"]["workspaces"] == {"data": []}


async def test_update_with_workspaces_replaces_them(admin: httpx.AsyncClient) -> None:
    a, b = await new_workspace(admin, "a"), await new_workspace(admin, "b")
    g = await new_set(admin, "s", **{"global": True})
    # pytfe's update_workspaces: global false and the complete list, in one PATCH.
    r = await admin.patch(
        f"/api/v2/varsets/{g['id']}", json=set_body(workspaces=[b], **{"global": False})
    )
    assert r.status_code == 200
    assert r.json()["data"]["relationships"]["workspaces"]["data"] == [
        {"type": "workspaces", "id": b}
    ]
    r = await admin.patch(f"/api/v2/varsets/{g['id']}", json=set_body(workspaces=[a]))
    assert [w["id"] for w in r.json()["data"]["relationships"]["workspaces"]["data"]] == [a]
    r = await admin.patch(f"/api/v2/varsets/{g['id']}", json=set_body(workspaces=[]))
    assert r.json()["data"]["relationships"]["workspaces"]["data"] == []


async def test_workspace_lists_its_sets_and_the_global_ones(admin: httpx.AsyncClient) -> None:
    a, b = await new_workspace(admin, "a"), await new_workspace(admin, "b")
    await new_set(admin, "mine", workspaces=[a])
    await new_set(admin, "theirs", workspaces=[b])
    await new_set(admin, "all", **{"global": True})
    await new_set(admin, "none")
    r = await admin.get(f"/api/v2/workspaces/{a}/varsets")
    assert [s["attributes"]["name"] for s in r.json()["data"]] == ["all", "mine"]
    assert r.json()["meta"]["pagination"]["total-count"] == 2
    r = await admin.get(f"/api/v2/workspaces/{a}/varsets", params={"q": "MI"})
    assert [s["attributes"]["name"] for s in r.json()["data"]] == ["mine"]
    assert error(await admin.get("/api/v2/workspaces/ws-AAAAAAAAAAAAAAAA/varsets"), 404)


async def test_deleting_a_workspace_or_organization_removes_its_assignments(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    a, b = await new_workspace(admin, "a"), await new_workspace(admin, "b")
    s = await new_set(admin, "s", workspaces=[a, b])
    assert (await admin.delete(f"/api/v2/workspaces/{a}")).status_code == 204
    shown = (await admin.get(f"/api/v2/varsets/{s['id']}")).json()["data"]
    assert shown["relationships"]["workspaces"]["data"] == [{"type": "workspaces", "id": b}]

    org = await make_org(app)
    ws = await new_workspace(admin, "w", org=org)
    doomed = await new_set(
        admin, "s", org=org, workspaces=[ws], variables=[{"key": "k", "category": "env"}]
    )
    assert (await admin.delete(f"/api/v2/organizations/{org}")).status_code == 204
    assert (await admin.get(f"/api/v2/varsets/{doomed['id']}")).status_code == 404
    async with app.state.sessionmaker() as session:
        left = await session.execute(
            select(func.count())
            .select_from(VariableSetVariable)
            .where(VariableSetVariable.varset_id == doomed["id"])
        )
        assert left.scalar() == 0


# -- permissions and isolation ------------------------------------------------------------------


async def test_members_read_and_owners_manage(app: FastAPI, admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin, "app")
    s = await new_set(admin, "s", workspaces=[ws])
    v = await new_var(admin, s["id"], key="region", value="r", category="terraform")
    member = await make_user(app, organization="default", role="member")
    owner = await make_user(app, organization="default", role="owner")
    async with member.client(app) as c:
        for path in (
            ORG_SETS,
            f"/api/v2/varsets/{s['id']}",
            vars_path(s["id"]),
            vars_path(s["id"], v["id"]),
            f"/api/v2/workspaces/{ws}/varsets",
        ):
            assert (await c.get(path)).status_code == 200, path
        refusals = [
            await c.post(ORG_SETS, json=set_body("new")),
            await c.patch(f"/api/v2/varsets/{s['id']}", json=set_body(description="x")),
            await c.delete(f"/api/v2/varsets/{s['id']}"),
            await c.post(vars_path(s["id"]), json=var_body(key="k", category="env")),
            await c.patch(vars_path(s["id"], v["id"]), json=var_body(value="x")),
            await c.delete(vars_path(s["id"], v["id"])),
            await c.post(f"/api/v2/varsets/{s['id']}/relationships/workspaces", json=ws_list(ws)),
        ]
        for r in refusals:
            detail, _ = error(r, 403)
            assert "variable sets" in detail
    async with owner.client(app) as c:
        created = await c.post(ORG_SETS, json=set_body("owned"))
        assert created.status_code == 201
        assert (
            await c.post(vars_path(s["id"]), json=var_body(key="k", category="env"))
        ).status_code == 201
    # An organization token manages sets too (it administers every workspace).
    r = await admin.post("/api/v2/organizations/default/authentication-token")
    token = r.json()["data"]["attributes"]["token"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="https://terrapod.test",
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        assert (await c.post(ORG_SETS, json=set_body("by-token"))).status_code == 201
    assert await value_of(app, ws, "region") == "r"


async def test_other_organizations_sets_are_invisible(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    other = await make_org(app)
    theirs = await new_set(admin, "theirs", org=other)
    tv = await new_var(admin, theirs["id"], key="k", value="v", category="env")
    mine = await new_set(admin, "mine")
    outsider = await make_user(app, organization=other, role="owner")
    async with outsider.client(app) as c:
        for r in (
            await c.get(ORG_SETS),
            await c.get(f"/api/v2/varsets/{mine['id']}"),
            await c.get(vars_path(mine["id"])),
            await c.patch(f"/api/v2/varsets/{mine['id']}", json=set_body(description="x")),
            await c.delete(f"/api/v2/varsets/{mine['id']}"),
            await c.post(vars_path(mine["id"]), json=var_body(key="k", category="env")),
        ):
            assert error(r, 404)
        assert [
            s["id"] for s in (await c.get(f"/api/v2/organizations/{other}/varsets")).json()["data"]
        ] == [theirs["id"]]
    # A variable is found only through its own set.
    assert (await admin.get(vars_path(mine["id"], tv["id"]))).status_code == 404
    assert (
        await admin.patch(vars_path(mine["id"], tv["id"]), json=var_body(value="x"))
    ).status_code == 404
    # A set of one organization never reaches another's workspace, even when global.
    await admin.patch(f"/api/v2/varsets/{theirs['id']}", json=set_body(**{"global": True}))
    ws = await new_workspace(admin, "app")
    assert await run_values(app, ws) == []


async def test_anonymous_is_401(anon: httpx.AsyncClient) -> None:
    assert error(await anon.get(ORG_SETS), 401)
    assert error(await anon.post(ORG_SETS, json=set_body("x")), 401)


# -- what a run receives --------------------------------------------------------------------------


async def test_precedence_priority_set_workspace_assigned_set_global_set(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin, "app")
    tf = {"key": "size", "category": "terraform"}
    glob = await new_set(admin, "global", variables=[{**tf, "value": "global"}], **{"global": True})
    assert await value_of(app, ws, "size") == "global"
    assigned = await new_set(
        admin, "assigned", workspaces=[ws], variables=[{**tf, "value": "assigned"}]
    )
    assert await value_of(app, ws, "size") == "assigned"
    r = await admin.post(f"/api/v2/workspaces/{ws}/vars", json=var_body(**tf, value="workspace"))
    assert r.status_code == 201
    ws_var = r.json()["data"]["id"]
    assert await value_of(app, ws, "size") == "workspace"
    prio = await new_set(
        admin, "priority", workspaces=[ws], variables=[{**tf, "value": "priority"}], priority=True
    )
    assert await value_of(app, ws, "size") == "priority"
    # Only values from priority sets are enforced over the run's own variables.
    assert [(v.key, v.enforced) for v in await run_values(app, ws)] == [("size", True)]
    # A priority global set wins over a priority set applied to the workspace.
    r = await admin.patch(f"/api/v2/varsets/{glob['id']}", json=set_body(priority=True))
    assert r.status_code == 200
    assert await value_of(app, ws, "size") == "global"
    # And back down, one winner removed at a time.
    await admin.patch(f"/api/v2/varsets/{glob['id']}", json=set_body(priority=False))
    assert await value_of(app, ws, "size") == "priority"
    assert (await admin.delete(f"/api/v2/varsets/{prio['id']}")).status_code == 204
    assert await value_of(app, ws, "size") == "workspace"
    assert [(v.key, v.enforced) for v in await run_values(app, ws)] == [("size", False)]
    assert (await admin.delete(f"/api/v2/workspaces/{ws}/vars/{ws_var}")).status_code == 204
    assert await value_of(app, ws, "size") == "assigned"
    path = f"/api/v2/varsets/{assigned['id']}/relationships/workspaces"
    assert (await admin.request("DELETE", path, json=ws_list(ws))).status_code == 204
    assert await value_of(app, ws, "size") == "global"
    # The same key in the other category is another variable: both arrive.
    env = await new_set(
        admin, "env", workspaces=[ws], variables=[{"key": "size", "category": "env", "value": "e"}]
    )
    assert env
    assert [(v.category, v.key, v.value) for v in await run_values(app, ws)] == [
        ("terraform", "size", "global"),
        ("env", "size", "e"),
    ]


async def test_sets_of_one_level_are_resolved_by_name_in_code_point_order(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin, "app")
    tf = {"key": "size", "category": "terraform"}
    await new_set(admin, "b-set", workspaces=[ws], variables=[{**tf, "value": "b"}])
    await new_set(admin, "a-set", workspaces=[ws], variables=[{**tf, "value": "a"}])
    # "Z" (U+005A) sorts before "a" (U+0061) by code point, whatever the database collation.
    await new_set(admin, "Z-set", workspaces=[ws], variables=[{**tf, "value": "Z"}])
    assert await value_of(app, ws, "size") == "Z"
    await new_set(admin, "z-prio", workspaces=[ws], variables=[{**tf, "value": "z"}], priority=True)
    await new_set(admin, "y-prio", workspaces=[ws], variables=[{**tf, "value": "y"}], priority=True)
    assert await value_of(app, ws, "size") == "y"


async def test_all_vars_lists_what_a_run_receives(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin, "app")
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/vars",
        json=var_body(key="region", value="workspace", category="terraform"),
    )
    own = r.json()["data"]
    s = await new_set(
        admin,
        "s",
        workspaces=[ws],
        variables=[
            {"key": "region", "value": "set", "category": "terraform"},
            {"key": "TF_LOG", "value": "INFO", "category": "env"},
        ],
    )
    body = (await admin.get(f"/api/v2/workspaces/{ws}/all-vars")).json()
    assert "meta" not in body  # one document, as TFE's
    data = body["data"]
    assert [(v["attributes"]["key"], v["attributes"]["value"]) for v in data] == [
        ("region", "workspace"),
        ("TF_LOG", "INFO"),
    ]
    assert data[0] == own
    from_set = data[1]
    assert from_set["relationships"]["configurable"]["data"] == {"type": "workspaces", "id": ws}
    assert from_set["links"]["self"].startswith(f"/api/v2/varsets/{s['id']}/relationships/vars/")
    await admin.patch(f"/api/v2/varsets/{s['id']}", json=set_body(priority=True))
    data = (await admin.get(f"/api/v2/workspaces/{ws}/all-vars")).json()["data"]
    assert [v["attributes"]["value"] for v in data] == ["set", "INFO"]
