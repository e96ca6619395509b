"""Agent pools, agent tokens and agents through HTTP (HCP Terraform's Agent Pools and Agents
API, Agent Tokens API), and workspaces with execution mode ``agent``.

Agents are rows the listener protocol writes when an agent joins; these tests write them
directly (``add_agent``) to pin how their status is shown, without running an agent.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from terrapod.agentpools import service as agentpools
from terrapod.agentpools.models import Agent
from terrapod.auth.models import Token
from terrapod.db.base import utcnow
from terrapod.db.engine import WRITE_OPTION
from terrapod.db.ids import new_id
from terrapod.runs.models import Job
from tests.factories import Actor, make_org, make_user
from tests.runs_support import create_run, make_workspace, upload_configuration

POOLS = "/api/v2/organizations/default/agent-pools"


def pool_body(name: str | None = None, **attrs: Any) -> dict[str, Any]:
    if name is not None:
        attrs["name"] = name
    return {"data": {"type": "agent-pools", "attributes": attrs}}


def allowed_body(*workspace_ids: str) -> dict[str, Any]:
    return {
        "data": {
            "type": "agent-pools",
            "attributes": {},
            "relationships": {
                "allowed-workspaces": {
                    "data": [{"type": "workspaces", "id": i} for i in workspace_ids]
                }
            },
        }
    }


def token_body(description: str | None = "ci") -> dict[str, Any]:
    attrs = {} if description is None else {"description": description}
    return {"data": {"type": "authentication-tokens", "attributes": attrs}}


async def make_pool(client: httpx.AsyncClient, name: str, **attrs: Any) -> dict[str, Any]:
    r = await client.post(POOLS, json=pool_body(name, **attrs))
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def add_agent(
    app: FastAPI,
    pool_id: str | None,
    name: str,
    *,
    status: str = "idle",
    ping_age: float = 0,
    capacity: int = 1,
) -> str:
    async with app.state.sessionmaker() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        agent = Agent(
            id=new_id("agent"),
            pool_id=pool_id,
            name=name,
            status=status,
            capacity=capacity,
            ip_address="10.0.0.7",
            credential_hash=secrets.token_hex(32),
            credential_expires_at=utcnow() + timedelta(hours=1),
            last_ping_at=utcnow() - timedelta(seconds=ping_age),
        )
        session.add(agent)
        await session.commit()
    return agent.id


def detail(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["detail"])


def pointer(r: httpx.Response) -> str | None:
    return (r.json()["errors"][0].get("source") or {}).get("pointer")


async def ws_patch(client: httpx.AsyncClient, workspace_id: str, **attrs: Any) -> httpx.Response:
    return await client.patch(
        f"/api/v2/workspaces/{workspace_id}",
        json={"data": {"type": "workspaces", "attributes": attrs}},
    )


# -- pools ---------------------------------------------------------------------------------


async def test_pool_crud_in_tfe_shape(admin: httpx.AsyncClient) -> None:
    pool = await make_pool(admin, "builders")
    assert pool["id"].startswith("apool-")
    attrs = pool["attributes"]
    assert attrs["name"] == "builders"
    assert attrs["organization-scoped"] is True
    assert attrs["agent-count"] == 0
    assert attrs["created-at"].endswith("Z")
    assert pool["relationships"]["organization"]["data"] == {
        "type": "organizations",
        "id": "default",
    }
    assert pool["relationships"]["workspaces"]["data"] == []
    r = await admin.get(f"/api/v2/agent-pools/{pool['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["attributes"]["name"] == "builders"
    r = await admin.patch(
        f"/api/v2/agent-pools/{pool['id']}",
        json=pool_body("builders-east", **{"organization-scoped": False}),
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["attributes"]["name"] == "builders-east"
    assert r.json()["data"]["attributes"]["organization-scoped"] is False
    r = await admin.delete(f"/api/v2/agent-pools/{pool['id']}")
    assert r.status_code == 204, r.text
    r = await admin.get(f"/api/v2/agent-pools/{pool['id']}")
    assert r.status_code == 404


async def test_list_filters_by_name_and_allowed_workspace_and_paginates(
    admin: httpx.AsyncClient,
) -> None:
    ws = await make_workspace(admin, "app")
    await make_pool(admin, "alpha")
    await make_pool(admin, "beta-east")
    scoped = await make_pool(admin, "beta-west", **{"organization-scoped": False})
    await make_pool(admin, "gamma", **{"organization-scoped": False})
    r = await admin.patch(f"/api/v2/agent-pools/{scoped['id']}", json=allowed_body(ws))
    assert r.status_code == 200, r.text
    r = await admin.get(POOLS, params={"q": "BETA"})
    assert [p["attributes"]["name"] for p in r.json()["data"]] == ["beta-east", "beta-west"]
    r = await admin.get(POOLS, params={"filter[allowed_workspaces][name]": "app"})
    assert [p["attributes"]["name"] for p in r.json()["data"]] == [
        "alpha",
        "beta-east",
        "beta-west",
    ]
    r = await admin.get(POOLS, params={"page[size]": "3", "page[number]": "2"})
    body = r.json()
    assert [p["attributes"]["name"] for p in body["data"]] == ["gamma"]
    assert body["meta"]["pagination"]["total-count"] == 4


async def test_name_is_required_and_unique_per_organization(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    r = await admin.post(POOLS, json=pool_body())
    assert r.status_code == 422
    assert pointer(r) == "/data/attributes/name"
    r = await admin.post(POOLS, json=pool_body("x" * 91))
    assert r.status_code == 422
    await make_pool(admin, "same")
    r = await admin.post(POOLS, json=pool_body("same"))
    assert r.status_code == 409
    assert "already exists" in detail(r)
    other = await make_org(app)
    r = await admin.post(f"/api/v2/organizations/{other}/agent-pools", json=pool_body("same"))
    assert r.status_code == 201, r.text


async def test_malformed_bodies_are_refused_naming_the_member(admin: httpx.AsyncClient) -> None:
    r = await admin.post(POOLS, json=pool_body("p", **{"organization-scoped": "yes"}))
    assert r.status_code == 422
    assert pointer(r) == "/data/attributes/organization-scoped"
    pool = await make_pool(admin, "p")
    path = f"/api/v2/agent-pools/{pool['id']}"
    bad_rel = {"data": {"type": "agent-pools", "relationships": {"allowed-workspaces": {}}}}
    r = await admin.patch(path, json=bad_rel)
    assert r.status_code == 422
    assert pointer(r) == "/data/relationships/allowed-workspaces"
    r = await admin.patch(path, json=allowed_body("ws-AAAAAAAAAAAAAAAA"))
    assert r.status_code == 422
    assert pointer(r) == "/data/relationships/allowed-workspaces/data/0/id"
    projects = {
        "data": {
            "type": "agent-pools",
            "relationships": {"allowed-projects": {"data": [{"type": "projects", "id": "p"}]}},
        }
    }
    r = await admin.patch(path, json=projects)
    assert r.status_code == 422
    assert "projects" in detail(r)


async def test_members_read_pools_but_only_owners_manage_them(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    pool = await make_pool(admin, "shared")
    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as client:
        assert (await client.get(POOLS)).status_code == 200
        assert (await client.get(f"/api/v2/agent-pools/{pool['id']}")).status_code == 200
        assert (await client.get(f"/api/v2/agent-pools/{pool['id']}/agents")).status_code == 200
        r = await client.post(POOLS, json=pool_body("mine"))
        assert r.status_code == 403
        assert "agent pools" in detail(r)
        r = await client.patch(f"/api/v2/agent-pools/{pool['id']}", json=pool_body("renamed"))
        assert r.status_code == 403
        assert (await client.delete(f"/api/v2/agent-pools/{pool['id']}")).status_code == 403
        path = f"/api/v2/agent-pools/{pool['id']}/authentication-tokens"
        assert (await client.get(path)).status_code == 403
        assert (await client.post(path, json=token_body())).status_code == 403
    owner = await make_user(app, organization="default", role="owner")
    async with owner.client(app) as client:
        r = await client.post(POOLS, json=pool_body("owners"))
        assert r.status_code == 201, r.text
        r = await client.get("/api/v2/organizations/default")
        assert r.json()["data"]["attributes"]["permissions"]["can-update-agent-pools"] is True


async def test_pools_of_another_organization_are_invisible(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    pool = await make_pool(admin, "private")
    org = await make_org(app)
    outsider = await make_user(app, organization=org, role="owner")
    async with outsider.client(app) as client:
        for method, path in (
            ("GET", POOLS),
            ("GET", f"/api/v2/agent-pools/{pool['id']}"),
            ("DELETE", f"/api/v2/agent-pools/{pool['id']}"),
            ("GET", f"/api/v2/agent-pools/{pool['id']}/agents"),
            ("GET", f"/api/v2/agent-pools/{pool['id']}/authentication-tokens"),
        ):
            r = await client.request(method, path)
            assert r.status_code == 404, (method, path, r.text)
        r = await client.get(f"/api/v2/organizations/{org}/agent-pools")
        assert r.json()["data"] == []


# -- agent tokens --------------------------------------------------------------------------


async def test_token_is_shown_once_and_only_its_hash_is_stored(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    pool = await make_pool(admin, "tokens")
    path = f"/api/v2/agent-pools/{pool['id']}/authentication-tokens"
    r = await admin.post(path, json=token_body("host-1"))
    assert r.status_code == 201, r.text
    created = r.json()["data"]
    assert created["type"] == "authentication-tokens"
    plaintext = created["attributes"]["token"]
    assert plaintext and created["attributes"]["description"] == "host-1"
    listed = (await admin.get(path)).json()
    assert [t["id"] for t in listed["data"]] == [created["id"]]
    assert listed["data"][0]["attributes"]["token"] is None
    shown = await admin.get(f"/api/v2/authentication-tokens/{created['id']}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["data"]["attributes"]["token"] is None
    async with app.state.sessionmaker() as session:
        token = (await session.execute(select(Token).where(Token.id == created["id"]))).scalar_one()
    assert token.kind == "agent-pool"
    assert token.agent_pool_id == pool["id"]
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext not in repr({c.name: getattr(token, c.name) for c in Token.__table__.columns})


async def test_description_is_required(admin: httpx.AsyncClient) -> None:
    pool = await make_pool(admin, "tokens")
    path = f"/api/v2/agent-pools/{pool['id']}/authentication-tokens"
    for body in (token_body(None), token_body("  ")):
        r = await admin.post(path, json=body)
        assert r.status_code == 422, r.text
        assert pointer(r) == "/data/attributes/description"


async def test_agent_token_is_no_api_credential(app: FastAPI, admin: httpx.AsyncClient) -> None:
    pool = await make_pool(admin, "tokens")
    r = await admin.post(
        f"/api/v2/agent-pools/{pool['id']}/authentication-tokens", json=token_body()
    )
    plaintext = r.json()["data"]["attributes"]["token"]
    agent_token = Actor("", "", plaintext)
    async with agent_token.client(app) as client:
        for path in ("/api/v2/account/details", POOLS, f"/api/v2/agent-pools/{pool['id']}"):
            r = await client.get(path)
            assert r.status_code == 401, (path, r.text)


async def test_owner_revokes_agent_token_member_may_not(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    pool = await make_pool(admin, "tokens")
    path = f"/api/v2/agent-pools/{pool['id']}/authentication-tokens"
    token_id = (await admin.post(path, json=token_body())).json()["data"]["id"]
    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as client:
        assert (await client.get(f"/api/v2/authentication-tokens/{token_id}")).status_code == 403
        r = await client.delete(f"/api/v2/authentication-tokens/{token_id}")
        assert r.status_code == 403
    org = await make_org(app)
    outsider = await make_user(app, organization=org, role="owner")
    async with outsider.client(app) as client:
        r = await client.delete(f"/api/v2/authentication-tokens/{token_id}")
        assert r.status_code == 404
    owner = await make_user(app, organization="default", role="owner")
    async with owner.client(app) as client:
        r = await client.delete(f"/api/v2/authentication-tokens/{token_id}")
        assert r.status_code == 204, r.text
        r = await client.get(f"/api/v2/authentication-tokens/{token_id}")
        assert r.status_code == 404
    assert (await admin.get(path)).json()["data"] == []


async def test_deleting_a_pool_deletes_its_tokens_and_agents(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    pool = await make_pool(admin, "gone")
    path = f"/api/v2/agent-pools/{pool['id']}/authentication-tokens"
    token_id = (await admin.post(path, json=token_body())).json()["data"]["id"]
    agent_id = await add_agent(app, pool["id"], "host-1")
    assert (await admin.delete(f"/api/v2/agent-pools/{pool['id']}")).status_code == 204
    assert (await admin.get(f"/api/v2/authentication-tokens/{token_id}")).status_code == 404
    assert (await admin.get(f"/api/v2/agents/{agent_id}")).status_code == 404


# -- workspaces on a pool ------------------------------------------------------------------


async def test_agent_mode_needs_a_pool_of_the_organization(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws_path = "/api/v2/organizations/default/workspaces"
    body = {"data": {"type": "workspaces", "attributes": {"name": "w", "execution-mode": "agent"}}}
    r = await admin.post(ws_path, json=body)
    assert r.status_code == 422
    assert pointer(r) == "/data/attributes/agent-pool-id"
    assert "needs an agent pool" in detail(r)
    other = await make_org(app)
    r = await admin.post(f"/api/v2/organizations/{other}/agent-pools", json=pool_body("theirs"))
    theirs = r.json()["data"]["id"]
    body["data"]["attributes"]["agent-pool-id"] = theirs
    r = await admin.post(ws_path, json=body)
    assert r.status_code == 422
    assert "not found in the workspace's organization" in detail(r)
    body["data"]["attributes"]["agent-pool-id"] = "not-an-id"
    assert (await admin.post(ws_path, json=body)).status_code == 422
    pool = await make_pool(admin, "ours")
    body["data"]["attributes"]["agent-pool-id"] = pool["id"]
    r = await admin.post(ws_path, json=body)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert data["attributes"]["execution-mode"] == "agent"
    assert data["relationships"]["agent-pool"]["data"] == {"type": "agent-pools", "id": pool["id"]}
    shown = (await admin.get(f"/api/v2/agent-pools/{pool['id']}")).json()["data"]
    assert shown["relationships"]["workspaces"]["data"] == [
        {"type": "workspaces", "id": data["id"]}
    ]


async def test_pool_id_without_agent_mode_is_refused(admin: httpx.AsyncClient) -> None:
    pool = await make_pool(admin, "p")
    ws = await make_workspace(admin, "w")
    r = await ws_patch(admin, ws, **{"agent-pool-id": pool["id"]})
    assert r.status_code == 422
    assert "needs execution-mode agent" in detail(r)


async def test_relationship_form_and_switching_away_clears_the_pool(
    admin: httpx.AsyncClient,
) -> None:
    pool = await make_pool(admin, "p")
    ws = await make_workspace(admin, "w")
    r = await admin.patch(
        f"/api/v2/workspaces/{ws}",
        json={
            "data": {
                "type": "workspaces",
                "attributes": {"execution-mode": "agent"},
                "relationships": {
                    "agent-pool": {"data": {"type": "agent-pools", "id": pool["id"]}}
                },
            }
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["relationships"]["agent-pool"]["data"]["id"] == pool["id"]
    # Deleting a pool a workspace runs on is refused, naming the workspace.
    r = await admin.delete(f"/api/v2/agent-pools/{pool['id']}")
    assert r.status_code == 409
    assert "w" in detail(r)
    r = await ws_patch(admin, ws, **{"execution-mode": "remote"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["relationships"]["agent-pool"]["data"] is None
    assert (await admin.delete(f"/api/v2/agent-pools/{pool['id']}")).status_code == 204


async def test_scoped_pool_takes_only_allowed_workspaces(admin: httpx.AsyncClient) -> None:
    pool = await make_pool(admin, "scoped", **{"organization-scoped": False})
    ws = await make_workspace(admin, "w")
    attrs = {"execution-mode": "agent", "agent-pool-id": pool["id"]}
    r = await ws_patch(admin, ws, **attrs)
    assert r.status_code == 422
    assert "allowed-workspaces" in detail(r)
    r = await admin.patch(f"/api/v2/agent-pools/{pool['id']}", json=allowed_body(ws))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["relationships"]["allowed-workspaces"]["data"] == [
        {"type": "workspaces", "id": ws}
    ]
    r = await ws_patch(admin, ws, **attrs)
    assert r.status_code == 200, r.text
    # An empty list clears the allowed workspaces (go-tfe UpdateAllowedWorkspaces).
    r = await admin.patch(f"/api/v2/agent-pools/{pool['id']}", json=allowed_body())
    assert r.json()["data"]["relationships"]["allowed-workspaces"]["data"] == []


async def test_member_cannot_point_a_workspace_it_does_not_administer_at_a_pool(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    pool = await make_pool(admin, "p")
    ws = await make_workspace(admin, "w")
    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as client:
        r = await ws_patch(client, ws, **{"execution-mode": "agent", "agent-pool-id": pool["id"]})
    assert r.status_code == 403


# -- the organization's default agent pool -------------------------------------------------

ORG = "/api/v2/organizations/default"


def org_defaults(
    mode: str | None = None, pool_id: str | bool | None = False, *, attribute: bool = False
) -> dict[str, Any]:
    """An organization PATCH body; ``pool_id`` False leaves the pool out, None sends null."""
    data: dict[str, Any] = {"type": "organizations", "attributes": {}}
    if mode is not None:
        data["attributes"]["default-execution-mode"] = mode
    if pool_id is not False:
        if attribute:
            data["attributes"]["default-agent-pool-id"] = pool_id
        else:
            ref = None if pool_id is None else {"type": "agent-pools", "id": pool_id}
            data["relationships"] = {"default-agent-pool": {"data": ref}}
    return {"data": data}


async def test_default_mode_agent_needs_an_organization_scoped_pool_of_the_organization(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    r = await admin.patch(ORG, json=org_defaults("agent"))
    assert r.status_code == 422
    assert pointer(r) == "/data/relationships/default-agent-pool"
    assert "needs a default-agent-pool" in detail(r)
    other = await make_org(app)
    r = await admin.post(f"/api/v2/organizations/{other}/agent-pools", json=pool_body("theirs"))
    r = await admin.patch(ORG, json=org_defaults("agent", r.json()["data"]["id"]))
    assert r.status_code == 422
    assert "not found in the organization" in detail(r)
    r = await admin.patch(ORG, json=org_defaults("agent", "not-an-id"))
    assert r.status_code == 422
    scoped = await make_pool(admin, "scoped", **{"organization-scoped": False})
    r = await admin.patch(ORG, json=org_defaults("agent", scoped["id"]))
    assert r.status_code == 422
    assert "not organization-scoped" in detail(r)
    r = await admin.patch(
        ORG,
        json={
            "data": {
                "type": "organizations",
                "attributes": {"default-execution-mode": "agent"},
                "relationships": {
                    "default-agent-pool": {"data": {"type": "workspaces", "id": "x"}}
                },
            }
        },
    )
    assert r.status_code == 422
    assert pointer(r) == "/data/relationships/default-agent-pool/data/type"
    shown = (await admin.get(ORG)).json()["data"]
    assert shown["attributes"]["default-execution-mode"] == "remote"
    assert shown["relationships"]["default-agent-pool"]["data"] is None


async def test_pool_without_default_mode_agent_is_refused(admin: httpx.AsyncClient) -> None:
    pool = await make_pool(admin, "p")
    r = await admin.patch(ORG, json=org_defaults(None, pool["id"]))
    assert r.status_code == 422
    assert "needs default-execution-mode agent" in detail(r)
    r = await admin.patch(ORG, json=org_defaults("local", pool["id"], attribute=True))
    assert r.status_code == 422
    assert "needs default-execution-mode agent" in detail(r)


async def test_default_pool_goes_to_new_workspaces_and_switching_away_clears_it(
    admin: httpx.AsyncClient,
) -> None:
    pool = await make_pool(admin, "default-pool")
    r = await admin.patch(ORG, json=org_defaults("agent", pool["id"]))
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["attributes"]["default-execution-mode"] == "agent"
    assert data["relationships"]["default-agent-pool"]["data"] == {
        "type": "agent-pools",
        "id": pool["id"],
    }
    # Other settings change without repeating the pool.
    r = await admin.patch(
        ORG, json={"data": {"type": "organizations", "attributes": {"session-timeout": 60}}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["relationships"]["default-agent-pool"]["data"]["id"] == pool["id"]

    # A workspace created without an execution mode (or with agent and no pool) takes both.
    ws_path = "/api/v2/organizations/default/workspaces"
    for name, attrs in (("plain", {}), ("agent-no-pool", {"execution-mode": "agent"})):
        body = {"data": {"type": "workspaces", "attributes": {"name": name, **attrs}}}
        r = await admin.post(ws_path, json=body)
        assert r.status_code == 201, r.text
        created = r.json()["data"]
        assert created["attributes"]["execution-mode"] == "agent"
        assert created["relationships"]["agent-pool"]["data"]["id"] == pool["id"]
    # An explicit mode or pool wins over the organization's.
    other = await make_pool(admin, "other")
    body = {
        "data": {
            "type": "workspaces",
            "attributes": {"name": "own-pool", "agent-pool-id": other["id"]},
        }
    }
    r = await admin.post(ws_path, json=body)
    assert r.json()["data"]["relationships"]["agent-pool"]["data"]["id"] == other["id"]
    body = {
        "data": {"type": "workspaces", "attributes": {"name": "loc", "execution-mode": "local"}}
    }
    r = await admin.post(ws_path, json=body)
    assert r.json()["data"]["attributes"]["execution-mode"] == "local"
    assert r.json()["data"]["relationships"]["agent-pool"]["data"] is None

    # Switching the organization away from agent clears its pool; workspaces keep theirs.
    r = await admin.patch(ORG, json=org_defaults("remote"))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["relationships"]["default-agent-pool"]["data"] is None
    r = await admin.post(
        ws_path, json={"data": {"type": "workspaces", "attributes": {"name": "later"}}}
    )
    assert r.json()["data"]["attributes"]["execution-mode"] == "remote"
    # Back to agent needs the pool again.
    r = await admin.patch(ORG, json=org_defaults("agent"))
    assert r.status_code == 422


async def test_pytfe_attribute_form_and_conflicting_forms(admin: httpx.AsyncClient) -> None:
    one = await make_pool(admin, "one")
    two = await make_pool(admin, "two")
    r = await admin.patch(ORG, json=org_defaults("agent", one["id"], attribute=True))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["relationships"]["default-agent-pool"]["data"]["id"] == one["id"]
    body = org_defaults("agent", two["id"])
    body["data"]["attributes"]["default-agent-pool-id"] = one["id"]
    r = await admin.patch(ORG, json=body)
    assert r.status_code == 422
    assert "name different pools" in detail(r)
    # pytfe's reset: remote with an explicit null pool.
    body = org_defaults("remote", None, attribute=True)
    r = await admin.patch(ORG, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["relationships"]["default-agent-pool"]["data"] is None


async def test_default_pool_cannot_be_deleted_or_scoped(admin: httpx.AsyncClient) -> None:
    pool = await make_pool(admin, "keep")
    assert (await admin.patch(ORG, json=org_defaults("agent", pool["id"]))).status_code == 200
    r = await admin.delete(f"/api/v2/agent-pools/{pool['id']}")
    assert r.status_code == 409
    assert "default agent pool of organization default" in detail(r)
    r = await admin.patch(
        f"/api/v2/agent-pools/{pool['id']}", json=pool_body(**{"organization-scoped": False})
    )
    assert r.status_code == 409
    assert pointer(r) == "/data/attributes/organization-scoped"
    assert (await admin.patch(ORG, json=org_defaults("local"))).status_code == 200
    assert (await admin.delete(f"/api/v2/agent-pools/{pool['id']}")).status_code == 204


async def test_members_cannot_set_the_default_pool(app: FastAPI, admin: httpx.AsyncClient) -> None:
    pool = await make_pool(admin, "p")
    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as client:
        r = await client.patch(ORG, json=org_defaults("agent", pool["id"]))
    assert r.status_code == 403


async def test_new_organization_cannot_start_with_default_mode_agent(
    admin: httpx.AsyncClient,
) -> None:
    pool = await make_pool(admin, "p")
    body = org_defaults("agent", pool["id"])
    body["data"]["attributes"].update(name="fresh", email="a@b.test")
    r = await admin.post("/api/v2/organizations", json=body)
    assert r.status_code == 422
    assert "not found in the organization" in detail(r)
    assert (await admin.get("/api/v2/organizations/fresh")).status_code == 404


# -- agents --------------------------------------------------------------------------------


async def test_agents_show_derived_status_and_pool_numbers(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    pool = await make_pool(admin, "p")
    fresh = await add_agent(app, pool["id"], "a-fresh", capacity=3)
    await add_agent(app, pool["id"], "b-stale", ping_age=3600)
    await add_agent(app, pool["id"], "c-exited", status="exited", ping_age=3600)
    r = await admin.get(f"/api/v2/agent-pools/{pool['id']}/agents")
    assert r.status_code == 200, r.text
    shown = {a["attributes"]["name"]: a["attributes"] for a in r.json()["data"]}
    assert shown["a-fresh"]["status"] == "idle"
    assert shown["a-fresh"]["online"] is True
    assert shown["a-fresh"]["capacity"] == 3
    assert shown["a-fresh"]["active-runs"] == 0
    assert shown["a-fresh"]["ip-address"] == "10.0.0.7"
    assert shown["b-stale"]["status"] == "unknown"
    assert shown["b-stale"]["online"] is False
    assert shown["c-exited"]["status"] == "exited"
    attrs = (await admin.get(f"/api/v2/agent-pools/{pool['id']}")).json()["data"]["attributes"]
    assert (attrs["agent-count"], attrs["online-agent-count"], attrs["capacity"]) == (2, 1, 3)
    assert attrs["active-runs"] == 0
    r = await admin.get(f"/api/v2/agents/{fresh}")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["type"] == "agents"
    assert data["relationships"]["agent-pool"]["data"] == {"type": "agent-pools", "id": pool["id"]}


async def test_agent_filters(app: FastAPI, admin: httpx.AsyncClient) -> None:
    pool = await make_pool(admin, "p")
    await add_agent(app, pool["id"], "fresh")
    await add_agent(app, pool["id"], "stale", ping_age=3600)
    path = f"/api/v2/agent-pools/{pool['id']}/agents"
    since = (utcnow() - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    r = await admin.get(path, params={"filter[last-ping-since]": since})
    assert [a["attributes"]["name"] for a in r.json()["data"]] == ["fresh"]
    r = await admin.get(path, params={"filter[status]": "unknown"})
    assert [a["attributes"]["name"] for a in r.json()["data"]] == ["stale"]
    r = await admin.get(path, params={"filter[last-ping-since]": "yesterday"})
    assert r.status_code == 400
    assert "filter[last-ping-since]" in detail(r)
    r = await admin.get(path, params={"filter[status]": "asleep"})
    assert r.status_code == 422
    assert "filter[status]" in detail(r)


async def test_builtin_agents_are_for_platform_admins(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    pool = await make_pool(admin, "p")
    builtin = await add_agent(app, None, "builtin-host-1", capacity=2)
    await add_agent(app, pool["id"], "pooled")
    r = await admin.get("/api/v2/admin/agents")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    names = [a["attributes"]["name"] for a in data]
    assert "builtin-host-1" in names and "pooled" in names
    builtin_row = next(a for a in data if a["id"] == builtin)
    assert builtin_row["relationships"]["agent-pool"]["data"] is None
    assert (await admin.get(f"/api/v2/agents/{builtin}")).status_code == 200
    owner = await make_user(app, organization="default", role="owner")
    async with owner.client(app) as client:
        assert (await client.get("/api/v2/admin/agents")).status_code == 403
        assert (await client.get(f"/api/v2/agents/{builtin}")).status_code == 404
    org = await make_org(app)
    outsider = await make_user(app, organization=org, role="owner")
    pooled = next(a["id"] for a in data if a["attributes"]["name"] == "pooled")
    async with outsider.client(app) as client:
        assert (await client.get(f"/api/v2/agents/{pooled}")).status_code == 404
        assert (await client.get("/api/v2/agents/agent-AAAAAAAAAAAAAAAA")).status_code == 404


@pytest.mark.parametrize("path", ["/api/v2/agents/nonsense", "/api/v2/agent-pools/nonsense"])
async def test_malformed_ids_are_404(admin: httpx.AsyncClient, path: str) -> None:
    assert (await admin.get(path)).status_code == 404


# -- metrics -------------------------------------------------------------------------------


async def test_pool_gauges_reach_metrics(app: FastAPI, admin: httpx.AsyncClient) -> None:
    pool = await make_pool(admin, "metered")
    await add_agent(app, pool["id"], "host-1", capacity=4)
    await add_agent(app, None, "builtin-x", capacity=2)
    async with app.state.sessionmaker() as session:
        rows = await agentpools.gauges(session, agentpools.heartbeat_cutoff(60))
    app.state.metrics.set_pool_gauges(rows)
    text = (await admin.get("/metrics")).text
    assert (
        f'terrapod_agent_pool_capacity{{organization="default",pool="{pool["id"]}",'
        'pool_name="metered"} 4.0'
    ) in text
    assert 'terrapod_agent_pool_agents_online{organization="",pool="builtin"' in text


async def test_deleting_the_organization_takes_its_pools_along(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    org = await make_org(app)
    r = await admin.post(f"/api/v2/organizations/{org}/agent-pools", json=pool_body("p"))
    pool_id = r.json()["data"]["id"]
    r = await admin.post(f"/api/v2/agent-pools/{pool_id}/authentication-tokens", json=token_body())
    token_id = r.json()["data"]["id"]
    await add_agent(app, pool_id, "host-1")
    r = await admin.post(
        f"/api/v2/organizations/{org}/workspaces",
        json={
            "data": {
                "type": "workspaces",
                "attributes": {"name": "w", "execution-mode": "agent", "agent-pool-id": pool_id},
            }
        },
    )
    assert r.status_code == 201, r.text
    assert (await admin.delete(f"/api/v2/organizations/{org}")).status_code == 204
    assert (await admin.get(f"/api/v2/agent-pools/{pool_id}")).status_code == 404
    assert (await admin.get(f"/api/v2/authentication-tokens/{token_id}")).status_code == 404


async def test_running_and_queued_jobs_are_counted_per_agent_and_pool(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    pool = await make_pool(admin, "busy")
    agent_id = await add_agent(app, pool["id"], "host-1", status="busy", capacity=2)
    runs = []
    for name in ("w1", "w2"):
        ws = await make_workspace(admin, name)
        await upload_configuration(admin, ws)
        runs.append((await create_run(admin, ws))["id"])
    # The listener protocol assigns jobs to pools and agents; here the rows are set directly,
    # one job running on the agent and one waiting in the pool.
    async with app.state.sessionmaker() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        await session.execute(
            update(Job)
            .where(Job.run_id == runs[0])
            .values(pool_id=pool["id"], agent_id=agent_id, status="running")
        )
        await session.execute(
            update(Job).where(Job.run_id == runs[1]).values(pool_id=pool["id"], status="queued")
        )
        await session.commit()
    agent = (await admin.get(f"/api/v2/agents/{agent_id}")).json()["data"]["attributes"]
    assert (agent["status"], agent["active-runs"]) == ("busy", 1)
    attrs = (await admin.get(f"/api/v2/agent-pools/{pool['id']}")).json()["data"]["attributes"]
    assert attrs["active-runs"] == 1
    async with app.state.sessionmaker() as session:
        rows = await agentpools.gauges(session, agentpools.heartbeat_cutoff(60))
    numbers = next(r for r in rows if r.pool == pool["id"])
    assert (numbers.active_jobs, numbers.queued_jobs, numbers.capacity) == (1, 1, 2)
