#!/usr/bin/env python3
"""Runs through ``terrapod agent`` processes: throughput, queue-to-claim latency and the
servers' CPU per run, with 1, 2 and 4 agents.

Starts ``--servers`` (2) ``terrapod serve`` processes on one scratch PostgreSQL database
(built-in agents off, shared object store and secret key; the cluster of
``tests/e2e/agents_harness.py``), then for each agent count: a fresh agent pool and
workspaces in agent execution mode, that many ``terrapod agent`` processes (each with
``--concurrency`` 1 by default, spread over the servers), and ``--runs`` auto-apply
API-driven runs spread over ``--workspaces`` workspaces, all queued at once. The engine is the
real Terraform (``terrapod-terraform``); each run applies one ``terraform_data`` resource
whose input is a run variable, so every run has a change to apply.

Prints, per agent count:

- runs/min: runs from the first ``POST /runs`` to the last run's ``applied-at``;
- queue → claim: each run's ``plan-queued-at`` → ``planning-at`` (its plan job claimed by an
  agent), p50 and p99 (milliseconds); and the same for the apply (``apply-queued-at`` →
  ``applying-at``); with a backlog this is mostly queueing behind busy agents;
- idle claim: after the burst, ``--idle-runs`` (6) runs one at a time, created through each
  server in turn, so every agent is idle in its ``runs/next`` long poll: plan queued →
  claimed, p50 and max (the protocol's own dispatch latency: a long poll woken by its own
  server's bus, or, when no agent polls the server that queued the job, another server's
  look at the database every ``agents.poll_seconds``, 1 s);
- server CPU per run: utime+stime of all serve processes (``/proc/<pid>/stat``) over the
  round, divided by the runs; agent CPU per run: the same for the agent processes, with the
  engines they ran and waited for (cutime+cstime).

Asserts nothing. About 2 minutes with the defaults on a 2-core machine.

    .venv/bin/python benchmarks/agents.py
    .venv/bin/python benchmarks/agents.py --agents 1,2,4 --runs 40 --workspaces 10
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/ is sys.path[0] when this file is run as a script; the cluster harness lives
# with the e2e tests, so the repository root goes on the path too.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _harness import (  # noqa: E402
    ScratchPostgres,
    children_cpu_seconds,
    cpu_seconds,
    epoch,
    loadavg,
    table,
)
from tests.e2e.agents_harness import (  # noqa: E402
    FINAL_RUN_STATUSES,
    Api,
    Cluster,
    run_cluster,
    wait_until,
)

CONFIG = """
variable "n" {
  type    = string
  default = "0"
}

