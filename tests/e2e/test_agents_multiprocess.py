"""Agents as separate processes: several ``terrapod serve`` on one database, ``terrapod
agent`` processes in a pool, and what survives ``kill -9`` of either (issue 5, "done when").

PostgreSQL only: servers that share a database need one that several processes can write at
once, so these tests make their own PostgreSQL database instead of using the ``backend``
matrix (their ids carry no ``[sqlite]``/``[postgresql]`` suffix).

The runs use the real Terraform (``terrapod-terraform``) with only ``terraform_data``
resources. A crash test needs the engine to be *inside* a plan or an apply when the kill comes,
for as long as the test likes and no longer; a named pipe (FIFO) gives that without any fixed
sleep:

- a plan blocks in ``file(<fifo>)`` (a local the first resource uses) until the test closes
  its end of the pipe;
- an apply blocks in the ``local-exec`` provisioner of ``terraform_data.slow`` (``cat
  <fifo>``), which Terraform starts only after ``terraform_data.first`` is created and written
  to the state file.

The test knows the engine got there when it can open the pipe for writing without blocking
(``O_NONBLOCK`` fails with ``ENXIO`` while nobody reads it); it keeps that end open, so the
engine stays blocked, and closes it to let the engine go on.

Timing settings of the cluster (below): jobs are failed 10 s after their last heartbeat,
housekeeping runs every second, and job heartbeat long polls last at most 2 s, so a heartbeat
is always younger than the timeout while the agent lives. The server-restart test has a
cluster of its own with a 30 s timeout: its job hears nothing while the server restarts (3-6 s
on a loaded machine) and for up to the agent's back-off cap (5 s) after that.
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.databases import temporary_database
from tests.e2e.agents_harness import (
    FINAL_RUN_STATUSES,
    Api,
    Cluster,
    run_cluster,
    state_resources,
    wait_until,
)

HEARTBEAT_TIMEOUT_SECONDS = 10
CLUSTER_SETTINGS = {
    "TERRAPOD_RUNS__HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_TIMEOUT_SECONDS),
    "TERRAPOD_RUNS__HOUSEKEEPING_SECONDS": "1",
    "TERRAPOD_AGENTS__JOB_HEARTBEAT_MAX_WAIT_SECONDS": "2",
    "TERRAPOD_AGENTS__HEARTBEAT_SECONDS": "2",
    # A revoked agent is refused at its next call; keep its long polls short.
    "TERRAPOD_AGENTS__RUNS_NEXT_MAX_WAIT_SECONDS": "3",
}
RESTART_HEARTBEAT_TIMEOUT_SECONDS = 30
# A stale job is failed within the heartbeat timeout plus a housekeeping round; the rest is
# room for a loaded 2-core machine.
STALE_DEADLINE_SECONDS = HEARTBEAT_TIMEOUT_SECONDS + 20
RUN_DEADLINE_SECONDS = 60

SMALL_CONFIG = """
variable "n" {
  type    = string
  default = "0"
}

resource "terraform_data" "r" {
  input = var.n
}
"""

GATED_CONFIG = """
variable "n" {
  type    = string
  default = "0"
}

# Paths of named pipes the plan reads (and blocks on until the test closes them).
variable "plan_gates" {
  type    = list(string)
  default = []
}

# A named pipe the apply's provisioner reads; "" for none.
variable "apply_gate" {
  type    = string
  default = ""
}

locals {
  gated = [for path in var.plan_gates : file(path)]
}

resource "terraform_data" "first" {
  input = "first-${var.n}${join("", local.gated)}"
}

resource "terraform_data" "slow" {
  input            = "slow-${var.n}"
  triggers_replace = [var.n]
  depends_on       = [terraform_data.first]

  provisioner "local-exec" {
    command = var.apply_gate == "" ? "true" : "cat '${var.apply_gate}' >/dev/null"
  }
}
"""


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two servers on one fresh PostgreSQL database, built-in agents off."""
    root = tmp_path_factory.mktemp("agents-cluster")
    with (
        temporary_database("postgresql", root) as database_url,
        run_cluster(
            root,
            database_url=str(database_url),
            admin_token=ADMIN_TOKEN,
            servers=2,
            settings=CLUSTER_SETTINGS,
        ) as running,
    ):
        _RUNNING.append(running)
        yield running
        _RUNNING.remove(running)


