"""Helpers for run tests in the API tier: configurations to upload, and an agent that speaks
the real agent protocol (claim, heartbeat, log, finish) through the services, so the queue
and the state machine are tested without running Terraform. Real execution is proven by the
end-to-end suites."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from terrapod.db.transactions import write_transaction
from terrapod.runs import jobs as runs
from terrapod.runs import logs
from terrapod.runs.models import Run

MAIN_TF = b'resource "terraform_data" "x" {\n  input = "hello"\n}\n'


def tarball(files: dict[str, bytes] | None = None) -> bytes:
    """A gzip tar like go-slug makes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (files or {"main.tf": MAIN_TF}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def make_workspace(client: httpx.AsyncClient, name: str, **attrs: Any) -> str:
    r = await client.post(
        "/api/v2/organizations/default/workspaces",
        json={"data": {"type": "workspaces", "attributes": {"name": name, **attrs}}},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def upload_configuration(
    client: httpx.AsyncClient,
    workspace_id: str,
    *,
    speculative: bool = False,
    provisional: bool = False,
) -> str:
    """A configuration version with an uploaded tarball (auto-queue-runs off)."""
    r = await client.post(
        f"/api/v2/workspaces/{workspace_id}/configuration-versions",
        json={
            "data": {
                "type": "configuration-versions",
                "attributes": {
                    "auto-queue-runs": False,
                    "speculative": speculative,
                    "provisional": provisional,
                },
            }
        },
    )
    assert r.status_code == 201, r.text
    cv = r.json()["data"]
    put = await client.put(cv["attributes"]["upload-url"], content=tarball())
    assert put.status_code == 200, put.text
    return str(cv["id"])


async def create_run(
    client: httpx.AsyncClient, workspace_id: str, cv_id: str | None = None, **attrs: Any
) -> dict[str, Any]:
    relationships: dict[str, Any] = {
        "workspace": {"data": {"type": "workspaces", "id": workspace_id}}
    }
    if cv_id is not None:
        relationships["configuration-version"] = {
            "data": {"type": "configuration-versions", "id": cv_id}
        }
    r = await client.post(
        "/api/v2/runs",
        json={"data": {"type": "runs", "attributes": attrs, "relationships": relationships}},
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["data"])


async def status_of(client: httpx.AsyncClient, run_id: str) -> str:
    r = await client.get(f"/api/v2/runs/{run_id}")
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["attributes"]["status"])


@dataclass
class Claimed:
    job_id: str
    run_id: str
    phase: str


class ProtocolAgent:
    """An agent that does what the built-in agent does, minus Terraform."""

    def __init__(self, app: FastAPI, agent_id: str = "test-agent") -> None:
        self.app = app
        self.agent_id = agent_id

    async def _tx(self, work: Any) -> Any:
        async with write_transaction(self.app.state.sessionmaker) as session:
            return await work(session)

    async def claim(self) -> Claimed | None:
        async def work(session: Any) -> Claimed | None:
            claimed = await runs.claim_job(session, self.agent_id)
            if claimed is None:
                return None
            return Claimed(claimed.job.id, claimed.run.id, claimed.job.phase)

        result: Claimed | None = await self._tx(work)
        return result

    async def log(self, job: Claimed, data: bytes) -> bool:
        async def work(session: Any) -> bool:
            run = await session.get(Run, job.run_id)
            return await logs.append(session, run, job.phase, data)

        result: bool = await self._tx(work)
        return result

    async def heartbeat(self, job: Claimed) -> str | None:
        async def work(session: Any) -> str | None:
            return await runs.heartbeat(session, job.job_id, self.agent_id)

        result: str | None = await self._tx(work)
        return result

    async def finish(self, job: Claimed, outcome: str = "finished", **fields: Any) -> None:
        if job.phase == "plan" and outcome == "finished":
            fields.setdefault("has_changes", True)
            fields.setdefault("additions", 1)
            fields.setdefault("has_plan_file", True)

        async def work(session: Any) -> None:
            await runs.finish_job(
                session, job.job_id, self.agent_id, runs.JobOutcome(outcome=outcome, **fields)
            )

        await self._tx(work)

    async def run_phase(self, outcome: str = "finished", **fields: Any) -> Claimed:
        """Claim the next job, log a line, and finish it."""
        job = await self.claim()
        assert job is not None, "no job was queued"
        assert await self.log(job, f"{job.phase} output\n".encode())
        await self.finish(job, outcome, **fields)
        return job
