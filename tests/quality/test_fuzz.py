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
requests (and the coverage cases about the body or query) get real ones instead: every path
parameter names an object seeded through the public API (the ``default`` organization, a
workspace, state version, output, token and user; variables, variable sets, run triggers,
notification configurations, run tasks, agent pools and the built-in agent; a run the built-in
agent has planned, with its plan, apply, events and configuration version, and a run with a
task stage and result). Only ``action_id`` stays made up: a Terraform action comes from a
plan that invokes a provider's action, which no provider available offline has. Operations
that destroy what they are given get throw-away targets of their own (``World.targets``;
``default`` itself is never deleted), and ``restore`` renames ``default`` or the seeded
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
import time
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
from tests.runs_support import tarball
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

# Operations that destroy (or archive) their target get POOL_SIZE targets of their own, as
# path parameters that replace the shared ones (World.targets): these four in seed(), the
# later domains' in seed_domains().
DESTROYING_WORKSPACE_OPERATIONS = (
    "deleteWorkspace",
    "deleteWorkspaceByName",
    "safeDeleteWorkspace",
    "safeDeleteWorkspaceByName",
)
SCRATCH_ORGANIZATIONS = [f"fuzz-scratch-{i}" for i in range(POOL_SIZE)]
# A run's plan is real (the server's built-in agent runs Terraform): seconds, not minutes.
RUN_SETTLE_SECONDS = 120.0


@dataclass
class World:
    """What the seeded server holds. ``ids`` are the shared objects every operation reaches
    (by path parameter name); ``targets`` gives each destroying operation its own throw-away
    ones (operation id -> path parameters, taken in turn), so the shared ones survive."""

    server: ServerInfo
    user_id: str
    workspace_id: str
    workspace_name: str
    consumer_id: str
    token_id: str
    sv_id: str
    old_sv_id: str
    output_id: str
    ids: dict[str, str]
    targets: dict[str, list[dict[str, str]]]
    _turns: dict[str, Iterator[int]] = field(default_factory=dict)

    def turn(self, key: str, size: int) -> int:
        """0, 1, …, size-1, 0, … for each ``key``: whose turn it is to be destroyed."""
        return next(self._turns.setdefault(key, itertools.cycle(range(size))))

    def target(self, op: str) -> dict[str, str]:
        """The path parameters of ``op``'s next throw-away target ({} if it destroys nothing)."""
        pool = self.targets.get(op)
        return pool[self.turn(op, len(pool))] if pool else {}

    def values(self) -> dict[str, str]:
        return {
            **self.ids,
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


def _id(response: httpx.Response) -> str:
    return str(_ok(response)["data"]["id"])


def _post(client: httpx.Client, path: str, type_: str, attributes: Any, **rest: Any) -> str:
    return _id(client.post(path, json={"data": {"type": type_, "attributes": attributes, **rest}}))


def _one(type_: str, id_: str) -> dict[str, Any]:
    return {"data": {"type": type_, "id": id_}}


def _workspace(client: httpx.Client, name: str, **attributes: Any) -> str:
    path = "/api/v2/organizations/default/workspaces"
    return _post(client, path, "workspaces", {"name": name, **attributes})


def _configuration(client: httpx.Client, workspace_id: str) -> str:
    """An uploaded configuration version (no run of its own)."""
    path = f"/api/v2/workspaces/{workspace_id}/configuration-versions"
    body = {"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": False}}}
    cv = _ok(client.post(path, json=body))["data"]
    _ok(client.put(cv["attributes"]["upload-url"], content=tarball()))
    return str(cv["id"])


def _run(client: httpx.Client, workspace_id: str) -> dict[str, Any]:
    relationships = {"workspace": _one("workspaces", workspace_id)}
    body = {"data": {"type": "runs", "attributes": {}, "relationships": relationships}}
    return dict(_ok(client.post("/api/v2/runs", json=body))["data"])


def _settled(client: httpx.Client, run_id: str) -> None:
    """Wait until the built-in agent has planned the run (it then waits for confirmation)."""
    deadline = time.monotonic() + RUN_SETTLE_SECONDS
    while True:
        status = _ok(client.get(f"/api/v2/runs/{run_id}"))["data"]["attributes"]["status"]
        if status in ("planned", "planned_and_finished", "errored", "canceled"):
            assert status == "planned", f"run {run_id} ended {status}"
            return
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(0.2)


