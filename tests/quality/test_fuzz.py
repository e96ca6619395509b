"""Schemathesis against a real ``terrapod serve``: no 5xx, and every response as documented.

The server runs as a subprocess (over TLS, started exactly as tests/e2e starts it) once per
database backend. Its OpenAPI document is the contract: for every operation in it schemathesis
sends the schema's examples, boundary "coverage" cases and ``MAX_EXAMPLES`` random requests
(valid and invalid), each with the admin token, and checks every answer:

- ``not_a_server_error``: never a 5xx;
- ``status_code_conformance``: the status is one the operation documents;
- ``content_type_conformance``: the Content-Type is the documented one;
- ``response_schema_conformance``: the body matches the documented model (the models in each
  domain's schemas.py forbid undeclared members, so a serializer and its model cannot drift);
- ``response_headers_conformance``: the headers every /api/v2 response documents are there.

One pytest item per operation and backend. Schemathesis' lazy loader (``from_fixture``), which
would read the schema from the running server, does not work with pytest 9.2 (it writes
``Node._nodeid``, which pytest renamed), so the items are built from the same application's
schema at collection, and ``test_served_schema_is_the_fuzzed_one`` proves the server's
``/openapi.json`` is that document.

Random path parameters only ever reach the "not found" branch, so REAL_SHARE of the random
requests (and the coverage cases about the body or query) get real ones instead: the
``default`` organization, a seeded workspace, state version, output, token and user.
Operations that destroy what they are given get throw-away targets of their own (the World's
pools; ``default`` itself is never deleted), and ``restore`` renames ``default`` or the seeded
workspace back when an example renamed it, so every operation finds the same world.

No operation is left out. A bug found here goes into ``KNOWN_BUGS`` with a predicate that
recognises its examples: only for those examples are only the checks it breaks skipped, and
``test_known_bug`` replays a recorded request against those checks as a strict xfail, so the
fix turns the suite red until the entry moves to ``REGRESSIONS``, whose replays must then
pass every check.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import TestPhase
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from terrapod.app import create_app
from terrapod.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.databases import temporary_database
from tests.e2e.harness import ServerInfo, run_server
from tests.statefiles import create_body, state

# Random requests per operation; the examples and coverage phases add their own (a few to a
# few hundred per operation). About 4,700 requests and half a minute per backend.
MAX_EXAMPLES = 25
# Out of 4 random requests, how many get real path parameters (and query filters).
REAL_SHARE = 3
# Throw-away targets per destroying operation; later examples find them gone (404).
POOL_SIZE = 4

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSONAPI = "application/vnd.api+json"
CHECKS: tuple[Callable[..., Any], ...] = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
)


def application_openapi() -> dict[str, Any]:
    """The OpenAPI document ``terrapod serve`` publishes (settings do not change it)."""
    with tempfile.TemporaryDirectory() as data_dir:
        openapi: dict[str, Any] = create_app(Settings(data_dir=data_dir)).openapi()
    return openapi


OPENAPI = application_openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


# --------------------------------------------------------------------------------------------
# Known bugs (see the module docstring)
# --------------------------------------------------------------------------------------------

Check = Callable[..., Any]
# 5xx: both checks fail (a 5xx is never documented).
SERVER_ERROR: tuple[Check, ...] = (not_a_server_error, status_code_conformance)
INT64_MAX = 2**63 - 1
# Column widths of attributes the service does not check (see the request models' maxLength).
COLUMN_WIDTHS = {
    "external-id": 100,
    "working-directory": 255,
    "source-name": 255,
    "source-url": 1024,
    "resource-cpu": 32,
    "resource-memory": 32,
    "terraform-version": 64,
    "lineage": 64,
}


@dataclass(frozen=True)
class Replay:
    """One request that shows a bug; ``{…}`` in its strings come from :meth:`World.values`.
    ``locked``: the seeded workspace is locked by the admin around the request."""

    operation_id: str
    path_parameters: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] | None = None
    body: Any = None
    locked: bool = False


@dataclass(frozen=True)
class KnownBug:
    """A bug the fuzzer (or its author) found and has not been fixed yet.

    In the fuzz run, an example that ``matches`` it is validated without ``checks`` (only
    that example, on ``backends`` only); ``test_known_bug`` replays ``replay`` against
    ``checks`` as a strict xfail on ``backends`` and as a plain test elsewhere.
    """

    name: str
    summary: str
    checks: tuple[Check, ...]
    backends: tuple[str, ...]
    matches: Callable[[schemathesis.Case, Any], bool]
    replay: Replay


def _strings(value: Any) -> Iterator[tuple[str | None, str]]:
    """Every string in a JSON value with the key it is stored under (None in lists)."""
    if isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                yield str(key), item
            else:
                yield from _strings(item)
            yield None, str(key)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _query_int(case: schemathesis.Case, name: str) -> int | None:
    raw = (case.query or {}).get(name)
    raw = raw[0] if isinstance(raw, list) and raw else raw
    try:
        return int(str(raw))
    except ValueError:
        return None


def _page_overflows(case: schemathesis.Case, response: Any) -> bool:
    number = _query_int(case, "page[number]")
    size = min(_query_int(case, "page[size]") or 20, 100)
    return response.status_code == 500 and number is not None and (number - 1) * size > INT64_MAX


def _has_nul(case: schemathesis.Case, response: Any) -> bool:
    sent = [case.path_parameters, case.query, case.body]
    return response.status_code == 500 and any("\x00" in s for _, s in _strings(sent))


def _too_wide(case: schemathesis.Case, response: Any) -> bool:
    return response.status_code == 500 and any(
        key in COLUMN_WIDTHS and len(value) > COLUMN_WIDTHS[key]
        for key, value in _strings(case.body)
    )


def _serial_overflows(case: schemathesis.Case, response: Any) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    attributes = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
    serial = attributes.get("serial")
    return response.status_code == 500 and isinstance(serial, int) and serial > INT64_MAX


# Bugs the fuzzer found, now fixed: each replay must keep passing every check.
REGRESSIONS: tuple[KnownBug, ...] = (
    KnownBug(
        "page-number-overflow",
        "A page[number] whose offset exceeds 64 bits is a 500 (OverflowError on SQLite, "
        "asyncpg DataError on PostgreSQL) from every database-paged list, not a 400",
        SERVER_ERROR,
        ("sqlite", "postgresql"),
        _page_overflows,
        Replay("listOrganizations", query={"page[number]": "99999999999999999999"}),
    ),
    KnownBug(
        "nul-character",
        "A NUL character in a path or query parameter or a body string is a 500 on PostgreSQL "
        '("invalid byte sequence for encoding UTF8: 0x00"), not a 400/404/422',
        SERVER_ERROR,
        ("postgresql",),
        _has_nul,
        Replay("showOrganization", path_parameters={"name": "de\x00fault"}),
    ),
    KnownBug(
        "string-wider-than-column",
        "An attribute longer than its column (external-id > 100, working-directory > 255, "
        "resource-cpu > 32, terraform-version > 64, lineage > 64, …) is a 500 on PostgreSQL "
        '("value too long for type character varying"), not a 422',
        SERVER_ERROR,
        ("postgresql",),
        _too_wide,
        Replay(
            "updateOrganization",
            path_parameters={"name": "default"},
            body={"data": {"type": "organizations", "attributes": {"external-id": "x" * 101}}},
        ),
    ),
    KnownBug(
        "serial-overflow",
        "A state version serial above 2**63-1 is a 500 (the column is a 64-bit integer), not a 422",
        SERVER_ERROR,
        ("sqlite", "postgresql"),
        _serial_overflows,
        Replay(
            "createStateVersion",
            path_parameters={"workspace_id": "{workspace_id}"},
            body={
                "data": {
                    "type": "state-versions",
                    "attributes": {"serial": INT64_MAX + 1, "md5": "0" * 32, "force": True},
                }
            },
            locked=True,
        ),
    ),
    KnownBug(
        "ping-content-type",
        "Schema, not server: GET /api/v2/ping answers application/vnd.api+json but "
        "system/api.py declares no response, so FastAPI documents application/json",
        (content_type_conformance,),
        ("sqlite", "postgresql"),
        lambda case, _: (
            operation_id(case.operation) == "ping"
            and JSONAPI
            not in application_openapi()["paths"]["/api/v2/ping"]["get"]["responses"]["200"].get(
                "content", {}
            )
        ),
        Replay("ping"),
    ),
)

# Open bugs (none today). A new one goes here until it is fixed, then into REGRESSIONS.
KNOWN_BUGS: tuple[KnownBug, ...] = ()


def known_bug_checks(backend: str, case: schemathesis.Case, response: Any) -> set[Check]:
    """The checks a known bug breaks for this one example."""
    return {
        check
        for bug in KNOWN_BUGS
        if backend in bug.backends and bug.matches(case, response)
        for check in bug.checks
    }


# --------------------------------------------------------------------------------------------
# The server and the world it is fuzzed in
# --------------------------------------------------------------------------------------------

DESTROYING_WORKSPACE_OPERATIONS = (
    "deleteWorkspace",
    "deleteWorkspaceByName",
    "safeDeleteWorkspace",
    "safeDeleteWorkspaceByName",
)
SCRATCH_ORGANIZATIONS = [f"fuzz-scratch-{i}" for i in range(POOL_SIZE)]


@dataclass
class World:
    """What the seeded server holds; the pools are the destroying operations' targets."""

    server: ServerInfo
    user_id: str
    workspace_id: str
    workspace_name: str
    consumer_id: str
    token_id: str
    sv_id: str
    old_sv_id: str
    output_id: str
    workspace_pools: dict[str, list[tuple[str, str]]]  # operation id -> [(id, name)]
    token_pool: list[str]
    _turns: dict[str, Iterator[int]] = field(default_factory=dict)

    def turn(self, key: str, size: int) -> int:
        """0, 1, …, size-1, 0, … for each ``key``: whose turn it is to be destroyed."""
        return next(self._turns.setdefault(key, itertools.cycle(range(size))))

    def values(self) -> dict[str, str]:
        return {
            "workspace_id": self.workspace_id,
            "workspace_name": self.workspace_name,
            "consumer_id": self.consumer_id,
            "sv_id": self.sv_id,
            "old_sv_id": self.old_sv_id,
            "output_id": self.output_id,
            "token_id": self.token_id,
            "user_id": self.user_id,
        }


