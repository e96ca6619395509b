"""``terrapod agent`` as a real process against a real ``terrapod serve`` whose built-in agent
is off: the real Terraform CLI runs a remote plan and apply through it, and SIGTERM hands a
running plan back while an apply finishes (docs/dev/agents.md, "Shutdown").

One server per database backend; every test makes its own agent pool and token through the
API and starts its own agent processes (tests/e2e/agents_harness.py). Engines are held inside a
plan or an apply with named pipes (the ``Gate`` of tests/e2e/test_agents_multiprocess.py), so
nothing here waits a fixed time.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from terrapod import __version__
from tests.conftest import ADMIN_TOKEN
from tests.databases import temporary_database
from tests.e2e.agents_harness import FINAL_RUN_STATUSES, AgentProcess, Api, wait_until
from tests.e2e.harness import (
    TERRAPOD_BIN,
    ServerInfo,
    Terraform,
    describe,
    output_of,
    run_server,
    write_cloud_config,
)
from tests.e2e.test_agents_multiprocess import GATED_CONFIG, Gate

ORG = "default"
DEADLINE_SECONDS = 90.0
SERVER_SETTINGS = {
    "TERRAPOD_RUNS__BUILTIN_AGENT": "false",
    "TERRAPOD_AGENTS__HEARTBEAT_SECONDS": "1",
    # An agent told to stop answers within a long poll: keep them short.
    "TERRAPOD_AGENTS__RUNS_NEXT_MAX_WAIT_SECONDS": "2",
    "TERRAPOD_AGENTS__JOB_HEARTBEAT_MAX_WAIT_SECONDS": "2",
}


@pytest.fixture(scope="module")
def agent_server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    workdir = tmp_path_factory.mktemp(f"agent-process-{backend}")
    with (
        temporary_database(backend, workdir) as database_url,
        run_server(
            workdir,
            backend=backend,
            database_url=database_url,
            admin_token=ADMIN_TOKEN,
            extra_env=SERVER_SETTINGS,
        ) as info,
    ):
        yield info


@pytest.fixture
def api(agent_server: ServerInfo) -> Iterator[Api]:
    with Api(agent_server.url, agent_server.ca_cert, ADMIN_TOKEN) as client:
        yield client


@pytest.fixture
def agents(agent_server: ServerInfo, api: Api, tmp_path: Path) -> Iterator[list[AgentProcess]]:
    """Started agent processes; whatever is left of them is killed at the end."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.cleanup()


@pytest.fixture
def gates() -> Iterator[list[Gate]]:
    made: list[Gate] = []
    yield made
    for gate in made:
        gate.open()


def start_agent(
    agents: list[AgentProcess],
    server: ServerInfo,
    token: str,
    directory: Path,
    *extra_args: str,
) -> AgentProcess:
    name = f"agent-{secrets.token_hex(3)}"
    agent = AgentProcess(
        name=name,
        workdir=directory / name,
        url=server.url,
        ca_cert=server.ca_cert,
        token=token,
        concurrency=1,
        extra_args=extra_args,
    )
    agent.start()
    agents.append(agent)
    return agent


def new_pool(api: Api) -> tuple[str, str]:
    """(pool id, agent token) of a fresh pool in the default organization."""
    pool_id = api.create_pool(ORG, f"pool-{secrets.token_hex(3)}")
    _, token = api.create_agent_token(pool_id)
    return pool_id, token


def joined(api: Api, pool_id: str, agent: AgentProcess) -> str:
    """Wait until ``agent`` joined the pool; its agent id."""

    def agent_id() -> str | None:
        return next((a["id"] for a in api.agents(pool_id) if a["name"] == agent.name), None)

    return wait_until(agent_id, timeout=30, what=f"{agent.name} joined", describe=agent.log_tail)


