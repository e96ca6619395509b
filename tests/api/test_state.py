"""State versions: inline and uploaded content, succession rules, outputs, rollback."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from terrapod.access.principal import Principal
from terrapod.state.models import StateVersionOutput
from terrapod.workspaces import service as workspaces
from tests.factories import make_user
from tests.statefiles import create_body, md5, state

WS = "/api/v2/organizations/default/workspaces"


async def new_workspace(client: httpx.AsyncClient, name: str = "app", **attrs: object) -> str:
    r = await client.post(
        WS, json={"data": {"type": "workspaces", "attributes": {"name": name, **attrs}}}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def lock(client: httpx.AsyncClient, ws: str) -> None:
    assert (await client.post(f"/api/v2/workspaces/{ws}/actions/lock")).status_code == 200


async def push_inline(
    client: httpx.AsyncClient, ws: str, content: bytes, serial: int, **kw: object
) -> httpx.Response:
    return await client.post(
        f"/api/v2/workspaces/{ws}/state-versions", json=create_body(content, serial, **kw)
    )  # type: ignore[arg-type]


def sv_path(url: str) -> str:
    return url.split("https://terrapod.test", 1)[1]


async def test_creating_state_requires_the_lock(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    r = await push_inline(admin, ws, state(1), 1)
    assert r.status_code == 409 and "locked" in r.json()["errors"][0]["detail"]
    assert (await admin.get(f"/api/v2/workspaces/{ws}/current-state-version")).status_code == 404


async def test_inline_state_becomes_current_with_summary(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    await lock(admin, ws)
    content = state(1, outputs={"greeting": {"value": "hi", "type": "string"}}, resources=3)
    r = await push_inline(admin, ws, content, 1)
    assert r.status_code == 201, r.text
    sv = r.json()["data"]
    attrs = sv["attributes"]
    assert attrs["status"] == "finalized" and attrs["serial"] == 1 and attrs["size"] == len(content)
    assert attrs["hosted-state-upload-url"] is None
    assert (
        attrs["resources"]
        == [
            {
                "name": f"r{i}",
                "type": "terraform_data",
                "count": 1,
                "module": "root",
                "provider": 'provider["terraform.io/builtin/terraform"]',
            }
            for i in range(3)
        ]
        or len(attrs["resources"]) == 3
    )
    assert attrs["modules"] == {"root": {"terraform_data": 3}}
    current = (await admin.get(f"/api/v2/workspaces/{ws}/current-state-version")).json()["data"]
    assert current["id"] == sv["id"]
    shown = (await admin.get(f"/api/v2/workspaces/{ws}")).json()["data"]
    assert shown["attributes"]["resource-count"] == 3
    assert shown["relationships"]["current-state-version"]["data"]["id"] == sv["id"]
    # Both the signed URL (no auth) and the authenticated download give the bytes back.
    dl = await admin.get(sv_path(attrs["hosted-state-download-url"]), headers={"Authorization": ""})
    assert dl.content == content
    assert (await admin.get(f"/api/v2/state-versions/{sv['id']}/download")).content == content
    outs = (await admin.get(f"/api/v2/workspaces/{ws}/current-state-version-outputs")).json()[
        "data"
    ]
    assert [(o["attributes"]["name"], o["attributes"]["value"]) for o in outs] == [
        ("greeting", "hi")
    ]


async def test_succession_rules(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    await lock(admin, ws)
    assert (await push_inline(admin, ws, state(5), 5)).status_code == 201
    r = await push_inline(admin, ws, state(5), 5)
    assert r.status_code == 409 and "serial" in r.json()["errors"][0]["detail"]
    r = await push_inline(admin, ws, state(6, "other"), 6, lineage="other")
    assert r.status_code == 409 and "lineage" in r.json()["errors"][0]["detail"]
    r = await push_inline(admin, ws, state(1, "other"), 1, lineage="other", force=True)
    assert r.status_code == 201
    r = await push_inline(admin, ws, state(7, "other"), 7, lineage="other", md5sum="0" * 32)
    assert (
        r.status_code == 422
        and r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/md5"
    )
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/state-versions",
        json={
            "data": {
                "type": "state-versions",
                "attributes": {"serial": 9, "md5": md5(b"x"), "state": "!!notbase64"},
            }
        },
    )
    assert (
        r.status_code == 422
        and r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/state"
    )
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/state-versions",
        json={
            "data": {"type": "state-versions", "attributes": {"serial": "nine", "md5": md5(b"x")}}
        },
    )
    assert (
        r.status_code == 422
        and r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/serial"
    )
    listed = (await admin.get(f"/api/v2/workspaces/{ws}/state-versions")).json()["data"]
    assert [s["attributes"]["serial"] for s in listed] == [1, 5]  # newest first


async def test_upload_url_flow_and_corrupted_upload(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    await lock(admin, ws)
    first = state(1)
    assert (await push_inline(admin, ws, first, 1)).status_code == 201
    content = state(2, outputs={"secret": {"value": "s3cr3t", "type": "string", "sensitive": True}})
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/state-versions",
        json=create_body(
            None,
            2,
            md5sum=md5(content),
            outputs={"secret": {"value": "s3cr3t", "type": "string", "sensitive": True}},
        ),
    )
    assert r.status_code == 201
    sv = r.json()["data"]
    assert sv["attributes"]["status"] == "pending"
    upload = sv_path(sv["attributes"]["hosted-state-upload-url"])
    # Pending versions are not current and not history.
    current = (await admin.get(f"/api/v2/workspaces/{ws}/current-state-version")).json()["data"]
    assert current["attributes"]["serial"] == 1

    bad = await admin.put(upload, content=content + b" ", headers={"Authorization": ""})
    assert bad.status_code == 422 and "md5" in bad.json()["errors"][0]["detail"]
    still = (await admin.get(f"/api/v2/state-versions/{sv['id']}")).json()["data"]["attributes"]
    assert still["status"] == "pending"
    assert (await admin.get(f"/api/v2/workspaces/{ws}/current-state-version")).json()["data"][
        "attributes"
    ]["serial"] == 1

    good = await admin.put(
        upload,
        content=content,
        headers={"Authorization": "", "Content-Type": "application/octet-stream"},
    )
    assert good.status_code == 200, good.text
    done = (await admin.get(f"/api/v2/state-versions/{sv['id']}")).json()["data"]["attributes"]
    assert done["status"] == "finalized" and done["hosted-state-upload-url"] is None
    again = await admin.put(upload, content=state(99), headers={"Authorization": ""})
    assert again.status_code == 409
    dl = await admin.get(sv_path(done["hosted-state-download-url"]), headers={"Authorization": ""})
    assert dl.content == content

    json_url = sv_path(done["hosted-json-state-upload-url"])
    assert (
        await admin.put(
            json_url, content=b'{"format_version":"1.0"}', headers={"Authorization": ""}
        )
    ).status_code == 200
    after = (await admin.get(f"/api/v2/state-versions/{sv['id']}")).json()["data"]["attributes"]
    assert after["hosted-json-state-upload-url"] is None
    assert (
        await admin.get(sv_path(after["hosted-json-state-download-url"]))
    ).content == b'{"format_version":"1.0"}'


async def test_sensitive_outputs_encrypted_and_hidden_from_lists(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    await lock(admin, ws)
    content = state(
        1,
        outputs={
            "password": {"value": "hunter2", "type": "string", "sensitive": True},
            "port": {"value": 8080, "type": "number"},
        },
    )
    sv = (await push_inline(admin, ws, content, 1)).json()["data"]
    listed = (await admin.get(f"/api/v2/workspaces/{ws}/current-state-version-outputs")).json()[
        "data"
    ]
    by_name = {o["attributes"]["name"]: o for o in listed}
    assert by_name["password"]["attributes"]["value"] is None
    assert by_name["password"]["attributes"]["sensitive"] is True
    assert (
        by_name["port"]["attributes"]["value"] == 8080
        and by_name["port"]["attributes"]["type"] == "number"
    )
    revealed = (
        await admin.get(f"/api/v2/state-version-outputs/{by_name['password']['id']}")
    ).json()["data"]
    assert revealed["attributes"]["value"] == "hunter2"
    included = (
        await admin.get(f"/api/v2/state-versions/{sv['id']}", params={"include": "outputs"})
    ).json()
    assert {i["attributes"]["name"] for i in included["included"]} == {"password", "port"}
    assert all(
        i["attributes"]["value"] is None
        for i in included["included"]
        if i["attributes"]["sensitive"]
    )
    async with app.state.sessionmaker() as session:
        stored = (
            await session.execute(
                select(StateVersionOutput.value).where(StateVersionOutput.name == "password")
            )
        ).scalar_one()
    assert "hunter2" not in stored and stored.startswith("v1:")


async def test_rollback_makes_an_old_version_current(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    await lock(admin, ws)
    v1 = (await push_inline(admin, ws, state(1, outputs={"v": {"value": "one"}}), 1)).json()["data"]
    await push_inline(admin, ws, state(2, outputs={"v": {"value": "two"}}), 2)
    body = {
        "data": {
            "type": "state-versions",
            "relationships": {
                "rollback-state-version": {"data": {"type": "state-versions", "id": v1["id"]}}
            },
        }
    }
    r = await admin.patch(f"/api/v2/workspaces/{ws}/state-versions", json=body)
    assert r.status_code == 200, r.text
    rolled = r.json()["data"]
    assert (
        rolled["id"] != v1["id"]
        and rolled["relationships"]["rolled-back-from"]["data"]["id"] == v1["id"]
    )
    outs = (await admin.get(f"/api/v2/workspaces/{ws}/current-state-version-outputs")).json()[
        "data"
    ]
    assert outs[0]["attributes"]["value"] == "one"
    assert (await admin.get(f"/api/v2/state-versions/{rolled['id']}/download")).content == state(
        1, outputs={"v": {"value": "one"}}
    )
    # Terraform's next write (serial 2 on top of the rolled-back serial 1) is accepted.
    assert (await push_inline(admin, ws, state(2, outputs={}), 2)).status_code == 201


async def test_safe_delete_refuses_while_resources_are_managed(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    await lock(admin, ws)
    await push_inline(admin, ws, state(1, resources=2), 1)
    await admin.post(f"/api/v2/workspaces/{ws}/actions/unlock")
    r = await admin.post(f"/api/v2/workspaces/{ws}/actions/safe-delete")
    assert r.status_code == 409 and "2 resources" in r.json()["errors"][0]["detail"]
    assert (await admin.delete(f"/api/v2/workspaces/{ws}")).status_code == 204


async def test_state_list_by_filters_and_member_access(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin, "filtered")
    await lock(admin, ws)
    await push_inline(admin, ws, state(1), 1)
    r = await admin.get(
        "/api/v2/state-versions",
        params={"filter[organization][name]": "default", "filter[workspace][name]": "filtered"},
    )
    assert [s["attributes"]["serial"] for s in r.json()["data"]] == [1]
    assert (await admin.get("/api/v2/state-versions")).status_code == 400
    member = await make_user(app, organization="default")
    async with member.client(app) as c:
        assert (await c.get(f"/api/v2/workspaces/{ws}/current-state-version")).status_code == 200
        r = await c.post(f"/api/v2/workspaces/{ws}/state-versions", json=create_body(state(2), 2))
        assert r.status_code == 409  # the admin holds the lock


async def test_remote_state_sharing_rule_for_runs(app: FastAPI, admin: httpx.AsyncClient) -> None:
    """A run of workspace B reads A's state only when A shares it (globally or with B)."""
    a = await new_workspace(admin, "producer")
    b = await new_workspace(admin, "consumer")
    c = await new_workspace(admin, "stranger")
    run_b = Principal(kind="user", token_id=None, run_id="run-x", workspace_id=b)
    async with app.state.sessionmaker() as session:
        ws_a, org = await workspaces.get(
            session, Principal(kind="system", token_id=None, is_admin=True), a
        )
        assert not await workspaces.may_read_state(session, run_b, ws_a, org)
    await admin.post(
        f"/api/v2/workspaces/{a}/relationships/remote-state-consumers",
        json={"data": [{"type": "workspaces", "id": b}]},
    )
    async with app.state.sessionmaker() as session:
        ws_a, org = await workspaces.get(
            session, Principal(kind="system", token_id=None, is_admin=True), a
        )
        assert await workspaces.may_read_state(session, run_b, ws_a, org)
        run_c = Principal(kind="user", token_id=None, run_id="run-y", workspace_id=c)
        assert not await workspaces.may_read_state(session, run_c, ws_a, org)
    await admin.patch(
        f"/api/v2/workspaces/{a}",
        json={"data": {"type": "workspaces", "attributes": {"global-remote-state": True}}},
    )
    async with app.state.sessionmaker() as session:
        ws_a, org = await workspaces.get(
            session, Principal(kind="system", token_id=None, is_admin=True), a
        )
        assert await workspaces.may_read_state(session, run_c, ws_a, org)