class Active:
    """The world of the backend under test. Hooks run inside Hypothesis' draws, outside any
    fixture, so the ``fuzz_world`` fixture publishes its world here. None during collection,
    when schemathesis draws the explicit examples: those keep their generated values."""

    world: World | None = None


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, f"{response.request.url}: {response.text}"
    return response.json() if response.content else {}


def _workspace(client: httpx.Client, name: str, **attributes: Any) -> str:
    body = {"data": {"type": "workspaces", "attributes": {"name": name, **attributes}}}
    created = _ok(client.post("/api/v2/organizations/default/workspaces", json=body))
    return str(created["data"]["id"])


def seed(server: ServerInfo) -> World:
    """A workspace with tags, a consumer and three state versions with outputs; tokens; an
    organization token; and the throw-away organizations, workspaces and tokens."""
    with server.http(ADMIN_TOKEN) as c:
        user_id = _ok(c.get("/api/v2/account/details"))["data"]["id"]
        ws = _workspace(c, "fuzz-main", **{"tag-names": ["app", "fuzz"]})
        consumer = _workspace(c, "fuzz-consumer")
        _ok(
            c.post(
                f"/api/v2/workspaces/{ws}/relationships/remote-state-consumers",
                json={"data": [{"type": "workspaces", "id": consumer}]},
            )
        )
        _ok(c.post(f"/api/v2/workspaces/{ws}/actions/lock"))
        svs = []
        for serial in (1, 2, 3):
            outputs = {
                "plain": {"value": f"v{serial}", "type": "string"},
                "secret": {
                    "value": {"k": serial},
                    "type": ["object", {"k": "number"}],
                    "sensitive": True,
                },
            }
            body = create_body(state(serial, outputs=outputs), serial)
            svs.append(_ok(c.post(f"/api/v2/workspaces/{ws}/state-versions", json=body)))
        _ok(c.post(f"/api/v2/workspaces/{ws}/actions/unlock"))
        sv_ids = [sv["data"]["id"] for sv in svs]
        outputs_doc = _ok(c.get(f"/api/v2/state-versions/{sv_ids[-1]}/outputs"))
        tokens_path = f"/api/v2/users/{user_id}/authentication-tokens"
        token_body = {"data": {"type": "authentication-tokens", "attributes": {}}}
        token_ids = [
            _ok(c.post(tokens_path, json=token_body))["data"]["id"] for _ in range(POOL_SIZE + 1)
        ]
        _ok(c.post("/api/v2/organizations/default/authentication-token"))
        for name in SCRATCH_ORGANIZATIONS:
            attributes = {"name": name, "email": f"{name}@example.test"}
            body = {"data": {"type": "organizations", "attributes": attributes}}
            _ok(c.post("/api/v2/organizations", json=body))
        workspace_pools = {}
        for op in DESTROYING_WORKSPACE_OPERATIONS:
            names = [f"fuzz-{op.lower()}-{i}" for i in range(POOL_SIZE)]
            workspace_pools[op] = [(_workspace(c, name), name) for name in names]
    return World(
        server=server,
        user_id=user_id,
        workspace_id=ws,
        workspace_name="fuzz-main",
        consumer_id=consumer,
        token_id=token_ids[0],
        sv_id=sv_ids[-1],
        old_sv_id=sv_ids[0],
        output_id=outputs_doc["data"][0]["id"],
        workspace_pools=workspace_pools,
        token_pool=token_ids[1:],
    )