@pytest.fixture(scope="module")
def restart_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One server on its own database, for the restart test: a job's heartbeats stop while
    its server is down (a restart takes seconds on a loaded machine) and for up to the
    agent's back-off after it is back, so its timeout is longer."""
    root = tmp_path_factory.mktemp("agents-restart")
    settings = {
        **CLUSTER_SETTINGS,
        "TERRAPOD_RUNS__HEARTBEAT_TIMEOUT_SECONDS": str(RESTART_HEARTBEAT_TIMEOUT_SECONDS),
    }
    with (
        temporary_database("postgresql", root) as database_url,
        run_cluster(
            root,
            database_url=str(database_url),
            admin_token=ADMIN_TOKEN,
            servers=1,
            settings=settings,
        ) as running,
    ):
        _RUNNING.append(running)
        yield running
        _RUNNING.remove(running)


@pytest.fixture
def api(cluster: Cluster) -> Iterator[Api]:
    with cluster.api(0) as client:
        yield client


@pytest.fixture
def restart_api(restart_cluster: Cluster) -> Iterator[Api]:
    with restart_cluster.api(0) as client:
        yield client


@pytest.fixture
def org(api: Api) -> str:
    name = f"agents-{secrets.token_hex(4)}"
    api.create_organization(name)
    return name


_RUNNING: list[Cluster] = []


@pytest.fixture(autouse=True)
def _stop_agents() -> Iterator[None]:
    """Agents live for one test."""
    yield
    for running in _RUNNING:
        running.stop_agents()


class Gate:
    """A named pipe an engine blocks on (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self._fd: int | None = None

    def reader_waiting(self) -> bool:
        """True once an engine has the pipe open for reading; keeps it blocked from then."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                return False
        return True

    def open(self) -> None:
        """Let the engine go on: end of file for its read."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@pytest.fixture
def gates(tmp_path: Path) -> Iterator[list[Gate]]:
    made: list[Gate] = []
    yield made
    for gate in made:
        gate.open()


def make_gate(gates: list[Gate], directory: Path, name: str) -> Gate:
    gate = Gate(directory / name)
    gates.append(gate)
    return gate


# --------------------------------------------------------------------------------------------
# the checks, as functions of what the API showed (test_checks_catch_violations proves each
# one can fail)
# --------------------------------------------------------------------------------------------


def _at(stamps: Mapping[str, str], key: str) -> datetime:
    return datetime.fromisoformat(stamps[key].replace("Z", "+00:00"))


def run_once_violations(
    events: Mapping[str, Sequence[str]], jobs: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Each run's plan and apply started on an agent exactly once (its events), and the jobs
    table holds exactly one finished plan job and one finished apply job per run."""
    problems = []
    for run_id, descriptions in events.items():
        for phase in ("Plan", "Apply"):
            starts = [d for d in descriptions if d.startswith(f"{phase} started on agent")]
            if len(starts) != 1:
                problems.append(f"{run_id}: {phase.lower()} started {len(starts)} times: {starts}")
    per_run: dict[tuple[str, str], list[str]] = {}
    for job in jobs:
        per_run.setdefault((job["run_id"], job["phase"]), []).append(job["status"])
    for run_id in events:
        for phase in ("plan", "apply"):
            statuses = per_run.get((run_id, phase), [])
            if statuses != ["finished"]:
                problems.append(f"{run_id}: {phase} jobs {statuses}, not one finished job")
    return problems


