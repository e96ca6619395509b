"""A chain of run triggers with real Terraform: ``terraform apply`` in workspace A, and
Terrapod's built-in agent then plans and applies B (triggered by A) and C (triggered by B).

A is driven by the real CLI with a ``cloud {}`` block (remote execution, as a user would);
B and C get their configuration through the API-driven workflow (a configuration version and
its upload) and apply what a trigger queues because ``auto-apply-run-trigger`` is on. Waits
poll the API with a deadline; order is asserted on the runs' own timestamps.
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import ServerInfo, Terraform, describe
from tests.e2e.test_remote_runs import (
    ONE_RESOURCE,
    RUN_DEADLINE_SECONDS,
    remote_config,
    run_id_in,
    tf,
    wait_for_run,
)

ORG = "default"
POLL_SECONDS = 0.1
DOWNSTREAM = b"""
resource "terraform_data" "downstream" {
  input = "from a run trigger"
}
"""


@pytest.fixture
def api(server: ServerInfo) -> Iterator[httpx.Client]:
    with server.http(server.admin_token) as client:
        yield client


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def remote_workspace(api: httpx.Client, name: str) -> str:
    """A remote-execution workspace that applies what its run triggers queue, with an
    uploaded configuration (no run of its own)."""
    r = api.post(
        f"/api/v2/organizations/{ORG}/workspaces",
        json={
            "data": {
                "type": "workspaces",
                "attributes": {
                    "name": name,
                    "execution-mode": "remote",
                    "auto-apply-run-trigger": True,
                },
            }
        },
    )
    assert r.status_code == 201, r.text
    workspace_id = str(r.json()["data"]["id"])
    cv = api.post(
        f"/api/v2/workspaces/{workspace_id}/configuration-versions",
        json={"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": False}}},
    )
    assert cv.status_code == 201, cv.text
    upload = api.put(
        cv.json()["data"]["attributes"]["upload-url"],
        content=tarball({"main.tf": DOWNSTREAM}),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert upload.status_code == 200, upload.text
    return workspace_id


def connect(api: httpx.Client, source_id: str, destination_id: str) -> None:
    r = api.post(
        f"/api/v2/workspaces/{destination_id}/run-triggers",
        json={
            "data": {
                "type": "run-triggers",
                "relationships": {"sourceable": {"data": {"type": "workspaces", "id": source_id}}},
            }
        },
    )
    assert r.status_code == 201, r.text


def first_run(api: httpx.Client, workspace_id: str, server: ServerInfo) -> dict[str, Any]:
    """Wait for the workspace's first run to appear; return it."""
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while True:
        r = api.get(f"/api/v2/workspaces/{workspace_id}/runs")
        assert r.status_code == 200, r.text
        runs: list[dict[str, Any]] = r.json()["data"]
        if runs:
            assert len(runs) == 1, runs
            return runs[0]
        assert time.monotonic() < deadline, (
            f"no run was queued in {workspace_id}\n{server.log_tail()}"
        )
        time.sleep(POLL_SECONDS)


def test_apply_in_a_runs_b_then_c(
    terraform: Terraform, server: ServerInfo, api: httpx.Client, tmp_path: Path
) -> None:
    cwd = tmp_path / "a"
    a_name = remote_config(terraform, server, cwd, ONE_RESOURCE, "chain-a")
    a_id = api.get(f"/api/v2/organizations/{ORG}/workspaces/{a_name}").json()["data"]["id"]
    suffix = secrets.token_hex(4)
    b_id = remote_workspace(api, f"chain-b-{suffix}")
    c_id = remote_workspace(api, f"chain-c-{suffix}")
    connect(api, a_id, b_id)
    connect(api, b_id, c_id)

    result = tf(terraform, cwd, "apply", "-auto-approve", "-no-color")
    assert "Apply complete! Resources: 1 added" in result.stdout, describe(result)
    a_run_id = run_id_in(result.stdout)
    a_run = wait_for_run(api, a_run_id, {"applied"})

    b_run = first_run(api, b_id, server)
    b_final = wait_for_run(api, b_run["id"], {"applied", "errored", "planned"})
    assert b_final["status"] == "applied", (b_final, server.log_tail())
    c_run = first_run(api, c_id, server)
    c_final = wait_for_run(api, c_run["id"], {"applied", "errored", "planned"})
    assert c_final["status"] == "applied", (c_final, server.log_tail())

    # Each run names its source, and each started only after its source had applied.
    assert b_final["source"] == c_final["source"] == "tfe-run-trigger"
    assert b_final["message"] == f"Triggered by workspace {a_name} run {a_run_id}"
    assert c_final["message"] == f"Triggered by workspace chain-b-{suffix} run {b_run['id']}"
    assert b_final["auto-apply"] is True
    a_applied = when(a_run["status-timestamps"]["applied-at"])
    b_created, b_applied = (
        when(b_final["created-at"]),
        when(b_final["status-timestamps"]["applied-at"]),
    )
    c_created = when(c_final["created-at"])
    assert a_applied <= b_created < b_applied <= c_created, (a_run, b_final, c_final)

    # The downstream workspaces now hold the state their triggered applies wrote.
    for workspace_id in (b_id, c_id):
        current = api.get(f"/api/v2/workspaces/{workspace_id}/current-state-version")
        assert current.status_code == 200, current.text
        workspace = api.get(f"/api/v2/workspaces/{workspace_id}").json()["data"]
        assert workspace["attributes"]["resource-count"] == 1, workspace["attributes"]
    # A's own run names the run it queued, in its timeline.
    events = api.get(f"/api/v2/runs/{a_run_id}/run-events").json()["data"]
    fired = [
        e["attributes"]["description"]
        for e in events
        if e["attributes"]["action"] == "run-trigger-fired"
    ]
    assert len(fired) == 1, fired
    assert fired[0].startswith(f"Queued run {b_run['id']} in workspace chain-b-{suffix} "), fired
