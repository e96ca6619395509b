"""The generic endpoint suite: the same checks over every route in tests/quality/routes.py.

Checks that cannot change the world (refusals, and reads) run in test_endpoints_shared.py
against one world per database; the checks here may change it, so each test gets a fresh
world (building one takes a second or two)."""

from __future__ import annotations

from contextlib import nullcontext

import pytest

from tests.factories import Actor
from tests.quality import gates
from tests.quality.conftest import WORLD_PARTS, World, values_for
from tests.quality.routes import ROUTES, Route

# Limited to 30 calls a minute per token: each check of these needs fresh tokens.
RATE_LIMITED = {
    ("GET", "/api/v2/workspaces/{workspace_id}/runs"),
    ("GET", "/api/v2/organizations/{org_name}/runs"),
}


def changes_nothing(route: Route) -> bool:
    """A read that needs no preparation: safe to check against a shared world."""
    return (
        route.method == "GET"
        and not route.extra.get("locked_by_caller")
        and not route.extra.get("locked_by_other")
        and (route.method, route.path) not in RATE_LIMITED
    )


TOKEN_ROUTES = [r for r in ROUTES if r.needs not in ("public", "signed")]
SCOPED = [r for r in TOKEN_ROUTES if r.needs in ("member", "owner", "self")]
RESTRICTED = [r for r in TOKEN_ROUTES if r.needs in ("owner", "platform", "self")]
WITH_BODY = [r for r in TOKEN_ROUTES if r.body is not None]
LISTS = [r for r in ROUTES if r.is_list]
SHARED_READS = [r for r in TOKEN_ROUTES if changes_nothing(r)]
OWN_WORLD = [r for r in TOKEN_ROUTES if not changes_nothing(r)]
SHARED_LISTS = [r for r in LISTS if changes_nothing(r)]
OWN_WORLD_LISTS = [r for r in LISTS if not changes_nothing(r)]


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


@pytest.mark.parametrize("route", OWN_WORLD, ids=rid)
async def test_least_privileged_caller_succeeds(world: World, route: Route) -> None:
    await check_least_privileged_caller(world, route)


async def check_least_privileged_caller(world: World, route: Route) -> None:
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


@pytest.mark.parametrize("route", OWN_WORLD_LISTS, ids=rid)
async def test_list_paginates_and_has_no_n_plus_one(world: World, route: Route) -> None:
    await check_list(world, route)


async def check_list(world: World, route: Route) -> None:
    actor = caller(world, route)
    values = values_for(route, world.values)
    counter = gates.QueryCounter(world.app.state.engine)
    client = world.client(actor) if actor else world.admin
    async with client if actor else nullcontext(client) as c:
        assert await gates.check_pagination(c, route, values) == []
        small, large = await gates.list_query_counts(c, counter, route, values)
    assert gates.n_plus_one_problem(route, small, large) is None
