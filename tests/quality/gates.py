"""The checks every endpoint passes, as functions that return what is wrong (empty: fine).

They are functions, not just tests, so test_gates_bite.py can run them against deliberately
broken routes and show that they catch them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.quality.routes import Route

JSONAPI = "application/vnd.api+json"
PAGINATION_KEYS = {
    "current-page",
    "page-size",
    "prev-page",
    "next-page",
    "total-pages",
    "total-count",
}


class QueryCounter:
    """Counts SQL statements the application's engine executes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.count = 0

    def _on_execute(self, *_: Any) -> None:
        self.count += 1

    @contextmanager
    def counting(self) -> Iterator[QueryCounter]:
        self.count = 0
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._on_execute)
        try:
            yield self
        finally:
            event.remove(self.engine.sync_engine, "before_cursor_execute", self._on_execute)


def fill(template: Any, values: dict[str, str]) -> Any:
    """Substitute ``{placeholders}`` in a path, query or body."""
    if isinstance(template, str):
        for key, value in values.items():
            template = template.replace("{" + key + "}", value)
        return template
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    return template


def _is_jsonapi_error(response: httpx.Response, status: int) -> str | None:
    if response.status_code != status:
        return f"expected {status}, got {response.status_code}: {response.text[:200]}"
    if not response.headers.get("content-type", "").startswith(JSONAPI):
        return f"error is not JSON:API ({response.headers.get('content-type')})"
    errors = response.json().get("errors")
    if not errors or not errors[0].get("detail"):
        return "error document has no detail"
    return None


async def call(
    client: httpx.AsyncClient, route: Route, values: dict[str, str], **kw: Any
) -> httpx.Response:
    path = fill(route.path, values)
    params = fill(route.extra.get("query", {}), values)
    params.update(kw.pop("params", {}))
    body = kw.pop("json", fill(route.body, values) if route.body is not None else None)
    return await client.request(route.method, path, params=params, json=body, **kw)


async def check_token_required(
    client: httpx.AsyncClient, route: Route, values: dict[str, str]
) -> list[str]:
    """No token (and a bogus one) must be 401 before anything else is looked at."""
    problems = []
    for headers in ({}, {"Authorization": "Bearer not-a-real-token"}):
        r = await call(client, route, values, headers=headers)
        problem = _is_jsonapi_error(r, 401)
        if problem:
            problems.append(f"{route.method} {route.path} with {headers or 'no token'}: {problem}")
    return problems


async def check_status(
    client: httpx.AsyncClient, route: Route, values: dict[str, str], status: int, who: str
) -> list[str]:
    r = await call(client, route, values)
    problem = _is_jsonapi_error(r, status)
    return [f"{route.method} {route.path} as {who}: {problem}"] if problem else []


async def check_malformed_bodies(
    client: httpx.AsyncClient, route: Route, values: dict[str, str]
) -> list[str]:
    """Broken JSON is 400; a well-formed document with a wrongly typed member is a 4xx that
    names the member. Nothing is a 500."""
    if route.body is None:
        return []
    problems = []
    broken = await client.request(
        route.method,
        fill(route.path, values),
        content=b'{"data": {',
        headers={"Content-Type": JSONAPI},
    )
    if problem := _is_jsonapi_error(broken, 400):
        problems.append(f"{route.method} {route.path} broken JSON: {problem}")
    if isinstance(route.body["data"], dict):
        bad, pointer, status = (
            {"data": {**route.body["data"], "attributes": []}},
            "/data/attributes",
            422,
        )
    else:
        bad, pointer, status = {"data": "not-a-list"}, "/data", 400
    r = await call(client, route, values, json=fill(bad, values))
    if problem := _is_jsonapi_error(r, status):
        problems.append(f"{route.method} {route.path} wrong type: {problem}")
    elif r.json()["errors"][0].get("source", {}).get("pointer") != pointer:
        problems.append(
            f"{route.method} {route.path} wrong type: error does not point at {pointer}"
        )
    return problems


async def check_pagination(
    client: httpx.AsyncClient, route: Route, values: dict[str, str]
) -> list[str]:
    r = await call(client, route, values, params={"page[size]": "1"})
    if r.status_code != 200:
        return [f"{route.method} {route.path} page[size]=1: {r.status_code} {r.text[:200]}"]
    body = r.json()
    meta = body.get("meta", {}).get("pagination", {})
    problems = []
    if set(meta) != route.extra.get("pagination_keys", PAGINATION_KEYS):
        problems.append(f"{route.path}: meta.pagination keys {sorted(meta)}")
    if len(body["data"]) > 1:
        problems.append(f"{route.path}: page[size]=1 returned {len(body['data'])} items")
    return problems


async def list_query_counts(
    client: httpx.AsyncClient, counter: QueryCounter, route: Route, values: dict[str, str]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((items, queries) for a page of 1, (items, queries) for a page of 100)."""
    await call(client, route, values)  # warm the principal cache
    out = []
    for size in ("1", "100"):
        with counter.counting() as counted:
            r = await call(client, route, values, params={"page[size]": size})
        out.append((len(r.json()["data"]), counted.count))
    return out[0], out[1]


def n_plus_one_problem(route: Route, small: tuple[int, int], large: tuple[int, int]) -> str | None:
    if large[0] < 2:
        return f"{route.path}: the world holds fewer than 2 items; the check would prove nothing"
    if large[1] > small[1]:
        return (
            f"{route.path}: {small[1]} queries for {small[0]} item(s) but {large[1]} for "
            f"{large[0]}: the query count grows with the page size (N+1)"
        )
    return None


def describe(response: httpx.Response) -> str:
    try:
        return json.dumps(response.json())[:300]
    except ValueError:
        return response.text[:300]