def order_violations(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Runs of one workspace (``runs`` in the order they were created) ran one after the
    other: each plan was claimed after the previous run was applied."""
    problems = []
    for before, after in itertools.pairwise(runs):
        applied = _at(before["status-timestamps"], "applied-at")
        planning = _at(after["status-timestamps"], "planning-at")
        if planning < applied:
            problems.append(
                f"{after['id']} started planning at {planning} before {before['id']} was applied "
                f"at {applied}"
            )
    return problems


def state_order_violations(
    state_versions: Sequence[Mapping[str, Any]], run_ids: Sequence[str]
) -> list[str]:
    """The state versions (newest first, as listed) were written by the runs in the order the
    runs were created, so the newest is the last run's."""
    writers = [sv["run-id"] for sv in reversed(state_versions)]
    # A run may save several versions (one per state file the engine writes); keep the order
    # of first appearance.
    order = list(dict.fromkeys(writers))
    if order != list(run_ids):
        return [f"state versions written by {order}, runs created as {list(run_ids)}"]
    return []


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def new_pool(api: Api, org: str) -> tuple[str, str, str]:
    """(pool id, agent token id, agent token) of a fresh pool in ``org``."""
    pool_id = api.create_pool(org, f"pool-{secrets.token_hex(3)}")
    token_id, token = api.create_agent_token(pool_id)
    return pool_id, token_id, token


def wait_for_agents(api: Api, pool_id: str, names: set[str], cluster: Cluster) -> dict[str, str]:
    """Wait until every agent named in ``names`` has joined the pool; {name: agent id}."""

    def joined() -> dict[str, str] | None:
        found = {a["name"]: a["id"] for a in api.agents(pool_id) if a["name"] in names}
        return found if set(found) == names else None

    return wait_until(joined, timeout=30, what=f"agents {names} joined", describe=cluster.describe)


def wait_final(
    api: Api, run_id: str, cluster: Cluster, timeout: float = RUN_DEADLINE_SECONDS
) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        run = api.run(run_id)
        return run if run["status"] in FINAL_RUN_STATUSES else None

    return wait_until(
        final,
        timeout=timeout,
        what=f"run {run_id} in a final status",
        describe=lambda: f"run: {api.run(run_id)['status']}\n{cluster.describe()}",
    )


def wait_status(api: Api, run_id: str, status: str, cluster: Cluster) -> None:
    wait_until(
        lambda: api.run_status(run_id) == status,
        timeout=RUN_DEADLINE_SECONDS,
        what=f"run {run_id} {status}",
        describe=lambda: f"run: {api.run_status(run_id)}\n{cluster.describe()}",
    )


def agent_of(events: Sequence[str], phase: str) -> str:
    """The agent id in the run's "<Phase> started on agent <id>" event."""
    starts = [e for e in events if e.startswith(f"{phase} started on agent ")]
    assert len(starts) == 1, events
    return starts[0].removeprefix(f"{phase} started on agent ").strip()


def gated_workspace(api: Api, org: str, pool_id: str) -> tuple[str, str, str]:
    """(workspace id, name, configuration version id) of a workspace with GATED_CONFIG."""
    name = f"ws-{secrets.token_hex(3)}"
    ws_id = api.create_workspace(org, name, pool_id=pool_id)
    cv_id = api.upload_configuration(ws_id, {"main.tf": GATED_CONFIG})
    return ws_id, name, cv_id


def assert_released_and_usable(
    api: Api, cluster: Cluster, ws_id: str, cv_id: str, token: str, n: str
) -> dict[str, Any]:
    """The workspace is unlocked, and a new run in it is applied (on a fresh agent)."""
    assert api.workspace(ws_id)["locked"] is False
    cluster.start_agent(token, server=1)
    run_id = api.create_run(ws_id, cv_id, variables={"n": n})
    run = wait_final(api, run_id, cluster)
    assert run["status"] == "applied", cluster.describe()
    return run


# --------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------

WORKSPACES = 20
RUNS_PER_WORKSPACE = 5
AGENTS = 3
AGENT_CONCURRENCY = 2  # 6 engines at most on 2 cores: busy, not thrashing
HUNDRED_RUNS_DEADLINE_SECONDS = 240


def test_two_servers_three_agents_complete_100_runs_once_each_in_order(
    cluster: Cluster, api: Api, org: str
) -> None:
    pool_id, _, token = new_pool(api, org)
    agents = [
        cluster.start_agent(token, name=f"bulk-{i}", server=i % 2, concurrency=AGENT_CONCURRENCY)
        for i in range(AGENTS)
    ]
    agent_ids = wait_for_agents(api, pool_id, {a.name for a in agents}, cluster)

    apis = [api, cluster.api(1)]
    try:
        workspaces: dict[str, tuple[str, str]] = {}
        for i in range(WORKSPACES):
            name = f"bulk-{i:02d}"
            ws_id = apis[i % 2].create_workspace(org, name, pool_id=pool_id)
            workspaces[ws_id] = (
                name,
                apis[i % 2].upload_configuration(ws_id, {"main.tf": SMALL_CONFIG}),
            )
        # Runs are created round the workspaces, through both servers alternately.
        runs: dict[str, list[str]] = {ws_id: [] for ws_id in workspaces}
        for k in range(RUNS_PER_WORKSPACE):
            for i, (ws_id, (_, cv_id)) in enumerate(workspaces.items()):
                created = apis[(i + k) % 2].create_run(ws_id, cv_id, variables={"n": str(k + 1)})
                runs[ws_id].append(created)
    finally:
        apis[1].close()
    all_runs = [r for ids in runs.values() for r in ids]
    assert len(all_runs) == WORKSPACES * RUNS_PER_WORKSPACE

    # In creation order: a run is final only after the runs before it in its workspace.
    pending = [r for k in range(RUNS_PER_WORKSPACE) for r in (ids[k] for ids in runs.values())]
    seen: dict[str, dict[str, Any]] = {}

    def all_final() -> bool:
        while pending:
            run = api.run(pending[0])
            if run["status"] not in FINAL_RUN_STATUSES:
                return False  # look again soon
            seen[pending.pop(0)] = run
        return True

    wait_until(
        all_final,
        timeout=HUNDRED_RUNS_DEADLINE_SECONDS,
        interval=1.0,
        what=f"all {len(all_runs)} runs final",
        describe=lambda: (
            f"{len(pending)} not final, e.g. "
            + ", ".join(f"{r}: {api.run_status(r)}" for r in pending[:5])
            + "\n"
            + cluster.describe()
        ),
    )
    not_applied = {r: s["status"] for r, s in seen.items() if s["status"] != "applied"}
    assert not not_applied, f"{not_applied}\n{cluster.describe()}"

    # Each run once: one plan start and one apply start; one finished job of each phase.
    events = {run_id: api.run_events(run_id) for run_id in all_runs}
    jobs = [j for j in cluster.jobs() if j["run_id"] in seen]
    assert run_once_violations(events, jobs) == []
    # None stuck: no job of these runs is still queued or running.
    assert {j["status"] for j in jobs} == {"finished"}
    # Every agent worked, and nothing else did.
    claimed_by = {agent_of(e, phase) for e in events.values() for phase in ("Plan", "Apply")}
    assert claimed_by == set(agent_ids.values()), (claimed_by, agent_ids)

    # In order, per workspace: by the status timestamps and by the state versions written.
    for ws_id, run_ids in runs.items():
        name, _ = workspaces[ws_id]
        assert order_violations([seen[r] for r in run_ids]) == []
        versions = api.state_versions(org, name)
        assert state_order_violations(versions, run_ids) == []
        current = api.current_state_version(ws_id)
        assert current is not None and current["id"] == versions[0]["id"]
        document = api.state_document(current)
        assert state_resources(document) == {"terraform_data.r": str(RUNS_PER_WORKSPACE)}
    # The agents are still there, none crashed.
    assert all(a.running() for a in agents), cluster.describe()


def test_agent_killed_during_plan_errors_the_run_and_releases_the_workspace(
    cluster: Cluster, api: Api, org: str, gates: list[Gate], tmp_path: Path
) -> None:
    pool_id, _, token = new_pool(api, org)
    agent = cluster.start_agent(token, server=0)
    ws_id, _, cv_id = gated_workspace(api, org, pool_id)
    gate = make_gate(gates, tmp_path, "plan-gate")

    run_id = api.create_run(ws_id, cv_id, variables={"n": "1", "plan_gates": [str(gate.path)]})
    wait_until(
        gate.reader_waiting,
        timeout=RUN_DEADLINE_SECONDS,
        what="the plan reading its gate",
        describe=lambda: f"run: {api.run_status(run_id)}\n{cluster.describe()}",
    )
    assert api.run_status(run_id) == "planning"
    agent.kill()
    gate.open()

    run = wait_final(api, run_id, cluster, timeout=STALE_DEADLINE_SECONDS)
    assert run["status"] == "errored", cluster.describe()
    plan_log = api.phase_log("plans", run["plan-id"])
    assert "stopped responding" in plan_log, plan_log
    assert api.current_state_version(ws_id) is None  # the plan wrote nothing

    after = assert_released_and_usable(api, cluster, ws_id, cv_id, token, n="2")
    assert state_resources(api.state_document(api.current_state_version(ws_id) or {})) == {
        "terraform_data.first": "first-2",
        "terraform_data.slow": "slow-2",
    }
    assert after["id"] != run_id


def test_agent_killed_during_apply_keeps_the_state_saved_before(
    cluster: Cluster, api: Api, org: str, gates: list[Gate], tmp_path: Path
) -> None:
    pool_id, _, token = new_pool(api, org)
    agent = cluster.start_agent(token, server=0)
    ws_id, _, cv_id = gated_workspace(api, org, pool_id)
    gate = make_gate(gates, tmp_path, "apply-gate")

    run_id = api.create_run(ws_id, cv_id, variables={"n": "1", "apply_gate": str(gate.path)})
    wait_until(
        gate.reader_waiting,
        timeout=RUN_DEADLINE_SECONDS,
        what="the apply's provisioner reading its gate",
        describe=lambda: f"run: {api.run_status(run_id)}\n{cluster.describe()}",
    )
    assert api.run_status(run_id) == "applying"
    # terraform_data.first is created before the provisioner of .slow starts; wait until the
    # agent has saved that state (it watches the state file Terraform writes).
    saved = wait_until(
        lambda: _state_with(api, ws_id, run_id, "terraform_data.first"),
        timeout=RUN_DEADLINE_SECONDS,
        what="the state with terraform_data.first saved",
        describe=cluster.describe,
    )
    killed_at = time.time()
    agent.kill()
    gate.open()

    run = wait_final(api, run_id, cluster, timeout=STALE_DEADLINE_SECONDS)
    assert run["status"] == "errored", cluster.describe()
    apply_log = api.phase_log("applies", run["apply-id"])
    assert "stopped responding" in apply_log, apply_log
    # The state saved before the kill is still the workspace's current state.
    current = api.current_state_version(ws_id)
    assert current is not None and current["run-id"] == run_id
    assert _created(current) <= killed_at
    assert current["serial"] >= saved["serial"]
    # Only what was done before the kill: .slow's provisioner never finished.
    assert state_resources(api.state_document(current)) == {"terraform_data.first": "first-1"}

    assert_released_and_usable(api, cluster, ws_id, cv_id, token, n="2")
    final = api.current_state_version(ws_id)
    assert final is not None and final["serial"] > current["serial"]
    assert state_resources(api.state_document(final)) == {
        "terraform_data.first": "first-2",
        "terraform_data.slow": "slow-2",
    }


def test_server_killed_during_apply_the_agent_reconnects_and_the_run_is_applied(
    restart_cluster: Cluster, restart_api: Api, gates: list[Gate], tmp_path: Path
) -> None:
    cluster, api = restart_cluster, restart_api
    org = f"agents-{secrets.token_hex(4)}"
    api.create_organization(org)
    pool_id, _, token = new_pool(api, org)
    agent = cluster.start_agent(token, server=0)
    agent_id = wait_for_agents(api, pool_id, {agent.name}, cluster)[agent.name]
    ws_id, _, cv_id = gated_workspace(api, org, pool_id)
    gate = make_gate(gates, tmp_path, "apply-gate")

    run_id = api.create_run(ws_id, cv_id, variables={"n": "1", "apply_gate": str(gate.path)})
    wait_until(
        gate.reader_waiting,
        timeout=RUN_DEADLINE_SECONDS,
        what="the apply's provisioner reading its gate",
        describe=lambda: f"run: {api.run_status(run_id)}\n{cluster.describe()}",
    )
    wait_until(
        lambda: _state_with(api, ws_id, run_id, "terraform_data.first"),
        timeout=RUN_DEADLINE_SECONDS,
        what="the state with terraform_data.first saved",
        describe=cluster.describe,
    )
    server = cluster.servers[0]
    server.kill()
    # The apply ends while its server is down: the agent must keep the state, the log and
    # the job's end until the server is back.
    gate.open()
    server.start()

    run = wait_final(api, run_id, cluster)
    assert run["status"] == "applied", cluster.describe()
    assert agent.running(), cluster.describe()
    events = api.run_events(run_id)
    assert agent_of(events, "Plan") == agent_of(events, "Apply") == agent_id
    # The run's final state is the workspace's current state.
    current = api.current_state_version(ws_id)
    assert current is not None and current["run-id"] == run_id
    versions = api.state_versions(org, api.workspace(ws_id)["name"])
    assert versions[0]["id"] == current["id"]
    assert state_resources(api.state_document(current)) == {
        "terraform_data.first": "first-1",
        "terraform_data.slow": "slow-1",
    }
    apply_log = api.phase_log("applies", run["apply-id"])
    assert "Apply complete!" in apply_log, apply_log


def test_revoked_agent_token_stops_the_running_agent(cluster: Cluster, api: Api, org: str) -> None:
    pool_id, token_id, token = new_pool(api, org)
    revoked = cluster.start_agent(token, server=1)
    revoked_id = wait_for_agents(api, pool_id, {revoked.name}, cluster)[revoked.name]

    api.revoke_agent_token(token_id)
    wait_until(
        lambda: not revoked.running(),
        timeout=30,
        what="the agent with a revoked token stops",
        describe=cluster.describe,
    )
    assert revoked.exit_code() != 0
    assert "401" in revoked.log_text() or "refused" in revoked.log_text().lower(), (
        revoked.log_tail()
    )

    # Its pool still works with a new token, and the run goes to the new agent.
    _, new_token = api.create_agent_token(pool_id, "fresh")
    ws_name = f"ws-{secrets.token_hex(3)}"
    ws_id = api.create_workspace(org, ws_name, pool_id=pool_id)
    cv_id = api.upload_configuration(ws_id, {"main.tf": SMALL_CONFIG})
    run_id = api.create_run(ws_id, cv_id, variables={"n": "1"})
    fresh = cluster.start_agent(new_token, server=0)
    fresh_id = wait_for_agents(api, pool_id, {fresh.name}, cluster)[fresh.name]
    run = wait_final(api, run_id, cluster)
    assert run["status"] == "applied", cluster.describe()
    assert agent_of(api.run_events(run_id), "Plan") == fresh_id != revoked_id


def test_checks_catch_violations() -> None:
    """The checks the 100-run test makes fail on runs that ran twice or out of order."""
    once = ["Plan started on agent agent-a", "Apply started on agent agent-a"]
    twice = [*once, "Plan started on agent agent-b"]
    good_jobs = [
        {"run_id": "run-1", "phase": "plan", "status": "finished"},
        {"run_id": "run-1", "phase": "apply", "status": "finished"},
    ]
    assert run_once_violations({"run-1": once}, good_jobs) == []
    assert run_once_violations({"run-1": twice}, good_jobs)
    assert run_once_violations({"run-1": once}, [*good_jobs, good_jobs[0]])
    assert run_once_violations({"run-1": once}, good_jobs[:1])

    first = {"id": "run-1", "status-timestamps": {"applied-at": "2026-12-01T15:00:02Z"}}
    later = {"id": "run-2", "status-timestamps": {"planning-at": "2026-12-01T15:00:03Z"}}
    early = {"id": "run-2", "status-timestamps": {"planning-at": "2026-12-01T15:00:01Z"}}
    assert order_violations([first, later]) == []
    assert order_violations([first, early])

    versions = [{"run-id": "run-2"}, {"run-id": "run-1"}, {"run-id": "run-1"}]
    assert state_order_violations(versions, ["run-1", "run-2"]) == []
    assert state_order_violations(versions, ["run-2", "run-1"])


def _created(state_version: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(state_version["created-at"].replace("Z", "+00:00")).timestamp()


def _state_with(api: Api, ws_id: str, run_id: str, address: str) -> dict[str, Any] | None:
    current = api.current_state_version(ws_id)
    if current is None or current["run-id"] != run_id:
        return None
    if address not in state_resources(api.state_document(current)):
        return None
    return current
