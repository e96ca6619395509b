"""Executing one job: a plan or an apply phase of a run, with a real Terraform engine.

Plan: a fresh private directory; the configuration extracted into it; the runner's backend
override, variables and the workspace's state added; ``init`` (its output shown only when it
fails), ``plan -out``; then ``show -json`` and ``providers schema -json`` for the JSON plan
and the redacted plan. A plan that can be applied leaves its directory behind so the apply
on the same agent skips the extraction and ``init``.

Apply: the kept directory, or a new one prepared the same way; the current state and the
stored plan file fetched again (so a kept directory can never apply a plan other than the
stored one, or against a state it did not plan with); ``apply <planfile>``, persisting each
state file Terraform writes while it runs. The directory is removed at the end.

Every log starts with the three lines Terraform Enterprise writes (the terraform CLI skips
them in an apply log) and carries no sensitive variable value.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import platform
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from terrapod.archives import ArchiveLimits, UnsafeArchive, extract_tarball
from terrapod.observability.logging import get_logger
from terrapod.runner.actions import ApplyActions, declared_actions, planned_invocations
from terrapod.runner.engines import Engine, EngineResolver, EngineUnavailable
from terrapod.runner.masking import LogMasker, mask_strings
from terrapod.runner.planjson import (
    PlanSummary,
    redacted_plan,
    summarize,
    without_sensitive_variables,
)
from terrapod.runner.process import EngineCommands
from terrapod.runner.schema_cache import SchemaCache
from terrapod.runner.spec import (
    ActionInvocationReport,
    DeclaredAction,
    JobControl,
    JobIO,
    JobResult,
    JobSpec,
)
from terrapod.runner.workdir import (
    InvalidJob,
    JobDirectory,
    engine_environment,
    write_backend_override,
    write_cli_config,
    write_variable_files,
)

__all__ = ["discard_workdir", "execute"]

log = get_logger("terrapod.runner")

# Under the work root, beside the runs' directories (run ids start with "run-").
SCHEMA_CACHE_DIR = "provider-schemas"
# How often a running apply's state file is checked for a new version.
STATE_POLL_SECONDS = 0.25
_GO_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "i386": "386", "i686": "386"}
_APPLY_SUMMARY = re.compile(rb"(?:Apply|Destroy) complete! Resources: ([^.\"]*)\.")
_SUMMARY_COUNT = re.compile(rb"(\d+) (imported|added|changed|destroyed)")


async def execute(
    spec: JobSpec,
    io: JobIO,
    control: JobControl,
    *,
    workdir_root: Path,
    engines: EngineResolver,
) -> JobResult:
    """Run ``spec``'s phase to its end and say how it ended.

    Problems with the job itself (an unavailable engine, an unsafe archive, a bad working
    directory or variable, a failing command, cancel, timeout) end it ``errored`` or
    ``canceled``, with the reason in the log and in :attr:`JobResult.error`. Exceptions from
    ``io`` propagate (the job's directory is removed unless a finished plan kept it).
    """
    if not workdir_root.is_absolute():
        # Paths handed to the engine must not depend on its working directory.
        raise ValueError(f"workdir_root must be absolute, not {workdir_root}")
    log = LogMasker((v.value for v in spec.variables if v.sensitive), io.write_log)
    try:
        try:
            engine = engines.resolve(spec.terraform_version)
        except EngineUnavailable as exc:
            await log.write(f"{exc}\n".encode())
            return JobResult(outcome="errored", error=str(exc))
        await log.write(_header(engine))
        try:
            job = _Job(spec, io, control, JobDirectory(workdir_root, spec.run_id), engine, log)
            return await (job.plan() if spec.phase == "plan" else job.apply())
        except (InvalidJob, UnsafeArchive) as exc:
            stop = _error(
                f"the configuration cannot be used: {exc}"
                if isinstance(exc, UnsafeArchive)
                else str(exc)
            )
        except _Stop as exc:
            stop = exc
        await log.write(stop.log_line)
        return stop.result
    finally:
        await log.flush()


def discard_workdir(workdir_root: Path, run_id: str) -> None:
    """Drop the directory a plan kept for ``run_id``'s apply (the run was discarded, errored
    or canceled, or its apply will run elsewhere). Nothing happens if there is none."""
    JobDirectory(workdir_root, run_id).discard()


class _Stop(Exception):
    """Ends the job early with ``result``, after writing ``log_line``."""

    def __init__(self, result: JobResult, log_line: str = "") -> None:
        super().__init__(result.error)
        self.result = result
        self.log_line = log_line.encode()


class _Job:
    def __init__(
        self,
        spec: JobSpec,
        io: JobIO,
        control: JobControl,
        directory: JobDirectory,
        engine: Engine,
        log: LogMasker,
    ) -> None:
        self.spec = spec
        self.io = io
        self.control = control
        self.dir = directory
        self.engine = engine
        self.log = log
        self.module = directory.config
        # The job's time limit runs from now and spans every engine command.
        self.deadline = asyncio.get_running_loop().time() + spec.timeout_seconds

    @functools.cached_property
    def commands(self) -> EngineCommands:
        """Made on first use, inside the phase, so a variable that cannot be passed to a
        process ends the job like any other problem with it (and its directory goes)."""
        env = engine_environment(self.spec, self.dir)
        return EngineCommands(self.engine, env, self.control, deadline=self.deadline)

    async def plan(self) -> JobResult:
        spec, keep = self.spec, False
        try:
            await self._prepare(await self.io.fetch_state())
            write_variable_files(self.module, spec)
            await self._engine("plan", self._plan_args())
            shown, schemas = await self._plan_and_schemas()
            # Plans can be large: decoding and rewriting them stays off the event loop.
            summary, plan_json, redacted_json, actions, invocations = await asyncio.to_thread(
                _plan_documents, spec, shown, schemas
            )
            await self.io.store_plan(self.dir.plan, plan_json, redacted_json)
            # A plan that only invokes actions (-invoke) changes no resource, and still has
            # something to apply.
            has_changes = summary.has_changes or bool(invocations)
            keep = not spec.plan_only and (has_changes or spec.allow_empty_apply)
            if keep:
                self.dir.ready.touch()
            return JobResult(
                outcome="finished",
                has_changes=has_changes,
                additions=summary.additions,
                changes=summary.changes,
                destructions=summary.destructions,
                imports=summary.imports,
                actions=actions,
                action_invocations=invocations,
            )
        finally:
            if not keep:
                self.dir.discard()

    async def _plan_and_schemas(self) -> tuple[bytes, bytes]:
        """``show -json`` of the plan, and the provider schemas: from the cache when this
        engine has served the same providers before, else asked for side by side (both only
        read, so running them together saves one engine start of wall time)."""
        cache = SchemaCache(self.dir.root.parent / SCHEMA_CACHE_DIR)
        key = cache.key(self.engine, self.module)
        cached = cache.get(key)
        if cached is not None:
            return await self._capture("show", "-json", str(self.dir.plan)), cached
        shown, schemas = await asyncio.gather(
            self._capture("show", "-json", str(self.dir.plan)),
            self._capture("providers", "schema", "-json"),
            return_exceptions=True,
        )
        if isinstance(shown, BaseException):
            raise shown
        if isinstance(schemas, BaseException):
            raise schemas
        cache.put(key, schemas)
        return shown, schemas

    async def apply(self) -> JobResult:
        try:
            state = await self.io.fetch_state()
            if self.dir.ready.exists():
                # A crash from here on must not leave the directory looking reusable.
                self.dir.ready.unlink()
                self.module = self.dir.module_dir(self.spec.working_directory)
                self.dir.write_state(state)
            else:
                await self._prepare(state)
            await self.io.fetch_plan_file(self.dir.plan)
            summary = _ApplySummary()
            # Only Terraform's JSON lines say which action invocation did what.
            actions = ApplyActions() if self.spec.structured_output else None

            def observe(data: bytes) -> None:
                summary.feed(data)
                if actions is not None:
                    actions.feed(data)

            watcher = _StateWatcher(self.dir.state, state, self.io.persist_state)
            try:
                await self._engine("apply", self._apply_args(), observe=observe)
            except _Stop as stop:
                # A failed or canceled apply still reports the invocations it started.
                stop.result.action_invocations = actions.reports() if actions else None
                raise
            finally:
                await watcher.stop()
            return JobResult(
                outcome="finished",
                additions=summary.counts.get(b"added", 0),
                changes=summary.counts.get(b"changed", 0),
                destructions=summary.counts.get(b"destroyed", 0),
                imports=summary.counts.get(b"imported", 0),
                action_invocations=actions.reports() if actions else None,
            )
        finally:
            self.dir.discard()

    async def _prepare(self, state: bytes | None) -> None:
        """A fresh directory: the configuration, the backend override, ``state``, ``init``."""
        self.dir.create()
        write_cli_config(self.dir, self.spec.provider_mirror)
        tarball = self.dir.root / "configuration.tar.gz"
        await self.io.fetch_configuration(tarball)
        try:
            limits = ArchiveLimits(max_total_bytes=self.spec.max_configuration_bytes)
            await asyncio.to_thread(extract_tarball, tarball, self.dir.config, limits)
        finally:
            tarball.unlink()
        self.module = self.dir.module_dir(self.spec.working_directory)
        write_backend_override(self.module, self.dir.state)
        self.dir.write_state(state)
        init_output = bytearray()

        async def collect(data: bytes) -> None:
            init_output.extend(data)

        code = await self._run(["init", "-input=false"], output=collect)
        if code != 0:
            await self.log.write(bytes(init_output))
            raise self._failure("init", code)

    async def _engine(
        self,
        command: str,
        args: list[str],
        *,
        observe: Callable[[bytes], None] | None = None,
    ) -> None:
        """Run a command whose output is the log; raise :class:`_Stop` unless it succeeds.
        A plan that was stopped counts as stopped even if it got to its end."""

        async def output(data: bytes) -> None:
            if observe is not None:
                observe(data)
            await self.log.write(data)

        code = await self._run(args, output=output)
        if code != 0 or (command == "plan" and self.commands.stopped):
            raise self._failure(command, code)

    async def _capture(self, *args: str) -> bytes:
        """Run a command and return what it prints on stdout (its stderr goes to the log
        only if it fails)."""
        target = self.dir.root / f"{args[0]}.out"
        errors = bytearray()

        async def collect(data: bytes) -> None:
            errors.extend(data)

        code = await self._run(list(args), output=collect, stdout_file=target)
        if code != 0:
            await self.log.write(bytes(errors))
            raise self._failure(args[0], code)
        try:
            return target.read_bytes()
        finally:
            target.unlink()

    async def _run(
        self,
        args: list[str],
        *,
        output: Callable[[bytes], Awaitable[None]],
        stdout_file: Path | None = None,
    ) -> int:
        if self.commands.stopped:
            raise self._failure(args[0], None)
        return await self.commands.run(
            args, cwd=self.module, output=output, stdout_file=stdout_file
        )

    def _failure(self, command: str, code: int | None) -> _Stop:
        """The end of a job whose command failed or was not started: canceled or timed out
        if the job was stopped, errored otherwise."""
        if self.commands.timed_out:
            return _error(f"timed out after {self.spec.timeout_seconds} s")
        if self.control.force.is_set():
            return _Stop(
                JobResult(outcome="canceled", error="force-canceled"),
                "\nThe job was force-canceled.\n",
            )
        if self.control.cancel.is_set():
            return _Stop(
                JobResult(outcome="canceled", error="canceled"), "\nThe job was canceled.\n"
            )
        return _error(f"terraform {command} exited {code}")

    def _plan_args(self) -> list[str]:
        spec = self.spec
        args = ["plan", "-input=false", f"-out={self.dir.plan}"]
        if spec.structured_output:
            args.append("-json")
        if spec.is_destroy:
            args.append("-destroy")
        if spec.refresh_only:
            args.append("-refresh-only")
        if not spec.refresh:
            args.append("-refresh=false")
        args += [f"-target={addr}" for addr in spec.target_addrs]
        args += [f"-replace={addr}" for addr in spec.replace_addrs]
        args += [f"-invoke={addr}" for addr in spec.invoke_action_addrs]
        if spec.allow_config_generation:
            args.append("-generate-config-out=generated.tf")
        return args

    def _apply_args(self) -> list[str]:
        args = ["apply", "-input=false"]
        if self.spec.structured_output:
            args.append("-json")
        return [*args, str(self.dir.plan)]


def _plan_documents(
    spec: JobSpec, shown: bytes, schemas: bytes
) -> tuple[
    PlanSummary,
    bytes,
    bytes,
    tuple[DeclaredAction, ...],
    tuple[ActionInvocationReport, ...],
]:
    """The plan's summary, its JSON for the API and its redacted form for the CLI, from the
    output of ``show -json <planfile>`` and ``providers schema -json``; no sensitive variable
    value is left in either. Then the configuration's actions and the invocations planned."""
    plan = json.loads(shown)
    secrets = [v.value for v in spec.variables if v.sensitive]
    sensitive_names = {v.key for v in spec.variables if v.sensitive}
    return (
        summarize(plan, refresh_only=spec.refresh_only),
        _encode(mask_strings(without_sensitive_variables(plan, sensitive_names), secrets)),
        _encode(mask_strings(redacted_plan(plan, json.loads(schemas)), secrets)),
        tuple(declared_actions(plan)),
        tuple(planned_invocations(plan)),
    )


