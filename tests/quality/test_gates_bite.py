"""The gates prove their teeth: a deliberately unprotected route and a deliberately N+1 list
are added to a real application, and the same gate functions the suite uses catch both."""

from __future__ import annotations

import httpx
from fastapi import APIRouter
from fastapi.routing import APIRoute
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from terrapod.deps import PrincipalDep, SessionDep
from terrapod.jsonapi.documents import document, resource
from terrapod.jsonapi.pagination import page_params, pagination
from terrapod.workspaces.models import Workspace, WorkspaceTag
from tests.quality import gates
from tests.quality.conftest import World
from tests.quality.routes import ROUTES, Route
from tests.quality.test_route_table import route_table

broken = APIRouter(prefix="/api/v2")


@broken.get("/organizations/{name}/unguarded")
async def unguarded(name: str, session: SessionDep) -> Response:
    # Forgot PrincipalDep: anyone can read every workspace name.
    rows = (await session.execute(select(Workspace.name))).scalars().all()
    return document([resource("workspaces", n, {"name": n}) for n in rows])


@broken.get("/organizations/{name}/n-plus-one")
async def n_plus_one(
    name: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    total = len((await session.execute(select(Workspace.id))).scalars().all())
    rows = (
        (
            await session.execute(
                select(Workspace).order_by(Workspace.name).offset(page.offset).limit(page.size)
            )
        )
        .scalars()
        .all()
    )
    data = []
    for ws in rows:  # one query per listed item: the bug the gate must catch
        tags = (
            (
                await session.execute(
                    select(WorkspaceTag.name).where(WorkspaceTag.workspace_id == ws.id)
                )
            )
            .scalars()
            .all()
        )
        data.append(resource("workspaces", ws.id, {"name": ws.name, "tag-names": list(tags)}))
    meta, links = pagination(request, page, total)
    return document(data, meta=meta, links=links)


UNGUARDED = Route("GET", "/api/v2/organizations/{name}/unguarded", "member")
N_PLUS_ONE = Route("GET", "/api/v2/organizations/{name}/n-plus-one", "member", is_list=True)


async def test_unprotected_route_is_caught(world: World, anon: httpx.AsyncClient) -> None:
    world.app.include_router(broken)
    problems = await gates.check_token_required(anon, UNGUARDED, world.values)
    assert problems and "expected 401, got 200" in problems[0]


async def test_n_plus_one_list_is_caught(world: World) -> None:
    world.app.include_router(broken)
    counter = gates.QueryCounter(world.app.state.engine)
    async with world.client(world.member) as c:
        small, large = await gates.list_query_counts(c, counter, N_PLUS_ONE, world.values)
    problem = gates.n_plus_one_problem(N_PLUS_ONE, small, large)
    assert problem is not None and "N+1" in problem


def test_a_new_route_breaks_the_snapshot() -> None:
    with_broken = route_table() | {
        (m, r.path) for r in broken.routes if isinstance(r, APIRoute) for m in r.methods
    }
    reviewed = {(r.method, r.path) for r in ROUTES}
    assert with_broken - reviewed == {
        ("GET", "/api/v2/organizations/{name}/unguarded"),
        ("GET", "/api/v2/organizations/{name}/n-plus-one"),
    }
