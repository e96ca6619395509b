"""The generic endpoint suite: the same checks over every route in tests/quality/routes.py."""

from __future__ import annotations

from contextlib import nullcontext

import httpx
import pytest

from tests.factories import Actor
from tests.quality import gates
from tests.quality.conftest import WORLD_PARTS, World, values_for
from tests.quality.routes import ROUTES, Route

TOKEN_ROUTES = [r for r in ROUTES if r.needs not in ("public", "signed")]
SCOPED = [r for r in TOKEN_ROUTES if r.needs in ("member", "owner", "self")]
RESTRICTED = [r for r in TOKEN_ROUTES if r.needs in ("owner", "platform", "self")]
WITH_BODY = [r for r in TOKEN_ROUTES if r.body is not None]
LISTS = [r for r in ROUTES if r.is_list]


def rid(route: Route) -> str:
    return f"{route.method} {route.path}"


def caller(world: World, route: Route) -> Actor | None:
    """Who succeeds with the least rights (None: the platform admin)."""
    return {
        "member": world.member,
        "any": world.member,
        "self": world.member,
        "owner": world.owner,
        "platform": None,
    }[route.needs]


async def prepare(world: World, route: Route, actor: Actor | None) -> None:
    ws = world.values["workspace_id"]
    if route.extra.get("locked_by_caller"):
        client = world.client(actor) if actor else world.admin
        async with client if actor else nullcontext(client) as c:
            assert (await c.post(f"/api/v2/workspaces/{ws}/actions/lock")).status_code == 200
    if route.extra.get("locked_by_other"):
        async with world.client(world.other_member) as c:
            assert (await c.post(f"/api/v2/workspaces/{ws}/actions/lock")).status_code == 200


# IDs that look real but name nothing: 401 must come before any lookup.
PLACEHOLDERS = {
    "name": "default",
    "org_name": "default",
    "workspace_id": "ws-AAAAAAAAAAAAAAAA",
    "empty_workspace_id": "ws-BBBBBBBBBBBBBBBB",
    "workspace_name": "main",
    "other_workspace_id": "ws-CCCCCCCCCCCCCCCC",
    "user_id": "user-AAAAAAAAAAAAAAAA",
    "token_id": "at-AAAAAAAAAAAAAAAA",
    "sv_id": "sv-AAAAAAAAAAAAAAAA",
    "old_state_version_id": "sv-BBBBBBBBBBBBBBBB",
    "output_id": "wsout-AAAAAAAAAAAAAAAA",
    "md5": "0" * 32,
}
for _part in WORLD_PARTS:
    PLACEHOLDERS.update(_part.PLACEHOLDERS)


@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=rid)
async def test_no_token_is_401(anon: httpx.AsyncClient, route: Route) -> None:
    assert await gates.check_token_required(anon, route, values_for(route, PLACEHOLDERS)) == []


@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=rid)
async def test_least_privileged_caller_succeeds(world: World, route: Route) -> None:
    actor = caller(world, route)
    await prepare(world, route, actor)
    values = values_for(route, world.values)
    counter = gates.QueryCounter(world.app.state.engine)
    client = world.client(actor) if actor else world.admin
    async with client if actor else nullcontext(client) as c:
        await c.get("/api/v2/account/details")  # resolve and cache the principal
        with counter.counting() as counted:
            r = await gates.call(c, route, values)
    assert r.status_code < 300, f"{rid(route)}: {r.status_code} {gates.describe(r)}"
    assert counted.count <= route.query_budget, (
        f"{rid(route)} made {counted.count} queries; its budget is {route.query_budget}"
    )


@pytest.mark.parametrize("route", SCOPED, ids=rid)
async def test_token_from_another_organization_is_404(world: World, route: Route) -> None:
    values = values_for(route, world.values)
    async with world.client(world.outsider) as c:
        assert await gates.check_status(c, route, values, 404, "outsider") == []


@pytest.mark.parametrize("route", RESTRICTED, ids=rid)
async def test_too_little_permission_gets_the_documented_status(world: World, route: Route) -> None:
    values = values_for(route, world.values)
    # Owner-level routes refuse a member with 403; platform routes refuse an organization
    # owner with 403; a user's own resources are invisible (404) to another user.
    actor, status = {
        "owner": (world.member, 403),
        "platform": (world.owner, 403),
        "self": (world.other_member, 404),
    }[route.needs]
    async with world.client(actor) as c:
        assert await gates.check_status(c, route, values, status, route.needs) == []


@pytest.mark.parametrize("route", WITH_BODY, ids=rid)
async def test_malformed_body_is_a_4xx_naming_the_member(world: World, route: Route) -> None:
    actor = caller(world, route)
    values = values_for(route, world.values)
    client = world.client(actor) if actor else world.admin
    async with client if actor else nullcontext(client) as c:
        assert await gates.check_malformed_bodies(c, route, values) == []


@pytest.mark.parametrize("route", LISTS, ids=rid)
async def test_list_paginates_and_has_no_n_plus_one(world: World, route: Route) -> None:
    actor = caller(world, route)
    values = values_for(route, world.values)
    counter = gates.QueryCounter(world.app.state.engine)
    client = world.client(actor) if actor else world.admin
    async with client if actor else nullcontext(client) as c:
        assert await gates.check_pagination(c, route, values) == []
        small, large = await gates.list_query_counts(c, counter, route, values)
    assert gates.n_plus_one_problem(route, small, large) is None