def _error(reason: str) -> _Stop:
    return _Stop(JobResult(outcome="errored", error=reason), f"\n{reason}\n")


def _header(engine: Engine) -> bytes:
    """The first three lines of a Terraform Enterprise plan or apply log."""
    machine = platform.machine().lower()
    arch = _GO_ARCHITECTURES.get(machine, machine)
    return (
        f"Terraform v{engine.version}\non {sys.platform}_{arch}\n"
        "Initializing plugins and modules...\n"
    ).encode()


def _encode(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


class _ApplySummary:
    """Picks the counts out of an apply's last "Apply complete! Resources: …" line (text or
    the ``@message`` of a JSON ``change_summary``)."""

    def __init__(self) -> None:
        self.counts: dict[bytes, int] = {}
        self._partial = b""

    def feed(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            if match := _APPLY_SUMMARY.search(line):
                self.counts = {kind: int(n) for n, kind in _SUMMARY_COUNT.findall(match.group(1))}


class _StateWatcher:
    """Persists every complete state file Terraform writes while an apply runs, and the
    last one once more when it ends (if it changed)."""

    def __init__(
        self, path: Path, initial: bytes | None, persist: Callable[[bytes], Awaitable[None]]
    ) -> None:
        self._path = path
        self._persisted = initial
        self._persist = persist
        self._seen: tuple[int, int] | None = self._stat()
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        self._stopping.set()
        await self._task

    async def _watch(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), STATE_POLL_SECONDS)
            if self._stopping.is_set():
                break
            try:
                await self._check(force=False)
            except Exception:
                # The final check below persists the newest state again; until then the
                # apply goes on, as Terraform would with a backend that is briefly down.
                log.warning("persisting state during an apply failed", exc_info=True)
        await self._check(force=True)

    async def _check(self, *, force: bool) -> None:
        seen = self._stat()
        if seen is None or (seen == self._seen and not force):
            return
        self._seen = seen
        raw = self._path.read_bytes()
        if raw == self._persisted:
            return
        try:
            await asyncio.to_thread(json.loads, raw)
        except ValueError:
            # Terraform truncates and rewrites the file: a half-written one is not valid
            # JSON yet, and the next look will see the whole of it.
            return
        await self._persist(raw)
        self._persisted = raw

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size