async def _object_keys(app: FastAPI, workspace_id: str) -> list[str]:
    return [info.key async for info in app.state.object_store.list(f"workspaces/{workspace_id}/")]


async def test_deleting_a_workspace_or_organization_deletes_its_state_objects(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    doomed = await new_workspace(admin, "doomed")
    kept = await new_workspace(admin, "kept")
    for ws in (doomed, kept):
        await lock(admin, ws)
        assert (await push_inline(admin, ws, state(1), 1)).status_code == 201
        assert await _object_keys(app, ws)
    assert (await admin.delete(f"/api/v2/workspaces/{doomed}")).status_code == 204
    assert await _object_keys(app, doomed) == []
    assert await _object_keys(app, kept), "another workspace's state must survive"

    await admin.post(
        "/api/v2/organizations",
        json={
            "data": {"type": "organizations", "attributes": {"name": "gone", "email": "g@x.test"}}
        },
    )
    r = await admin.post(
        "/api/v2/organizations/gone/workspaces",
        json={"data": {"type": "workspaces", "attributes": {"name": "w"}}},
    )
    inner = r.json()["data"]["id"]
    await lock(admin, inner)
    await push_inline(admin, inner, state(1), 1)
    assert await _object_keys(app, inner)
    assert (await admin.delete("/api/v2/organizations/gone")).status_code == 204
    assert await _object_keys(app, inner) == []
    assert await _object_keys(app, kept)