resource "terraform_data" "r" {
  input = var.n
}
"""
ADMIN_TOKEN = "tpod." + secrets.token_urlsafe(36)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.0f}"  # noqa: PLR0124 - NaN


def round_of(
    cluster: Cluster, api: Api, org: str, agents: int, args: argparse.Namespace
) -> list[str]:
    """One measured round with ``agents`` agents; returns its table row."""
    pool_id = api.create_pool(org, f"bench-{agents}-{secrets.token_hex(2)}")
    _, token = api.create_agent_token(pool_id)
    started_agents = [
        cluster.start_agent(
            token,
            name=f"bench-{agents}-{i}",
            server=i % len(cluster.servers),
            concurrency=args.concurrency,
        )
        for i in range(agents)
    ]
    names = {a.name for a in started_agents}
    wait_until(
        lambda: {a["name"] for a in api.agents(pool_id)} >= names,
        timeout=60,
        what="agents joined",
        describe=cluster.describe,
    )
    workspaces = []
    for i in range(args.workspaces):
        ws_id = api.create_workspace(org, f"bench-{agents}-{i}", pool_id=pool_id)
        workspaces.append((ws_id, api.upload_configuration(ws_id, {"main.tf": CONFIG})))

    servers_cpu = sum(cpu_seconds(s.pid) for s in cluster.servers)
    agents_cpu = sum(cpu_seconds(a.pid) + children_cpu_seconds(a.pid) for a in started_agents)
    clock = time.time()
    runs = [
        api.create_run(ws_id, cv_id, variables={"n": str(k)})
        for k in range(args.runs)
        for ws_id, cv_id in [workspaces[k % len(workspaces)]]
    ]
    pending = list(runs)
    done: dict[str, dict[str, object]] = {}

    def all_final() -> bool:
        while pending:
            run = api.run(pending[0])
            if run["status"] not in FINAL_RUN_STATUSES:
                return False
            done[pending.pop(0)] = run
        return True

    wait_until(
        all_final, timeout=args.deadline, interval=0.5, what="runs final", describe=cluster.describe
    )
    servers_cpu = sum(cpu_seconds(s.pid) for s in cluster.servers) - servers_cpu
    agents_cpu = (
        sum(cpu_seconds(a.pid) + children_cpu_seconds(a.pid) for a in started_agents) - agents_cpu
    )
    # Idle agents: one run at a time, so the claim latency is the protocol's (a long poll
    # woken in this server, or the once-a-second look at the database in another).
    # They are created through each server in turn: an agent whose long poll is on another
    # server than the one that queued the job finds it by its look at the database.
    idle_claim = []
    creators = [api] + [cluster.api(i) for i in range(1, len(cluster.servers))]
    for k in range(args.idle_runs):
        ws_id, cv_id = workspaces[k % len(workspaces)]
        creator = creators[k % len(creators)]
        run_id = creator.create_run(ws_id, cv_id, variables={"n": f"idle-{k}"})
        wait_until(
            lambda: api.run_status(run_id) in FINAL_RUN_STATUSES,  # noqa: B023 - used at once
            timeout=args.deadline,
            what=f"idle run {run_id} final",
            describe=cluster.describe,
        )
        idle = api.run(run_id)["status-timestamps"]
        idle_claim.append(epoch(idle["planning-at"]) - epoch(idle["plan-queued-at"]))
    for creator in creators[1:]:
        creator.close()
    cluster.stop_agents()

    applied = [r for r in done.values() if r["status"] == "applied"]
    stamps = [r["status-timestamps"] for r in applied]
    assert all(isinstance(s, dict) for s in stamps)
    last = max(epoch(s["applied-at"]) for s in stamps) if stamps else float("nan")  # type: ignore[index]
    plan_claim = [
        epoch(s["planning-at"]) - epoch(s["plan-queued-at"])  # type: ignore[index]
        for s in stamps
    ]
    apply_claim = [
        epoch(s["applying-at"]) - epoch(s["apply-queued-at"])  # type: ignore[index]
        for s in stamps
        if "apply-queued-at" in s  # type: ignore[operator]
    ]
    elapsed = last - clock
    return [
        str(agents),
        f"{len(applied)}/{len(runs)}",
        f"{elapsed:.1f}",
        f"{len(applied) / elapsed * 60:.1f}" if elapsed > 0 else "n/a",
        ms(percentile(plan_claim, 50)),
        ms(percentile(plan_claim, 99)),
        ms(percentile(apply_claim, 50)),
        ms(percentile(apply_claim, 99)),
        ms(percentile(idle_claim, 50)),
        ms(max(idle_claim, default=float("nan"))),
        ms(servers_cpu / max(len(runs), 1)),
        ms(agents_cpu / max(len(runs), 1)),
        loadavg(),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default="1,2,4", help="agent counts, one round each")
    parser.add_argument("--runs", type=int, default=40, help="runs per round")
    parser.add_argument("--workspaces", type=int, default=10, help="workspaces per round")
    parser.add_argument(
        "--idle-runs", type=int, default=6, help="runs one at a time after each round"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="jobs per agent at once")
    parser.add_argument("--servers", type=int, default=2, help="terrapod serve processes")
    parser.add_argument("--deadline", type=float, default=600, help="seconds a round may take")
    parser.add_argument(
        "--postgres-url", default="postgresql://postgres@127.0.0.1:5432", help="where to CREATE"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and data dirs")
    args = parser.parse_args()
    counts = [int(c) for c in args.agents.split(",") if c]

    scratch = ScratchPostgres(args.postgres_url)
    scratch.create()
    root = Path(tempfile.mkdtemp(prefix="terrapod-bench-agents-"))
    rows = []
    try:
        print(f"{args.servers} servers on {scratch.name}; {loadavg()} load; data in {root}")
        with (
            run_cluster(
                root,
                database_url=scratch.url,
                admin_token=ADMIN_TOKEN,
                servers=args.servers,
                settings={"TERRAPOD_LOG_LEVEL": "warning"},
            ) as cluster,
            cluster.api(0) as api,
        ):
            org = f"bench-{secrets.token_hex(3)}"
            api.create_organization(org)
            for agents in counts:
                row = round_of(cluster, api, org, agents, args)
                rows.append(row)
                print(f"  {agents} agent(s): {row[3]} runs/min", flush=True)
    finally:
        scratch.drop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(
        f"{args.runs} auto-apply runs over {args.workspaces} workspaces per round, agents with "
        f"--concurrency {args.concurrency}, {args.servers} servers, real Terraform"
    )
    print(
        table(
            [
                "agents",
                "applied",
                "seconds",
                "runs/min",
                "plan claim p50 ms",
                "p99 ms",
                "apply claim p50 ms",
                "p99 ms",
                "idle claim p50 ms",
                "max ms",
                "server CPU ms/run",
                "agent+engine CPU ms/run",
                "load",
            ],
            rows,
            left={12},
        )
    )


if __name__ == "__main__":
    main()