def scrape_metrics(agent: AgentProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The agent's /metrics (``--metrics-port 0``: the port it logged), by sample and labels."""
    port = next(
        json.loads(line)["port"]
        for line in agent.log_text().splitlines()
        if '"serving metrics"' in line
    )
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def final_run(api: Api, run_id: str, *agents: AgentProcess) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        run = api.run(run_id)
        return run if run["status"] in FINAL_RUN_STATUSES else None

    return wait_until(
        final,
        timeout=DEADLINE_SECONDS,
        what=f"run {run_id} in a final status",
        describe=lambda: "\n\n".join(a.log_tail() for a in agents),
    )


def started_on(api: Api, run_id: str, phase: str) -> list[str]:
    """The agents the run's phase started on, in order (a handed-back plan starts twice)."""
    prefix = f"{phase} started on agent "
    return [e.removeprefix(prefix).strip() for e in api.run_events(run_id) if e.startswith(prefix)]


def test_the_terraform_cli_applies_through_an_agent_process(
    agent_server: ServerInfo, api: Api, agents: list[AgentProcess], tmp_path: Path
) -> None:
    pool_id, token = new_pool(api)
    agent = start_agent(agents, agent_server, token, tmp_path, "--metrics-port", "0")
    agent_id = joined(api, pool_id, agent)
    name = f"ws-{secrets.token_hex(3)}"
    ws_id = api.create_workspace(ORG, name, pool_id=pool_id)
    cwd = tmp_path / "cfg"
    write_cloud_config(
        cwd,
        hostname=agent_server.hostname,
        organization=ORG,
        workspace=name,
        resources='resource "terraform_data" "example" {\n  input = "from-the-agent"\n}\n\n'
        'output "input" {\n  value = terraform_data.example.output\n}\n',
    )
    terraform = Terraform(agent_server, tmp_path / "tf-home", ADMIN_TOKEN)
    init = terraform.run(["init", "-no-color"], cwd)
    assert init.returncode == 0, describe(init)

    applied = terraform.run(["apply", "-auto-approve", "-no-color"], cwd)

    assert applied.returncode == 0, describe(applied) + "\n" + agent.log_tail()
    output = output_of(applied)
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in output, output
    assert 'input = "from-the-agent"' in output, output
    (run,) = list(api.http.get(f"/api/v2/workspaces/{ws_id}/runs").json()["data"])
    assert started_on(api, run["id"], "Plan") == started_on(api, run["id"], "Apply") == [agent_id]
    current = api.current_state_version(ws_id)
    assert current is not None and current["run-id"] == run["id"]
    # The agent logs what it did, and nothing of its credentials.
    log = agent.log_text()
    assert run["id"] in log and "job ended" in log, log
    assert token not in log and "tpod." not in log, log
    # Its own /metrics (--metrics-port): the run's two jobs, once it has counted the apply's
    # end (the run is applied while the agent still reads the server's answer).
    finished = ("terrapod_agent_jobs_reported_total", frozenset({("outcome", "finished")}))

    def both_jobs_counted() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        scraped = scrape_metrics(agent)
        return scraped if scraped.get(finished) == 2 else None

    metrics = wait_until(
        both_jobs_counted,
        timeout=DEADLINE_SECONDS,
        what="the agent counted both jobs",
        describe=agent.log_tail,
    )
    for phase in ("plan", "apply"):
        assert metrics[("terrapod_agent_jobs_claimed_total", frozenset({("phase", phase)}))] == 1
    assert metrics[("terrapod_agent_jobs_running", frozenset())] == 0
    assert metrics[("terrapod_agent_capacity", frozenset())] == 1
    info = {("agent_id", agent_id), ("pool_id", pool_id), ("version", __version__)}
    assert metrics[("terrapod_agent_info", frozenset(info))] == 1
    expiry = metrics[("terrapod_agent_credential_expiry_timestamp_seconds", frozenset())]
    assert expiry > metrics[("terrapod_agent_last_heartbeat_timestamp_seconds", frozenset())] > 0
    assert not any(name.startswith("terrapod_http_") for name, _ in metrics)  # not the server's


def test_sigterm_hands_back_a_plan_and_lets_an_apply_finish(
    agent_server: ServerInfo,
    api: Api,
    agents: list[AgentProcess],
    gates: list[Gate],
    tmp_path: Path,
) -> None:
    pool_id, token = new_pool(api)
    stopping = start_agent(agents, agent_server, token, tmp_path)
    stopping_id = joined(api, pool_id, stopping)
    plan_gate, apply_gate = Gate(tmp_path / "plan-gate"), Gate(tmp_path / "apply-gate")
    gates += [plan_gate, apply_gate]

    # An apply, held inside its provisioner.
    applying_ws = api.create_workspace(ORG, f"ws-{secrets.token_hex(3)}", pool_id=pool_id)
    cv = api.upload_configuration(applying_ws, {"main.tf": GATED_CONFIG})
    applying = api.create_run(
        applying_ws, cv, variables={"n": "1", "apply_gate": str(apply_gate.path)}
    )
    wait_until(
        apply_gate.reader_waiting,
        timeout=DEADLINE_SECONDS,
        what="the apply inside its provisioner",
        describe=stopping.log_tail,
    )
    # A second agent process (concurrency 1 each) takes a plan, held on its gate.
    planning_agent = start_agent(agents, agent_server, token, tmp_path)
    planner_id = joined(api, pool_id, planning_agent)
    planning_ws = api.create_workspace(ORG, f"ws-{secrets.token_hex(3)}", pool_id=pool_id)
    cv = api.upload_configuration(planning_ws, {"main.tf": GATED_CONFIG})
    planning = api.create_run(
        planning_ws, cv, variables={"n": "2", "plan_gates": [str(plan_gate.path)]}
    )
    wait_until(
        plan_gate.reader_waiting,
        timeout=DEADLINE_SECONDS,
        what="the plan reading its gate",
        describe=planning_agent.log_tail,
    )
    assert started_on(api, planning, "Plan") == [planner_id]

    # SIGTERM both: the plan is handed back (the planner exits), the apply goes on.
    assert planning_agent.process is not None and stopping.process is not None
    planning_agent.process.send_signal(signal.SIGTERM)
    stopping.process.send_signal(signal.SIGTERM)
    assert planning_agent.process.wait(timeout=DEADLINE_SECONDS) == 0, planning_agent.log_tail()
    wait_until(
        lambda: api.run_status(planning) == "plan_queued",
        timeout=DEADLINE_SECONDS,
        what="the handed-back plan queued again",
        describe=planning_agent.log_tail,
    )
    assert stopping.running(), stopping.log_tail()
    assert api.run_status(applying) == "applying"

    apply_gate.open()
    assert final_run(api, applying, stopping)["status"] == "applied"
    assert stopping.process.wait(timeout=DEADLINE_SECONDS) == 0, stopping.log_tail()

    # Another agent plans the handed-back run again, from the start, in the same log. The
    # killed engine's pipe end goes; each later read of the pipe (the plan's, and the apply's,
    # which evaluates the configuration again) is let go as soon as it waits.
    plan_gate.open()
    fresh = start_agent(agents, agent_server, token, tmp_path)
    fresh_id = joined(api, pool_id, fresh)

    def final_letting_reads_go() -> dict[str, Any] | None:
        if plan_gate.reader_waiting():
            plan_gate.open()
        run = api.run(planning)
        return run if run["status"] in FINAL_RUN_STATUSES else None

    run = wait_until(
        final_letting_reads_go,
        timeout=DEADLINE_SECONDS,
        what="the handed-back run in a final status",
        describe=fresh.log_tail,
    )
    assert run["status"] == "applied", fresh.log_tail()
    assert started_on(api, planning, "Plan") == [planner_id, fresh_id]
    plan_log = api.phase_log("plans", run["plan-id"])
    assert "handed it back" in plan_log, plan_log
    assert started_on(api, applying, "Apply") == [stopping_id]


def test_a_second_sigterm_cancels_an_apply_which_still_saves_its_state(
    agent_server: ServerInfo,
    api: Api,
    agents: list[AgentProcess],
    gates: list[Gate],
    tmp_path: Path,
) -> None:
    pool_id, token = new_pool(api)
    agent = start_agent(agents, agent_server, token, tmp_path)
    joined(api, pool_id, agent)
    gate = Gate(tmp_path / "apply-gate")
    gates.append(gate)
    ws_id = api.create_workspace(ORG, f"ws-{secrets.token_hex(3)}", pool_id=pool_id)
    cv = api.upload_configuration(ws_id, {"main.tf": GATED_CONFIG})
    run_id = api.create_run(ws_id, cv, variables={"n": "3", "apply_gate": str(gate.path)})
    wait_until(
        gate.reader_waiting,
        timeout=DEADLINE_SECONDS,
        what="the apply inside its provisioner",
        describe=agent.log_tail,
    )

    assert agent.process is not None
    agent.process.send_signal(signal.SIGTERM)
    wait_until(
        lambda: "applies finish" in agent.log_text(),
        timeout=DEADLINE_SECONDS,
        what="the agent heard the first SIGTERM",
        describe=agent.log_tail,
    )
    agent.process.send_signal(signal.SIGTERM)

    run = final_run(api, run_id, agent)
    assert run["status"] == "canceled", agent.log_tail()
    assert agent.process.wait(timeout=DEADLINE_SECONDS) == 0, agent.log_tail()
    apply_log = api.phase_log("applies", run["apply-id"])
    assert "Interrupt received" in apply_log, apply_log
    # Terraform saved what it had done: the first resource, before the provisioner.
    current = api.current_state_version(ws_id)
    assert current is not None and current["run-id"] == run_id, current
    resources = {r["type"] + "." + r["name"] for r in api.state_document(current)["resources"]}
    assert "terraform_data.first" in resources, resources


def test_run_job_runs_one_claimed_job_and_reports_its_end(
    agent_server: ServerInfo, api: Api, tmp_path: Path
) -> None:
    """What a Kubernetes executor's pod does: a ticket claimed by an agent, run elsewhere."""
    pool_id, token = new_pool(api)
    ws_id = api.create_workspace(ORG, f"ws-{secrets.token_hex(3)}", pool_id=pool_id)
    cv = api.upload_configuration(ws_id, {"main.tf": GATED_CONFIG})
    run_id = api.create_run(ws_id, cv, variables={"n": "4"})
    ctx = ssl.create_default_context(cafile=str(agent_server.ca_cert))
    with httpx.Client(base_url=agent_server.url, verify=ctx, trust_env=False) as http:
        joined = http.post(
            "/api/v2/agent-pools/join",
            json={"join_token": token, "name": "claimer", "capacity": 1},
        ).json()
        claimed = http.get(
            f"/api/v2/listeners/{joined['agent_id']}/runs/next",
            params={"wait": 2},
            headers={"Authorization": f"Bearer {joined['credential']}"},
        )
    assert claimed.status_code == 200, claimed.text
    ticket = tmp_path / "ticket.json"
    ticket.write_text(json.dumps(claimed.json()))
    ticket.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TERRAPOD_", "TF_"))}

    done = subprocess.run(
        [
            str(TERRAPOD_BIN),
            "agent",
            "run-job",
            "--ticket-file",
            str(ticket),
            "--ca-file",
            str(agent_server.ca_cert),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        env=env,
        capture_output=True,
        timeout=DEADLINE_SECONDS,
        check=False,
    )

    assert done.returncode == 0, done.stderr.decode()
    # The plan finished and the auto-apply waits for an agent of the pool.
    assert api.run_status(run_id) == "apply_queued"
    plan_log = api.phase_log("plans", api.run(run_id)["plan-id"])
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in plan_log, plan_log
    assert claimed.json()["run_token"] not in done.stderr.decode()