def _task(client: httpx.Client, name: str) -> str:
    # .invalid never resolves (and the server refuses private addresses): nothing is called.
    attributes = {"name": name, "url": "https://unused.invalid/hook", "category": "task"}
    return _post(client, "/api/v2/organizations/default/tasks", "tasks", attributes)


def _attach(client: httpx.Client, workspace_id: str, task_id: str) -> str:
    attributes = {"enforcement-level": "advisory", "stages": ["post_plan"]}
    relationships = {"task": _one("tasks", task_id)}
    path = f"/api/v2/workspaces/{workspace_id}/tasks"
    return _post(client, path, "workspace-tasks", attributes, relationships=relationships)


def _variable(client: httpx.Client, path: str, key: str) -> str:
    return _post(client, path, "vars", {"key": key, "value": "v", "category": "terraform"})


def seed_domains(
    c: httpx.Client, ws: str
) -> tuple[dict[str, str], dict[str, list[dict[str, str]]]]:
    """The objects of the later domains, through the public API: runs (one planned by the
    built-in agent, one with a run task stage), configuration versions, variables, variable
    sets, run triggers, notification configurations, run tasks and agent pools. Returns the
    shared ids by path parameter name and the destroying operations' targets."""
    ids: dict[str, str] = {}
    pools: dict[str, list[dict[str, str]]] = {}

    def pool(op: str, make: Callable[[int], dict[str, str]]) -> None:
        pools[op] = [make(i) for i in range(POOL_SIZE)]

    # Runs: in workspaces of their own, so the main workspace's lock stays free.
    runs_ws = _workspace(c, "fuzz-runs")
    ids["cv_id"] = _configuration(c, runs_ws)
    run = _run(c, runs_ws)
    ids |= {
        "run_id": run["id"],
        "plan_id": run["relationships"]["plan"]["data"]["id"],
        "apply_id": run["relationships"]["apply"]["data"]["id"],
    }
    pool("archiveConfigurationVersion", lambda _: {"cv_id": _configuration(c, runs_ws)})
    # Run tasks: a task attached to a workspace whose run has its post-plan stage.
    tasks_ws = _workspace(c, "fuzz-tasks")
    ids["task_id"] = _task(c, "fuzz-task")
    ids["workspace_task_id"] = _attach(c, tasks_ws, ids["task_id"])
    ids["tasks_workspace_id"] = tasks_ws
    _configuration(c, tasks_ws)
    task_run = _run(c, tasks_ws)["id"]
    stages = _ok(c.get(f"/api/v2/runs/{task_run}/task-stages?include=task_results"))
    ids["task_stage_id"] = stages["data"][0]["id"]
    ids["task_result_id"] = stages["included"][0]["id"]
    pool("deleteRunTask", lambda i: {"task_id": _task(c, f"fuzz-gone-task-{i}")})
    pool(
        "deleteWorkspaceRunTask",
        lambda i: {
            "workspace_id": tasks_ws,
            "workspace_task_id": _attach(c, tasks_ws, _task(c, f"fuzz-detach-{i}")),
        },
    )
    # Workspace variables (the main workspace's).
    ws_vars = f"/api/v2/workspaces/{ws}/vars"
    ids["variable_id"] = _variable(c, ws_vars, "region")
    for op in ("deleteWorkspaceVariable", "deleteVariable"):
        pool(op, lambda i, op=op: {"variable_id": _variable(c, ws_vars, f"{op.lower()}_{i}")})
    # Variable sets: one applied to the main workspace, with variables.
    varsets = "/api/v2/organizations/default/varsets"
    applied = {"workspaces": {"data": [{"type": "workspaces", "id": ws}]}}
    ids["varset_id"] = _post(c, varsets, "varsets", {"name": "fuzz-set"}, relationships=applied)
    set_vars = f"/api/v2/varsets/{ids['varset_id']}/relationships/vars"
    ids["var_id"] = _variable(c, set_vars, "region")
    pool(
        "deleteVariableSet",
        lambda i: {"varset_id": _post(c, varsets, "varsets", {"name": f"fuzz-deletevs-{i}"})},
    )
    pool("deleteVariableSetVariable", lambda i: {"var_id": _variable(c, set_vars, f"gone_{i}")})

    # Run triggers: each from a source workspace of its own into the main workspace.
    def trigger(name: str) -> str:
        source = {"sourceable": _one("workspaces", _workspace(c, name))}
        path = f"/api/v2/workspaces/{ws}/run-triggers"
        return _post(c, path, "run-triggers", {}, relationships=source)

    ids["run_trigger_id"] = trigger("fuzz-trigger-source")
    pool("deleteRunTrigger", lambda i: {"run_trigger_id": trigger(f"fuzz-trigger-source-{i}")})

    # Notification configurations (to a host that never resolves).
    def notification(name: str) -> str:
        attributes = {
            "name": name,
            "destination-type": "generic",
            "url": "https://hooks.example.invalid/terrapod",
            "enabled": True,
            "triggers": ["run:created"],
        }
        path = f"/api/v2/workspaces/{ws}/notification-configurations"
        return _post(c, path, "notification-configurations", attributes)

    ids["configuration_id"] = notification("fuzz-hook")
    pool(
        "deleteNotificationConfiguration", lambda i: {"configuration_id": notification(f"gone-{i}")}
    )
    # Agent pools; the built-in agent is the one agent a server has without an agent process.
    pools_path = "/api/v2/organizations/default/agent-pools"
    ids["pool_id"] = _post(c, pools_path, "agent-pools", {"name": "fuzz-pool"})
    token = {"description": "fuzz"}
    _post(
        c,
        f"/api/v2/agent-pools/{ids['pool_id']}/authentication-tokens",
        "authentication-tokens",
        token,
    )
    pool(
        "deleteAgentPool",
        lambda i: {"pool_id": _post(c, pools_path, "agent-pools", {"name": f"gone-{i}"})},
    )
    agents = _ok(c.get("/api/v2/admin/agents"))["data"]
    assert agents, "the built-in agent is not listed"
    ids["agent_id"] = agents[0]["id"]
    # Last, so the other seeding overlaps the plan.
    _settled(c, run["id"])
    ids["event_id"] = _ok(c.get(f"/api/v2/runs/{run['id']}/run-events"))["data"][0]["id"]
    return ids, pools


