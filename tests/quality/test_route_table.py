"""A snapshot of the route table: a new or changed route fails here until it is reviewed,
added to the snapshot, and covered by the generic endpoint suite (tests/quality/routes.py)."""

from __future__ import annotations

from fastapi.routing import APIRoute

from terrapod.app import ROUTERS
from tests.quality.routes import ROUTES


def route_table() -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods - {"HEAD"}
    }


def test_every_route_is_in_the_reviewed_table() -> None:
    actual = route_table()
    expected = {(r.method, r.path) for r in ROUTES}
    assert actual - expected == set(), "new routes: add them to tests/quality/routes.py"
    assert expected - actual == set(), "routes gone: remove them from tests/quality/routes.py"
