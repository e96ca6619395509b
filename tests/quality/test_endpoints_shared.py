"""The generic endpoint suite's checks that cannot change the world, against one world per
database (``shared_world``) instead of a fresh one each: refusals (a caller from another
organization gets 404, one with too little permission the documented status, no token 401,
a malformed body a 4xx naming the member) on every route, and the least-privileged caller and
pagination checks of reads that need no preparation (test_endpoints.changes_nothing). A
refusal that wrongly succeeded fails its own check.
"""

from __future__ import annotations

from contextlib import nullcontext

import httpx
import pytest

from tests.quality import gates
from tests.quality.conftest import World, values_for
from tests.quality.routes import Route
from tests.quality.test_endpoints import (
    PLACEHOLDERS,
    RESTRICTED,
    SCOPED,
    SHARED_LISTS,
    SHARED_READS,
    TOKEN_ROUTES,
    WITH_BODY,
    caller,
    check_least_privileged_caller,
    check_list,
    rid,
)


@pytest.mark.parametrize("route", SHARED_READS, ids=rid)
async def test_least_privileged_reader_succeeds(shared_world: World, route: Route) -> None:
    await check_least_privileged_caller(shared_world, route)


@pytest.mark.parametrize("route", SHARED_LISTS, ids=rid)
async def test_shared_list_paginates_and_has_no_n_plus_one(
    shared_world: World, route: Route
) -> None:
    await check_list(shared_world, route)


@pytest.mark.parametrize("route", SCOPED, ids=rid)
async def test_token_from_another_organization_is_404(shared_world: World, route: Route) -> None:
    values = values_for(route, shared_world.values)
    async with shared_world.client(shared_world.outsider) as c:
        assert await gates.check_status(c, route, values, 404, "outsider") == []


@pytest.mark.parametrize("route", RESTRICTED, ids=rid)
async def test_too_little_permission_gets_the_documented_status(
    shared_world: World, route: Route
) -> None:
    values = values_for(route, shared_world.values)
    # Owner-level routes refuse a member with 403; platform routes refuse an organization
    # owner with 403; a user's own resources are invisible (404) to another user.
    actor, status = {
        "owner": (shared_world.member, 403),
        "platform": (shared_world.owner, 403),
        "self": (shared_world.other_member, 404),
    }[route.needs]
    async with shared_world.client(actor) as c:
        assert await gates.check_status(c, route, values, status, route.needs) == []


@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=rid)
async def test_no_token_is_401(shared_world: World, route: Route) -> None:
    transport = httpx.ASGITransport(app=shared_world.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://terrapod.test") as anon:
        assert await gates.check_token_required(anon, route, values_for(route, PLACEHOLDERS)) == []


@pytest.mark.parametrize("route", WITH_BODY, ids=rid)
async def test_malformed_body_is_a_4xx_naming_the_member(shared_world: World, route: Route) -> None:
    actor = caller(shared_world, route)
    values = values_for(route, shared_world.values)
    client = shared_world.client(actor) if actor else shared_world.admin
    async with client if actor else nullcontext(client) as c:
        assert await gates.check_malformed_bodies(c, route, values) == []
