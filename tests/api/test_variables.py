"""Workspace variables: TFE shapes, key and category rules, sensitive values (write-only,
encrypted at rest), version ids, permissions, the deprecated /vars routes, and the values a
run receives."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidTag
from fastapi import FastAPI
from sqlalchemy import select

from terrapod.crypto import SecretBox
from terrapod.variables import service
from terrapod.variables.models import Variable
from terrapod.variables.service import UndecryptableVariable, VariableValue
from tests.factories import make_org, make_user

WS = "/api/v2/organizations/default/workspaces"
SECRET = "hunter2-do-not-leak"


def var_body(**attrs: Any) -> dict[str, Any]:
    return {"data": {"type": "vars", "attributes": attrs}}


async def new_workspace(client: httpx.AsyncClient, name: str = "app") -> str:
    r = await client.post(WS, json={"data": {"type": "workspaces", "attributes": {"name": name}}})
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


def vars_path(ws: str, var: str | None = None) -> str:
    return f"/api/v2/workspaces/{ws}/vars" + (f"/{var}" if var else "")


async def create(client: httpx.AsyncClient, ws: str, **attrs: Any) -> dict[str, Any]:
    r = await client.post(vars_path(ws), json=var_body(**attrs))
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def error(r: httpx.Response, status: int) -> tuple[str, str | None]:
    """(detail, pointer) of the first error, after checking the status."""
    assert r.status_code == status, r.text
    first = r.json()["errors"][0]
    return first["detail"], first.get("source", {}).get("pointer")


async def raw_row(app: FastAPI, variable_id: str) -> Variable | None:
    async with app.state.sessionmaker() as session:
        return await session.get(Variable, variable_id)


async def run_values(app: FastAPI, ws: str, box: SecretBox | None = None) -> list[VariableValue]:
    async with app.state.sessionmaker() as session:
        return await service.values_for_run(session, box or app.state.secret_box, ws)


async def keys_of(client: httpx.AsyncClient, ws: str) -> list[tuple[str, str]]:
    data = (await client.get(vars_path(ws))).json()["data"]
    return [(v["attributes"]["category"], v["attributes"]["key"]) for v in data]


# -- shapes and the happy path -------------------------------------------------------------


async def test_create_read_list_update_delete_in_tfe_shape(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    r = await admin.post(
        vars_path(ws),
        json=var_body(key="region", value="eu-west-1", category="terraform", description="AWS"),
    )
    assert r.status_code == 201 and r.headers["content-type"] == "application/vnd.api+json"
    data = r.json()["data"]
    assert data["type"] == "vars" and data["id"].startswith("var-")
    attrs = data["attributes"]
    assert {k: attrs[k] for k in ("key", "value", "description", "category", "hcl")} == {
        "key": "region",
        "value": "eu-west-1",
        "description": "AWS",
        "category": "terraform",
        "hcl": False,
    }
    assert attrs["sensitive"] is False and len(attrs["version-id"]) == 32
    assert attrs["created-at"].endswith("Z")
    assert data["relationships"]["configurable"] == {
        "data": {"type": "workspaces", "id": ws},
        "links": {"related": f"/api/v2/workspaces/{ws}"},
    }
    assert data["links"] == {"self": f"/api/v2/workspaces/{ws}/vars/{data['id']}"}

    shown = (await admin.get(vars_path(ws, data["id"]))).json()
    assert shown == {"data": data}
    env = await create(admin, ws, key="TF_LOG", value="INFO", category="env")
    listed = (await admin.get(vars_path(ws))).json()
    # Not paginated in TFE: everything in one document, no meta, terraform before env.
    assert listed == {"data": [data, env]}
    assert (await admin.get(f"/api/v2/workspaces/{ws}/all-vars")).json() == listed

    r = await admin.patch(vars_path(ws, data["id"]), json=var_body(value="eu-central-1"))
    assert r.status_code == 200 and r.json()["data"]["attributes"]["value"] == "eu-central-1"
    assert (await admin.delete(vars_path(ws, data["id"]))).status_code == 204
    assert (await admin.get(vars_path(ws, data["id"]))).status_code == 404
    assert await keys_of(admin, ws) == [("env", "TF_LOG")]


async def test_value_defaults_to_empty_and_description_can_be_cleared(
    admin: httpx.AsyncClient,
) -> None:
    ws = await new_workspace(admin)
    v = await create(admin, ws, key="empty", category="terraform", description="d")
    assert v["attributes"]["value"] == "" and v["attributes"]["description"] == "d"
    r = await admin.patch(vars_path(ws, v["id"]), json=var_body(description=None))
    assert r.json()["data"]["attributes"]["description"] is None
    # A null value on update means "not given": the value stays.
    await admin.patch(vars_path(ws, v["id"]), json=var_body(value="x"))
    r = await admin.patch(vars_path(ws, v["id"]), json=var_body(value=None))
    assert r.json()["data"]["attributes"]["value"] == "x"


# -- keys and categories -------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["1abc", "a b", "a=b", "a.b", "-lead", "a\tb", "x" * 129, "é-€"],
)
async def test_terraform_keys_must_be_identifiers(admin: httpx.AsyncClient, key: str) -> None:
    ws = await new_workspace(admin)
    r = await admin.post(vars_path(ws), json=var_body(key=key, value="v", category="terraform"))
    detail, pointer = error(r, 422)
    assert pointer == "/data/attributes/key" and "key" in detail
    assert await keys_of(admin, ws) == []


async def test_valid_terraform_keys(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    for key in ("a", "_private", "my-var", "snake_case_2", "ünïcode", "x" * 128):
        await create(admin, ws, key=key, category="terraform")


@pytest.mark.parametrize("key", ["A=B", "=", "A B", "A\nB", " A", "A\x7f", "x" * 129])
async def test_env_keys_must_be_environment_names(admin: httpx.AsyncClient, key: str) -> None:
    ws = await new_workspace(admin)
    r = await admin.post(vars_path(ws), json=var_body(key=key, value="v", category="env"))
    detail, pointer = error(r, 422)
    assert pointer == "/data/attributes/key" and "key" in detail


async def test_env_keys_allow_what_real_names_use(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    for key in ("AWS_REGION", "TF_TOKEN_localhost:18443", "TF_TOKEN_app.example.com", "1X"):
        await create(admin, ws, key=key, value="v", category="env")


async def test_key_and_category_are_required_and_checked(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"value": "v", "category": "terraform"}, "/data/attributes/key"),
        ({"key": "", "category": "terraform"}, "/data/attributes/key"),
        ({"key": None, "category": "terraform"}, "/data/attributes/key"),
        ({"key": "k"}, "/data/attributes/category"),
        ({"key": "k", "category": None}, "/data/attributes/category"),
        ({"key": "k", "category": "policy-set"}, "/data/attributes/category"),
        ({"key": "k", "category": "ENV"}, "/data/attributes/category"),
        ({"key": "k", "category": "env", "hcl": None}, "/data/attributes/hcl"),
        ({"key": "k", "category": "env", "sensitive": None}, "/data/attributes/sensitive"),
    ]
    for attrs, pointer in cases:
        r = await admin.post(vars_path(ws), json=var_body(**attrs))
        detail, got = error(r, 422)
        assert got == pointer, (attrs, detail)
        assert pointer.rsplit("/", 1)[1] in detail
    assert await keys_of(admin, ws) == []


async def test_duplicate_key_in_a_category_is_422_naming_the_key(
    admin: httpx.AsyncClient,
) -> None:
    ws = await new_workspace(admin)
    await create(admin, ws, key="region", value="a", category="terraform")
    r = await admin.post(
        vars_path(ws), json=var_body(key="region", value="b", category="terraform")
    )
    detail, pointer = error(r, 422)
    assert pointer == "/data/attributes/key"
    assert detail.startswith("Key has already been taken") and "'region'" in detail
    # The same key in the other category, in another workspace, or in another case is fine.
    await create(admin, ws, key="region", value="c", category="env")
    await create(admin, ws, key="Region", value="d", category="terraform")
    other = await new_workspace(admin, "other")
    await create(admin, other, key="region", value="e", category="terraform")
    assert sorted(await keys_of(admin, ws)) == [
        ("env", "region"),
        ("terraform", "Region"),
        ("terraform", "region"),
    ]


async def test_renaming_or_recategorizing_onto_a_taken_key_is_422(
    admin: httpx.AsyncClient,
) -> None:
    ws = await new_workspace(admin)
    await create(admin, ws, key="a", category="terraform")
    b = await create(admin, ws, key="b", category="terraform")
    await create(admin, ws, key="a", category="env")
    env_b = await create(admin, ws, key="b", category="env")
    detail, pointer = error(await admin.patch(vars_path(ws, b["id"]), json=var_body(key="a")), 422)
    assert pointer == "/data/attributes/key" and "'a'" in detail
    r = await admin.patch(vars_path(ws, env_b["id"]), json=var_body(category="terraform"))
    detail, pointer = error(r, 422)
    assert "'b'" in detail
    # Nothing was half-written.
    assert (await admin.get(vars_path(ws, b["id"]))).json()["data"]["attributes"]["key"] == "b"
    # Renaming onto itself, and to a free key, is fine.
    assert (await admin.patch(vars_path(ws, b["id"]), json=var_body(key="b"))).status_code == 200
    assert (await admin.patch(vars_path(ws, b["id"]), json=var_body(key="c"))).status_code == 200


async def test_changing_category_checks_the_key_for_the_new_category(
    admin: httpx.AsyncClient,
) -> None:
    ws = await new_workspace(admin)
    env = await create(admin, ws, key="TF_TOKEN_host:1", value="t", category="env")
    detail, pointer = error(
        await admin.patch(vars_path(ws, env["id"]), json=var_body(category="terraform")), 422
    )
    assert pointer == "/data/attributes/key" and "Terraform" in detail
    tf = await create(admin, ws, key="region", value="r", category="terraform")
    r = await admin.patch(vars_path(ws, tf["id"]), json=var_body(category="env"))
    assert r.status_code == 200 and r.json()["data"]["attributes"]["category"] == "env"


async def test_concurrent_creates_of_one_key_make_one_variable(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    writers = [await make_user(app, organization="default") for _ in range(5)]
    clients = [w.client(app) for w in writers]
    try:
        results = await asyncio.gather(
            *(
                c.post(vars_path(ws), json=var_body(key="race", value=str(i), category="env"))
                for i, c in enumerate(clients)
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(r.status_code for r in results) == [201, 422, 422, 422, 422]
    assert await keys_of(admin, ws) == [("env", "race")]


# -- HCL ------------------------------------------------------------------------------------


async def test_env_variables_cannot_be_hcl(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    r = await admin.post(vars_path(ws), json=var_body(key="E", category="env", hcl=True))
    detail, pointer = error(r, 422)
    assert pointer == "/data/attributes/hcl" and "HCL" in detail
    env = await create(admin, ws, key="E", category="env")
    r = await admin.patch(vars_path(ws, env["id"]), json=var_body(hcl=True))
    assert error(r, 422)[1] == "/data/attributes/hcl"
    tf = await create(admin, ws, key="m", value="{ a = 1 }", category="terraform", hcl=True)
    assert tf["attributes"]["hcl"] is True
    r = await admin.patch(vars_path(ws, tf["id"]), json=var_body(category="env"))
    assert error(r, 422)[1] == "/data/attributes/category"
    # Both at once is a consistent change.
    r = await admin.patch(vars_path(ws, tf["id"]), json=var_body(category="env", hcl=False))
    assert r.status_code == 200


# -- sensitive values -----------------------------------------------------------------------


async def test_sensitive_value_is_never_returned_and_is_encrypted_at_rest(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    r = await admin.post(
        vars_path(ws),
        json=var_body(key="password", value=SECRET, category="terraform", sensitive=True),
    )
    assert r.status_code == 201
    var = r.json()["data"]
    assert var["attributes"]["value"] is None and var["attributes"]["sensitive"] is True
    responses = [
        r,
        await admin.get(vars_path(ws)),
        await admin.get(vars_path(ws, var["id"])),
        await admin.get(f"/api/v2/workspaces/{ws}/all-vars"),
        await admin.get(
            "/api/v2/vars",
            params={"filter[organization][name]": "default", "filter[workspace][name]": "app"},
        ),
        await admin.patch(vars_path(ws, var["id"]), json=var_body(description="db")),
        await admin.patch(vars_path(ws, var["id"]), json=var_body(value=SECRET + "!")),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert SECRET not in response.text
        assert "v1:" not in response.text  # nor the ciphertext

    row = await raw_row(app, var["id"])
    assert row is not None and row.value is None and row.value_encrypted is not None
    assert row.value_encrypted.startswith("v1:") and SECRET not in row.value_encrypted
    box: SecretBox = app.state.secret_box
    assert (
        box.decrypt(row.value_encrypted, context=f"variable:{var['id']}") == (SECRET + "!").encode()
    )
    # Bound to this variable: the ciphertext does not open as another one's.
    with pytest.raises(InvalidTag):
        box.decrypt(row.value_encrypted, context="variable:var-AAAAAAAAAAAAAAAA")


async def test_sensitive_variable_cannot_be_made_non_sensitive(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    var = await create(admin, ws, key="token", value=SECRET, category="env", sensitive=True)
    r = await admin.patch(vars_path(ws, var["id"]), json=var_body(sensitive=False, value="x"))
    assert error(r, 422)[1] == "/data/attributes/sensitive" and SECRET not in r.text
    assert [v.value for v in await run_values(app, ws)] == [SECRET]
    # Saying it is (still) sensitive is fine.
    r = await admin.patch(vars_path(ws, var["id"]), json=var_body(sensitive=True))
    assert r.status_code == 200


async def test_updating_a_sensitive_variable_without_a_value_keeps_it(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    var = await create(admin, ws, key="token", value=SECRET, category="env", sensitive=True)
    version = var["attributes"]["version-id"]
    r = await admin.patch(vars_path(ws, var["id"]), json=var_body(description="rotated monthly"))
    assert r.json()["data"]["attributes"]["version-id"] == version
    r = await admin.patch(vars_path(ws, var["id"]), json=var_body(value=None, key="TOKEN"))
    assert r.json()["data"]["attributes"]["version-id"] != version  # the key changed
    assert await run_values(app, ws) == [
        VariableValue(key="TOKEN", value=SECRET, category="env", hcl=False, sensitive=True)
    ]


async def test_making_a_variable_sensitive_encrypts_its_current_value(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    var = await create(admin, ws, key="db_password", value=SECRET, category="terraform")
    r = await admin.patch(vars_path(ws, var["id"]), json=var_body(sensitive=True))
    assert r.status_code == 200 and r.json()["data"]["attributes"]["value"] is None
    row = await raw_row(app, var["id"])
    assert row is not None and row.value is None and row.value_encrypted
    assert [v.value for v in await run_values(app, ws)] == [SECRET]


async def test_version_id_changes_with_what_a_run_receives(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    var = await create(admin, ws, key="k", value="one", category="terraform")
    path = vars_path(ws, var["id"])

    async def version_after(**attrs: Any) -> str:
        r = await admin.patch(path, json=var_body(**attrs))
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["attributes"]["version-id"])

    v0 = var["attributes"]["version-id"]
    assert await version_after(description="only words") == v0
    assert await version_after(value="one") == v0  # the same value again
    v1 = await version_after(value="two")
    assert v1 != v0
    v2 = await version_after(key="k2")
    assert v2 != v1
    v3 = await version_after(hcl=True)
    assert v3 != v2
    assert await version_after(sensitive=True) == v3
    assert await version_after(value="two") == v3  # compared with the decrypted value
    assert await version_after(value="three") != v3


async def test_values_for_run_decrypts_and_masks_sensitive_values_in_repr(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    await create(admin, ws, key="region", value="eu-west-1", category="terraform")
    await create(admin, ws, key="tags", value='{ a = "b" }', category="terraform", hcl=True)
    await create(admin, ws, key="API_KEY", value=SECRET, category="env", sensitive=True)
    other = await new_workspace(admin, "other")
    await create(admin, other, key="elsewhere", value="x", category="terraform")
    values = await run_values(app, ws)
    assert values == [
        VariableValue("region", "eu-west-1", "terraform", hcl=False, sensitive=False),
        VariableValue("tags", '{ a = "b" }', "terraform", hcl=True, sensitive=False),
        VariableValue("API_KEY", SECRET, "env", hcl=False, sensitive=True),
    ]
    assert SECRET not in repr(values) and "eu-west-1" in repr(values)
    with pytest.raises(AttributeError):
        values[0].value = "changed"  # type: ignore[misc]


async def test_values_for_run_with_another_key_fails_without_leaking(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    await create(admin, ws, key="API_KEY", value=SECRET, category="env", sensitive=True)
    with pytest.raises(UndecryptableVariable) as caught:
        await run_values(app, ws, SecretBox(b"k" * 32))
    assert "API_KEY" in caught.value.detail and SECRET not in caught.value.detail
    # The API still answers (it never decrypts to show a value).
    assert (await admin.get(vars_path(ws))).status_code == 200


async def test_error_messages_never_contain_sensitive_values(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    await create(admin, ws, key="TOKEN", value="first", category="env", sensitive=True)
    bad = [
        var_body(key="TOKEN", value=SECRET, category="env", sensitive=True),
        var_body(key="TOKEN", value=SECRET, category="env", hcl=True, sensitive=True),
        var_body(key="bad key", value=SECRET, category="terraform", sensitive=True),
        var_body(key="k", value=SECRET, category="nope", sensitive=True),
        var_body(key="k", value=SECRET, category="env", sensitive="yes"),
        var_body(key="k", value=SECRET, category="env", sensitive=True, description="x" * 513),
    ]
    for body in bad:
        r = await admin.post(vars_path(ws), json=body)
        assert r.status_code == 422, r.text
        assert SECRET not in r.text


# -- malformed requests --------------------------------------------------------------------


async def test_malformed_requests_are_4xx_naming_the_field_and_change_nothing(
    admin: httpx.AsyncClient,
) -> None:
    ws = await new_workspace(admin)
    var = await create(admin, ws, key="k", value="v", category="terraform")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"key": 5, "category": "env"}, "/data/attributes/key"),
        ({"key": "k2", "value": 5, "category": "env"}, "/data/attributes/value"),
        ({"key": "k2", "value": ["a"], "category": "env"}, "/data/attributes/value"),
        ({"key": "k2", "category": "env", "hcl": "true"}, "/data/attributes/hcl"),
        ({"key": "k2", "category": "env", "sensitive": 1}, "/data/attributes/sensitive"),
        (
            {"key": "k2", "category": "env", "description": "x" * 513},
            "/data/attributes/description",
        ),
        ({"key": "k2", "category": "env", "value": "a\x00b"}, "/data/attributes/value"),
        ({"key": "k2", "category": 7}, "/data/attributes/category"),
    ]
    for attrs, pointer in cases:
        for method, path in (("POST", vars_path(ws)), ("PATCH", vars_path(ws, var["id"]))):
            r = await admin.request(method, path, json=var_body(**attrs))
            assert error(r, 422)[1] == pointer, (method, attrs)
    for content in (b'{"data": {', b"[]", b'{"data": []}', b""):
        r = await admin.post(vars_path(ws), content=content)
        assert r.status_code == 400, (content, r.text)
    r = await admin.post(vars_path(ws), json={"data": {"type": "vars", "attributes": []}})
    assert error(r, 422)[1] == "/data/attributes"
    shown = (await admin.get(vars_path(ws))).json()["data"]
    assert shown == [var]


async def test_unknown_or_malformed_ids_are_404(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    other = await new_workspace(admin, "other")
    theirs = await create(admin, other, key="k", value="v", category="terraform")
    for var_id in ("var-AAAAAAAAAAAAAAAA", "nope", theirs["id"], "ws-AAAAAAAAAAAAAAAA"):
        for method in ("GET", "PATCH", "DELETE"):
            body = var_body(value="x") if method == "PATCH" else None
            r = await admin.request(method, vars_path(ws, var_id), json=body)
            assert r.status_code == 404, (var_id, method, r.text)
    assert (await admin.get(vars_path("ws-AAAAAAAAAAAAAAAA"))).status_code == 404
    assert (await admin.get(vars_path(other, theirs["id"]))).status_code == 200


# -- permissions ----------------------------------------------------------------------------


async def test_member_reads_and_writes_variables(app: FastAPI, admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    member = await make_user(app, organization="default")
    async with member.client(app) as c:
        r = await c.post(vars_path(ws), json=var_body(key="k", value="v", category="env"))
        assert r.status_code == 201, r.text
        var_id = r.json()["data"]["id"]
        assert (await c.get(vars_path(ws))).status_code == 200
        assert (await c.get(vars_path(ws, var_id))).status_code == 200
        r = await c.patch(vars_path(ws, var_id), json=var_body(value="w"))
        assert r.status_code == 200
        assert (await c.delete(vars_path(ws, var_id))).status_code == 204
    shown = (await admin.get(f"/api/v2/workspaces/{ws}")).json()["data"]["attributes"]
    assert shown["permissions"]["can-update-variable"] is True


async def test_outsiders_get_404_and_anonymous_callers_401(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    var = await create(admin, ws, key="k", value="v", category="env")
    await make_org(app, "elsewhere")
    outsider = await make_user(app, organization="elsewhere", role="owner")
    legacy_query = {"filter[organization][name]": "default", "filter[workspace][name]": "app"}
    calls: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None]] = [
        ("GET", vars_path(ws), None, None),
        ("GET", f"/api/v2/workspaces/{ws}/all-vars", None, None),
        ("POST", vars_path(ws), var_body(key="x", category="env"), None),
        ("GET", vars_path(ws, var["id"]), None, None),
        ("PATCH", vars_path(ws, var["id"]), var_body(value="stolen"), None),
        ("DELETE", vars_path(ws, var["id"]), None, None),
        ("GET", "/api/v2/vars", None, legacy_query),
        ("PATCH", f"/api/v2/vars/{var['id']}", var_body(value="stolen"), None),
        ("DELETE", f"/api/v2/vars/{var['id']}", None, None),
        (
            "POST",
            "/api/v2/vars",
            {
                "data": {
                    "type": "vars",
                    "attributes": {"key": "x", "category": "env"},
                    "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws}}},
                }
            },
            None,
        ),
    ]
    async with outsider.client(app) as c:
        for method, path, body, params in calls:
            r = await c.request(method, path, json=body, params=params)
            assert r.status_code == 404, (method, path, r.text)
            r = await anon.request(method, path, json=body, params=params)
            assert r.status_code == 401, (method, path, r.text)
    assert await keys_of(admin, ws) == [("env", "k")]
    shown = (await admin.get(vars_path(ws, var["id"]))).json()["data"]["attributes"]
    assert shown["value"] == "v"


# -- the deprecated /vars routes ------------------------------------------------------------


async def test_deprecated_vars_routes(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    body = {
        "data": {
            "type": "vars",
            "attributes": {"key": "region", "value": "eu", "category": "terraform"},
            "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws}}},
        }
    }
    r = await admin.post("/api/v2/vars", json=body)
    assert r.status_code == 201, r.text
    var = r.json()["data"]
    assert var["relationships"]["configurable"]["data"] == {"type": "workspaces", "id": ws}

    query = {"filter[organization][name]": "default", "filter[workspace][name]": "app"}
    listed = (await admin.get("/api/v2/vars", params=query)).json()
    assert listed == {"data": [var]}
    for partial in ({}, {"filter[organization][name]": "default"}):
        detail, _ = error(await admin.get("/api/v2/vars", params=partial), 400)
        assert "filter[workspace][name]" in detail
    missing = {**query, "filter[workspace][name]": "nope"}
    assert (await admin.get("/api/v2/vars", params=missing)).status_code == 404

    r = await admin.patch(f"/api/v2/vars/{var['id']}", json=var_body(value="us"))
    assert r.status_code == 200 and r.json()["data"]["attributes"]["value"] == "us"
    assert (await admin.patch("/api/v2/vars/nope", json=var_body(value="x"))).status_code == 404
    assert (await admin.delete(f"/api/v2/vars/{var['id']}")).status_code == 204
    assert (await admin.delete(f"/api/v2/vars/{var['id']}")).status_code == 404

    no_workspace = {"data": {"type": "vars", "attributes": {"key": "k", "category": "env"}}}
    detail, pointer = error(await admin.post("/api/v2/vars", json=no_workspace), 422)
    assert pointer == "/data/relationships/workspace"
    wrong_type = {
        "data": {
            **no_workspace["data"],
            "relationships": {"workspace": {"data": {"type": "runs", "id": ws}}},
        }
    }
    assert (await admin.post("/api/v2/vars", json=wrong_type)).status_code == 422
    unknown = {
        "data": {
            **no_workspace["data"],
            "relationships": {
                "workspace": {"data": {"type": "workspaces", "id": "ws-AAAAAAAAAAAAAAAA"}}
            },
        }
    }
    assert (await admin.post("/api/v2/vars", json=unknown)).status_code == 404
    assert await keys_of(admin, ws) == []


# -- lifecycle ------------------------------------------------------------------------------


async def test_deleting_the_workspace_deletes_its_variables(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    var = await create(admin, ws, key="k", value=SECRET, category="env", sensitive=True)
    assert (await admin.delete(f"/api/v2/workspaces/{ws}")).status_code == 204
    assert await raw_row(app, var["id"]) is None
    async with app.state.sessionmaker() as session:
        left = (await session.execute(select(Variable).where(Variable.workspace_id == ws))).all()
    assert left == []
