"""An in-memory JobIO that speaks the runner's protocol, and helpers to run jobs with the
real embedded Terraform (``terrapod-terraform``)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from terrapod.runner.engines import EngineResolver
from terrapod.runner.execute import execute
from terrapod.runner.spec import JobControl, JobResult, JobSpec, Variable


def configuration(files: dict[str, str]) -> bytes:
    """A go-slug-like tarball (gzip tar) of ``files``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FakeJobIO:
    """Holds what the server would: the configuration, the current state, the stored plan,
    the log and every state version persisted."""

    def __init__(self, files: dict[str, str], state: bytes | None = None) -> None:
        self.tarball = configuration(files)
        self.state = state
        self.log = bytearray()
        self.persisted: list[bytes] = []
        self.plan_file: bytes | None = None
        self.plan_json: Any = None
        self.redacted_json: Any = None
        self.raw_plan_json = b""
        self.raw_redacted_json = b""
        self._changed = asyncio.Condition()

    async def fetch_configuration(self, dest: Path) -> None:
        await asyncio.to_thread(dest.write_bytes, self.tarball)

    async def fetch_state(self) -> bytes | None:
        return self.state

    async def fetch_plan_file(self, dest: Path) -> None:
        assert self.plan_file is not None, "the plan phase stored no plan"
        await asyncio.to_thread(dest.write_bytes, self.plan_file)

    async def write_log(self, data: bytes) -> None:
        async with self._changed:
            self.log += data
            self._changed.notify_all()

    async def persist_state(self, raw: bytes) -> None:
        async with self._changed:
            self.persisted.append(raw)
            self.state = raw
            self._changed.notify_all()

    async def store_plan(self, plan_file: Path, plan_json: bytes, redacted_json: bytes) -> None:
        self.plan_file = await asyncio.to_thread(plan_file.read_bytes)
        self.raw_plan_json, self.raw_redacted_json = plan_json, redacted_json
        self.plan_json = json.loads(plan_json)
        self.redacted_json = json.loads(redacted_json)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate`` holds (checked whenever the log or the state changes)."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    @property
    def text(self) -> str:
        return self.log.decode()

    def state_resources(self) -> list[str]:
        assert self.state is not None
        return sorted(f"{r['type']}.{r['name']}" for r in json.loads(self.state)["resources"])


class Jobs:
    """Runs plan and apply jobs for one workspace against a :class:`FakeJobIO`."""

    def __init__(self, workdir_root: Path, engines: EngineResolver) -> None:
        self.workdir_root = workdir_root
        self.engines = engines
        self._count = 0

    def spec(self, phase: Literal["plan", "apply"] = "plan", **changes: Any) -> JobSpec:
        self._count += 1
        base = JobSpec(
            job_id=f"job-{self._count}",
            run_id=f"run-{self._count}",
            phase="plan",
            organization_name="acme",
            workspace_name="web",
            terraform_version="latest",
            working_directory=None,
            timeout_seconds=120,
        )
        return dataclasses.replace(base, phase=phase, **changes)

    async def run(
        self, spec: JobSpec, job_io: FakeJobIO, control: JobControl | None = None
    ) -> JobResult:
        return await execute(
            spec,
            job_io,
            control or JobControl(),
            workdir_root=self.workdir_root,
            engines=self.engines,
        )

    async def plan_and_apply(self, job_io: FakeJobIO, **changes: Any) -> JobResult:
        plan = self.spec(**changes)
        planned = await self.run(plan, job_io)
        assert planned.outcome == "finished", job_io.text
        return await self.run(dataclasses.replace(plan, phase="apply", job_id="job-apply"), job_io)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Jobs:
    return Jobs(tmp_path_factory.mktemp("work"), EngineResolver())


def variable(
    key: str,
    value: str,
    *,
    category: Literal["terraform", "env"] = "terraform",
    hcl: bool = False,
    sensitive: bool = False,
) -> Variable:
    return Variable(key=key, value=value, category=category, hcl=hcl, sensitive=sensitive)
