"""The built-in agent's transport: the server's own services, called in process.

Each call is one short transaction of its own (a job runs for minutes; no transaction or
connection is held across it). Published events run after each commit, like in a request.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import anyio
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from terrapod.access.principal import Principal
from terrapod.config import Settings
from terrapod.crypto import SecretBox
from terrapod.db.transactions import write_transaction
from terrapod.errors import DomainError
from terrapod.observability.logging import get_logger
from terrapod.organizations.models import Organization
from terrapod.runner.spec import JobResult, JobSpec, Variable
from terrapod.runs import jobs, logs
from terrapod.runs.models import Run
from terrapod.state import service as state
from terrapod.state.models import StateVersion
from terrapod.storage import keys
from terrapod.storage.base import ObjectStore
from terrapod.variables.service import VariableValue
from terrapod.varsets.service import values_for_run
from terrapod.workspaces.models import Workspace

log = get_logger("terrapod.agent")

_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class _JobRefs:
    run_id: str
    workspace_id: str
    configuration_version_id: str | None


class LocalTransport:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        box: SecretBox,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._store = store
        self._box = box
        self._settings = settings
        self._jobs: dict[str, _JobRefs] = {}

    def _tx(self) -> AbstractAsyncContextManager[AsyncSession]:
        return write_transaction(self._sessionmaker)

    async def claim(self, agent_id: str) -> JobSpec | None:
        while True:
            async with self._tx() as session:
                claimed = await jobs.claim_job(session, agent_id, pool_id=None)
                if claimed is None:
                    return None
            refs = _JobRefs(
                claimed.run.id, claimed.workspace.id, claimed.run.configuration_version_id
            )
            spec = _spec(claimed, [], self._settings)
            self._jobs[spec.job_id] = refs
            try:
                async with self._sessionmaker() as session:
                    variables = await values_for_run(session, self._box, refs.workspace_id)
            except DomainError as exc:
                # The job is claimed: end it with the reason instead of claiming it forever.
                await self.write_log(spec, f"{exc.detail}\n".encode())
                await self.finish(spec, agent_id, JobResult(outcome="errored", error=exc.detail))
                continue
            return _spec(claimed, variables, self._settings)

    async def heartbeat(self, spec: JobSpec, agent_id: str) -> str | None:
        async with self._tx() as session:
            return await jobs.heartbeat(session, spec.job_id, agent_id)

    async def write_log(self, spec: JobSpec, data: bytes) -> bool:
        async with self._tx() as session:
            run = await session.get(Run, spec.run_id)
            return run is not None and await logs.append(session, run, spec.phase, data)

    async def fetch_configuration(self, spec: JobSpec, dest: Path) -> None:
        cv_id = self._jobs[spec.job_id].configuration_version_id
        if cv_id is None:
            raise FileNotFoundError("the run's configuration version was deleted")
        await self._download(keys.configuration_version(cv_id), dest)

    async def _download(self, key: str, dest: Path) -> None:
        stream = await self._store.open(key)
        async with stream, await anyio.open_file(dest, "wb") as out:
            async for chunk in stream:
                await out.write(chunk)

    async def fetch_state(self, spec: JobSpec) -> bytes | None:
        refs = self._jobs[spec.job_id]
        async with self._sessionmaker() as session:
            ws = await session.get(Workspace, refs.workspace_id)
            if ws is None or ws.current_state_version_id is None:
                return None
            sv = await session.get(StateVersion, ws.current_state_version_id)
            if sv is None:
                return None
        return await self._store.get_bytes(keys.state_version(sv.workspace_id, sv.id))

    async def fetch_plan_file(self, spec: JobSpec, dest: Path) -> None:
        await self._download(keys.plan_file(spec.run_id), dest)

    async def persist_state(self, spec: JobSpec, raw: bytes) -> None:
        """Save a state file the engine wrote as a new state version of the run's workspace,
        acting as the run (which holds the workspace lock)."""
        refs = self._jobs[spec.job_id]
        parsed = orjson.loads(raw)
        request = state.CreateRequest(
            serial=int(parsed.get("serial", 0)),
            md5=hashlib.md5(raw).hexdigest(),
            lineage=parsed.get("lineage"),
            state=base64.b64encode(raw).decode(),
            run_id=spec.run_id,
        )
        principal = Principal(
            kind="system",
            token_id=None,
            username=f"run {spec.run_id}",
            run_id=spec.run_id,
            workspace_id=refs.workspace_id,
        )
        async with self._tx() as session:
            ws = await session.get(Workspace, refs.workspace_id)
            org = await session.get(Organization, ws.organization_id) if ws else None
            if ws is None or org is None:
                raise DomainError("the run's workspace was deleted")
            ctx = state.StateContext(self._store, self._box)
            await state.create(session, principal, ctx, ws, org, request)

    async def store_plan(
        self, spec: JobSpec, plan_file: Path, plan_json: bytes, redacted_json: bytes
    ) -> None:
        async with await anyio.open_file(plan_file, "rb") as source:

            async def chunks() -> AsyncIterator[bytes]:
                while chunk := await source.read(_COPY_CHUNK):
                    yield chunk

            await self._store.put(keys.plan_file(spec.run_id), chunks())
        await self._store.put_bytes(keys.plan_json(spec.run_id), plan_json)
        await self._store.put_bytes(keys.plan_json_redacted(spec.run_id), redacted_json)

    async def finish(self, spec: JobSpec, agent_id: str, result: JobResult) -> None:
        outcome = jobs.JobOutcome(
            outcome=result.outcome,
            error=result.error,
            has_changes=result.has_changes,
            additions=result.additions,
            changes=result.changes,
            destructions=result.destructions,
            imports=result.imports,
            has_plan_file=spec.phase == "plan" and result.outcome == "finished",
            report=result,
        )
        async with self._tx() as session:
            await jobs.finish_job(session, spec.job_id, agent_id, outcome)
        self._jobs.pop(spec.job_id, None)


def _spec(claimed: jobs.ClaimedJob, variables: list[VariableValue], settings: Settings) -> JobSpec:
    run, ws = claimed.run, claimed.workspace
    return JobSpec(
        job_id=claimed.job.id,
        run_id=run.id,
        phase="plan" if claimed.job.phase == "plan" else "apply",
        organization_name=claimed.organization.name,
        workspace_name=ws.name,
        terraform_version=run.terraform_version or ws.terraform_version,
        working_directory=ws.working_directory,
        is_destroy=run.is_destroy,
        refresh=run.refresh,
        refresh_only=run.refresh_only,
        target_addrs=tuple(run.target_addrs or ()),
        replace_addrs=tuple(run.replace_addrs or ()),
        allow_config_generation=run.allow_config_generation,
        debugging_mode=run.debugging_mode,
        plan_only=run.plan_only,
        allow_empty_apply=run.allow_empty_apply,
        # The cloud {} block renders Terraform's JSON log lines; backend "remote" (source
        # "terraform") prints log lines as they are, so it gets Terraform's text output.
        structured_output=ws.structured_run_output_enabled and run.source != "terraform",
        variables=tuple(
            Variable(
                key=v.key,
                value=v.value,
                category="env" if v.category == "env" else "terraform",
                hcl=v.hcl,
                sensitive=v.sensitive,
                enforced=v.enforced,
            )
            for v in variables
        ),
        run_variables=tuple((v["key"], v["value"]) for v in run.variables),
        timeout_seconds=settings.runs.job_timeout_seconds,
        max_configuration_bytes=settings.runs.max_configuration_bytes,
        invoke_action_addrs=tuple(run.invoke_action_addrs or ()),
        provider_mirror=(
            str(settings.runs.provider_mirror.resolve()) if settings.runs.provider_mirror else None
        ),
    )