def seed(server: ServerInfo) -> World:
    """A workspace with tags, a consumer and three state versions with outputs; tokens; an
    organization token; the later domains' objects (:func:`seed_domains`); and the throw-away
    targets of the destroying operations."""
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
        ids, targets = seed_domains(c, ws)
        targets["deleteOrganization"] = [{"name": name} for name in SCRATCH_ORGANIZATIONS]
        targets["deleteToken"] = [{"token_id": token_id} for token_id in token_ids[1:]]
        for op in DESTROYING_WORKSPACE_OPERATIONS:
            names = [f"fuzz-{op.lower()}-{i}" for i in range(POOL_SIZE)]
            targets[op] = [{"workspace_id": _workspace(c, name), "name": name} for name in names]
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
        ids=ids,
        targets=targets,
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
        **world.ids,
        "org_name": "default",
        "name": world.workspace_name if "{org_name}" in path else "default",
        "workspace_id": world.workspace_id,
        "user_id": world.user_id,
        "token_id": world.token_id,
        "sv_id": world.sv_id,
        "output_id": world.output_id,
    }
    if "{workspace_task_id}" in path:  # attached to the tasks workspace, not the main one
        values["workspace_id"] = world.ids["tasks_workspace_id"]
    return values | world.target(op)


# Lists whose required filters name a workspace (the main one, by name).
WORKSPACE_FILTERED_LISTS = ("listStateVersions", "listVariables")


def real_query(world: World, op: str) -> dict[str, str]:
    """Query parameters that find something: the required workspace filters."""
    if op in WORKSPACE_FILTERED_LISTS:
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
    if operation_id(operation) not in WORKSPACE_FILTERED_LISTS:
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