@pytest.fixture(scope="session")
def fuzz_world(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp(f"fuzz-{backend}")
    with (
        temporary_database(backend, workdir) as database_url,
        run_server(
            workdir,
            backend=backend,
            database_url=database_url,
            admin_token=ADMIN_TOKEN,
            # Run-event streams end at once, so a generated request to one gets its answer.
            extra_env={"TERRAPOD_RUNS__EVENT_STREAM_SECONDS": "0.05"},
        ) as server,
    ):
        Active.world = seed(server)
        try:
            yield Active.world
        finally:
            Active.world = None


@pytest.fixture(scope="session")
def fuzz_session(fuzz_world: World) -> Iterator[requests.Session]:
    """One keep-alive connection for every generated request."""
    with requests.Session() as session:
        yield session


# --------------------------------------------------------------------------------------------
# Real values for generated requests
# --------------------------------------------------------------------------------------------


def operation_id(operation: schemathesis.APIOperation) -> str:
    return str(operation.definition.raw["operationId"])


def real_path_parameters(world: World, op: str, path: str) -> dict[str, str]:
    """Path parameters naming real resources, for operation ``op`` on ``path``."""
    values = {
        "org_name": "default",
        "name": world.workspace_name if "{org_name}" in path else "default",
        "workspace_id": world.workspace_id,
        "user_id": world.user_id,
        "token_id": world.token_id,
        "sv_id": world.sv_id,
        "output_id": world.output_id,
    }
    if op == "deleteOrganization":
        values["name"] = SCRATCH_ORGANIZATIONS[world.turn(op, POOL_SIZE)]
    if op in DESTROYING_WORKSPACE_OPERATIONS:
        ws_id, ws_name = world.workspace_pools[op][world.turn(op, POOL_SIZE)]
        values |= {"workspace_id": ws_id, "name": ws_name}
    if op == "deleteToken":
        values["token_id"] = world.token_pool[world.turn(op, len(world.token_pool))]
    return values


def real_query(world: World, op: str) -> dict[str, str]:
    """Query parameters that find something: the state version list's required filters."""
    if op == "listStateVersions":
        return {
            "filter[organization][name]": "default",
            "filter[workspace][name]": world.workspace_name,
        }
    return {}


def _mostly(strategy: st.SearchStrategy[Any], real: Callable[[Any], Any]) -> Any:
    """``strategy`` with REAL_SHARE in 4 of its values passed through ``real`` (at draw time,
    so ``real`` sees the world of the backend under test)."""
    return st.tuples(strategy, st.integers(0, 3)).map(
        lambda pair: real(pair[0]) if pair[1] < REAL_SHARE else pair[0]
    )


@schema.hook("before_generate_path_parameters")
def _real_path_parameters(
    context: schemathesis.HookContext, strategy: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    operation = context.operation
    assert operation is not None

    def real(params: Any) -> Any:
        if not isinstance(params, dict) or Active.world is None:
            return params
        values = real_path_parameters(Active.world, operation_id(operation), operation.path)
        return {name: values.get(name, value) for name, value in params.items()}

    return _mostly(strategy, real)


@schema.hook("before_generate_query")
def _real_query(
    context: schemathesis.HookContext, strategy: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    operation = context.operation
    assert operation is not None
    if operation_id(operation) != "listStateVersions":
        return strategy

    def real(query: Any) -> Any:
        if not isinstance(query, dict) or Active.world is None:
            return query
        return {**query, **real_query(Active.world, operation_id(operation))}

    return _mostly(strategy, real)


@schema.hook("map_case")
def _never_the_default_organization(
    context: schemathesis.HookContext, case: schemathesis.Case
) -> schemathesis.Case:
    # Deleting "default" would leave every later operation nothing real to reach. Random
    # strings never are "default", but the coverage phase may try any value.
    op = operation_id(context.operation) if context.operation is not None else None
    if op == "deleteOrganization" and (case.path_parameters or {}).get("name") == "default":
        case.path_parameters = {"name": SCRATCH_ORGANIZATIONS[0]}
    return case


def realize(case: schemathesis.Case, world: World) -> None:
    """Real path parameters for the coverage phase's cases about the body or the query.

    That phase builds its cases while the tests are collected, before any server exists, so
    the hooks above cannot reach them; without this they would all end in "not found". Cases
    about a path parameter itself keep their value.
    """
    meta = case.meta
    if meta is None or meta.phase.name != TestPhase.COVERAGE or not case.path_parameters:
        return
    if meta.phase.data.parameter_location == ParameterLocation.PATH:
        return
    values = real_path_parameters(world, operation_id(case.operation), case.operation.path)
    case.path_parameters = {name: values.get(name, v) for name, v in case.path_parameters.items()}


def restore(world: World, case: schemathesis.Case, response: schemathesis.Response | None) -> None:
    """Undo what an example changed that later examples rely on: a new name for ``default``
    or for the seeded workspace."""
    op = operation_id(case.operation)
    updates = ("updateOrganization", "updateWorkspace", "updateWorkspaceByName")
    if response is None or response.status_code != 200 or op not in updates:
        return
    data = response.json()["data"]
    with world.server.http(ADMIN_TOKEN) as c:
        renamed = data.get("id") != "default"
        if op == "updateOrganization" and renamed and case.path_parameters == {"name": "default"}:
            body = {"data": {"type": "organizations", "attributes": {"name": "default"}}}
            _ok(c.patch(f"/api/v2/organizations/{data['id']}", json=body))
        if op in ("updateWorkspace", "updateWorkspaceByName") and (
            data.get("id") == world.workspace_id
            and data["attributes"]["name"] != world.workspace_name
        ):
            body = {"data": {"type": "workspaces", "attributes": {"name": world.workspace_name}}}
            _ok(c.patch(f"/api/v2/workspaces/{world.workspace_id}", json=body))


# --------------------------------------------------------------------------------------------
# The fuzz run
# --------------------------------------------------------------------------------------------


def call(case: schemathesis.Case, world: World, session: requests.Session) -> schemathesis.Response:
    """Send ``case`` to the server as the admin. ``verify`` per call: schemathesis passes its
    own TLS setting to every request, overriding the session's."""
    server = world.server
    return case.call(base_url=server.url, session=session, headers=AUTH, verify=str(server.ca_cert))


def test_served_schema_is_the_fuzzed_one(fuzz_world: World) -> None:
    with fuzz_world.server.http() as c:
        served = c.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == OPENAPI


# derandomize: every run sends the same requests, so a red run can be rerun and debugged; the
# inputs change when this file or the schema does.
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_response_is_documented(
    case: schemathesis.Case, fuzz_world: World, fuzz_session: requests.Session
) -> None:
    realize(case, fuzz_world)
    response = None
    try:
        response = call(case, fuzz_world, fuzz_session)
        known = known_bug_checks(fuzz_world.server.backend, case, response)
        checks = [check for check in CHECKS if check not in known]
        case.validate_response(response, checks=checks, headers=AUTH)
    finally:
        restore(fuzz_world, case, response)


# --------------------------------------------------------------------------------------------
# Known bugs, replayed
# --------------------------------------------------------------------------------------------


def _fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**values) if "{" in template else template
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template


def _replay(bug: KnownBug, world: World, session: requests.Session) -> tuple[Any, Any]:
    replay, values = bug.replay, world.values()
    body = (
        {} if replay.body is None else {"body": _fill(replay.body, values), "media_type": JSONAPI}
    )
    case = schema.find_operation_by_id(replay.operation_id).Case(
        path_parameters=_fill(replay.path_parameters, values), query=replay.query, **body
    )
    lock = f"/api/v2/workspaces/{world.workspace_id}/actions"
    with world.server.http(ADMIN_TOKEN) as c:
        if replay.locked:
            _ok(c.post(f"{lock}/lock"))
        try:
            response = call(case, world, session)
        finally:
            if replay.locked:
                _ok(c.post(f"{lock}/unlock"))
    return case, response


@pytest.mark.parametrize("bug", REGRESSIONS, ids=[bug.name for bug in REGRESSIONS])
def test_fixed_bug_stays_fixed(
    bug: KnownBug, fuzz_world: World, fuzz_session: requests.Session
) -> None:
    case, response = _replay(bug, fuzz_world, fuzz_session)
    assert not bug.matches(case, response), f"{bug.name} is back: {bug.summary}"
    assert response.status_code < 500
    case.validate_response(response, checks=list(CHECKS), headers=AUTH)


if KNOWN_BUGS:  # an empty parametrization would be reported as a skipped test

    @pytest.mark.parametrize("bug", KNOWN_BUGS, ids=[bug.name for bug in KNOWN_BUGS])
    def test_known_bug(
        bug: KnownBug,
        fuzz_world: World,
        fuzz_session: requests.Session,
        request: pytest.FixtureRequest,
    ) -> None:
        affected = fuzz_world.server.backend in bug.backends
        if affected:
            marker = pytest.mark.xfail(reason=bug.summary, raises=FailureGroup, strict=True)
            request.applymarker(marker)
        case, response = _replay(bug, fuzz_world, fuzz_session)
        # The replay must still show the bug, not fail some other way (once fixed, this fails).
        assert bug.matches(case, response) or not affected, f"{bug.name} is fixed: move it"
        case.validate_response(response, checks=list(bug.checks), headers=AUTH)
