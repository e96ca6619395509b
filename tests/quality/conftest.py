"""A populated world for the generic endpoint suite: users in every role, an outsider
organization, workspaces with tags, consumers, state versions with outputs, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete

from terrapod.app import create_app
from terrapod.config import Settings
from terrapod.db.base import Base
from tests.api.conftest import admin, anon, app  # noqa: F401  (re-exported fixtures)
from tests.conftest import ADMIN_TOKEN
from tests.factories import Actor, make_org, make_user
from tests.quality import (
    world_actions,
    world_agentpools,
    world_configversions,
    world_notifications,
    world_runs,
    world_runtasks,
    world_runtriggers,
    world_variables,
    world_varsets,
)
from tests.quality.routes import Route
from tests.statefiles import create_body, md5, state

# Each domain adds what its routes need to the world in its own module.
WORLD_PARTS = (
    world_variables,
    world_configversions,
    world_runs,
    world_varsets,
    world_runtriggers,
    world_notifications,
    world_runtasks,
    world_actions,
    world_agentpools,
)


@dataclass
class World:
    app: FastAPI
    admin: httpx.AsyncClient
    owner: Actor
    member: Actor
    other_member: Actor
    outsider: Actor
    values: dict[str, str]

    def client(self, actor: Actor) -> httpx.AsyncClient:
        return actor.client(self.app)


async def _ok(r: httpx.Response) -> httpx.Response:
    assert r.status_code < 300, r.text
    return r


@pytest.fixture
async def world(app: FastAPI, admin: httpx.AsyncClient) -> World:  # noqa: F811
    """A fresh world for each test (for checks whose request may change it)."""
    return await build_world(app, admin)


@pytest.fixture(scope="module")
async def shared_world(migrated_settings: Settings) -> AsyncIterator[World]:
    """One world for a whole module, per database: for checks that change nothing (refusals).
    A world takes a second or two to build, and there are hundreds of such checks. The module
    must not use the function-scoped ``app`` fixture, whose teardown empties every table."""
    application = create_app(migrated_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        headers = {
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": "application/vnd.api+json",
        }
        async with httpx.AsyncClient(
            transport=transport, base_url="https://terrapod.test", headers=headers
        ) as admin_client:
            yield await build_world(application, admin_client)
        async with application.state.sessionmaker() as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))
            await session.commit()


async def build_world(app: FastAPI, admin: httpx.AsyncClient) -> World:  # noqa: F811
    for name in ("org-b", "org-c"):
        await make_org(app, name)
    owner = await make_user(app, organization="default", role="owner")
    member = await make_user(app, organization="default", role="member")
    async with app.state.sessionmaker() as session:  # a second organization to list
        from terrapod.access.principal import SYSTEM
        from terrapod.organizations import service as organizations

        org_b = await organizations.get_by_name(session, SYSTEM, "org-b")
        await organizations.add_member(session, SYSTEM, org_b, member.user_id, "member")
        await session.commit()
    app.state.tokens.cache.clear()
    other_member = await make_user(app, organization="default", role="member")
    await make_org(app, "elsewhere")
    outsider = await make_user(app, organization="elsewhere", role="owner")
    async with member.client(app) as m:
        for _ in range(3):
            await _ok(
                await m.post(
                    f"/api/v2/users/{member.user_id}/authentication-tokens",
                    json={"data": {"type": "authentication-tokens", "attributes": {}}},
                )
            )
        tokens = (await m.get(f"/api/v2/users/{member.user_id}/authentication-tokens")).json()[
            "data"
        ]
    org_ws = "/api/v2/organizations/default/workspaces"
    ids = []
    for name in ("main", "other", "third", "fourth"):
        r = await _ok(
            await admin.post(
                org_ws,
                json={
                    "data": {
                        "type": "workspaces",
                        "attributes": {"name": name, "tag-names": ["app"]},
                    }
                },
            )
        )
        ids.append(r.json()["data"]["id"])
    main, other = ids[0], ids[1]
    await _ok(
        await admin.post(
            f"/api/v2/workspaces/{main}/relationships/remote-state-consumers",
            json={"data": [{"type": "workspaces", "id": i} for i in ids[1:]]},
        )
    )
    await _ok(await admin.post(f"/api/v2/workspaces/{main}/actions/lock"))
    svs = []
    for serial in (1, 2, 3):
        outputs = {
            f"o{i}": {"value": f"v{i}", "type": "string", "sensitive": i == 0} for i in range(3)
        }
        r = await _ok(
            await admin.post(
                f"/api/v2/workspaces/{main}/state-versions",
                json=create_body(state(serial, outputs=outputs), serial),
            )
        )
        svs.append(r.json()["data"]["id"])
    await _ok(await admin.post(f"/api/v2/workspaces/{main}/actions/unlock"))
    await _ok(await admin.post("/api/v2/organizations/default/authentication-token"))
    outputs = (await admin.get(f"/api/v2/state-versions/{svs[-1]}/outputs")).json()["data"]
    values = {
        "name": "default",
        "org_name": "default",
        "workspace_id": main,
        "workspace_name": "main",
        "empty_workspace_id": ids[2],
        "other_workspace_id": other,
        "user_id": member.user_id,
        "token_id": tokens[0]["id"],
        "sv_id": svs[-1],
        "old_state_version_id": svs[0],
        "output_id": outputs[0]["id"],
        "md5": md5(b"pending"),
    }
    for part in WORLD_PARTS:
        values.update(await part.extend(app, admin, values))
    return World(app, admin, owner, member, other_member, outsider, values)


def values_for(route: Route, values: dict[str, str]) -> dict[str, str]:
    """``{name}`` is the workspace name under /organizations/{org_name}/workspaces/; routes
    that refuse a workspace with resources (safe-delete) get an empty one."""
    # A route may need another object of the world than the default (a run in its own state).
    for name, instead in route.extra.get("use", {}).items():
        values = {**values, name: values[instead]}
    if route.extra.get("empty_workspace"):
        values = {**values, "workspace_id": values["empty_workspace_id"], "workspace_name": "third"}
    if "{org_name}" in route.path:
        return {**values, "name": values["workspace_name"]}
    return values
