"""Several real ``terrapod serve`` processes on one PostgreSQL database, and real
``terrapod agent`` processes in an agent pool: start them, ``kill -9`` them, restart them,
and wait for what the API shows.

Every server of a :class:`Cluster` shares the database, the object store directory, the
secret key (so a URL signed by one server is good at another) and the TLS certificate (valid
for ``localhost``; each server has its own port). The built-in agent is off: jobs run only on
the agent processes. Waiting is always "poll the API until a condition holds or a deadline
passes" (:func:`wait_until`), never a fixed sleep.

Agent processes are the agent machines of these tests: :meth:`AgentProcess.kill` SIGKILLs
the agent *and* the engine processes it started (each engine runs in a session of its own,
``runner/process.py``), as when the machine or container dies.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from terrapod.devtls import DevTLS, create_dev_tls
from tests.e2e.harness import (
    SHUTDOWN_TIMEOUT_SECONDS,
    TERRAPOD_BIN,
    _server_env,
    _wait_until_healthy,
    free_port,
    log_tail,
)

JSONAPI = "application/vnd.api+json"
POLL_SECONDS = 0.2
FINAL_RUN_STATUSES = frozenset(
    {"applied", "planned_and_finished", "discarded", "errored", "canceled", "force_canceled"}
)

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    describe: Callable[[], str] = lambda: "",
    interval: float = POLL_SECONDS,
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; after
    ``timeout`` seconds fail with ``what`` and ``describe()`` (logs, the last state seen)."""
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() > deadline:
            raise WaitTimeout(f"not within {timeout:.0f} s: {what}\n{describe()}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


def _exit_code_is_clean(code: int | None) -> bool:
    # Uvicorn (and the agent) re-raise the SIGTERM they handled: -SIGTERM is a clean stop.
    return code in (0, -signal.SIGTERM)


@dataclass
class ServerProcess:
    """One ``terrapod serve`` of a cluster; keeps its port and data dir across restarts."""

    index: int
    workdir: Path
    port: int
    env: dict[str, str] = field(repr=False)
    tls: DevTLS = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def start(self) -> None:
        """Start (or restart) the server and wait until ``/health`` answers."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        command = [
            str(TERRAPOD_BIN), "serve",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--data-dir", str(self.workdir / "data"),
            "--tls-cert", str(self.tls.server_cert),
            "--tls-key", str(self.tls.server_key),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
                start_new_session=True,
            )
        import ssl

        try:
            _wait_until_healthy(
                self.process,
                self.url,
                ssl.create_default_context(cafile=str(self.tls.ca_cert)),
                self.log_path,
            )
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """``kill -9``: no shutdown of any kind."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL; returns the exit code (None: it was not running)."""
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def events_tail(self, lines: int = 20, requests: int = 5) -> str:
        """The last ``lines`` log lines that are not the access log, then the last
        ``requests`` access-log lines."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log file)"
        access = [line for line in text if '"event": "request"' in line]
        other = [line for line in text if '"event": "request"' not in line]
        return "\n".join([*other[-lines:], "(last requests:)", *access[-requests:]])


@dataclass
class AgentProcess:
    """One ``terrapod agent`` process (an agent machine) joined to a pool through one server."""

    name: str
    workdir: Path
    url: str
    ca_cert: Path
    token: str = field(repr=False)
    concurrency: int
    extra_args: tuple[str, ...] = ()
    env_extra: Mapping[str, str] = field(default_factory=dict, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    engine_groups: set[int] = field(default_factory=set)

    @property
    def log_path(self) -> Path:
        return self.workdir / "agent.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TERRAPOD_", "TF_"))}
        env["TERRAPOD_AGENT_TOKEN"] = self.token
        env["TERRAPOD_LOG_FORMAT"] = "json"
        env.update(self.env_extra)
        command = [
            str(TERRAPOD_BIN), "agent",
            "--url", self.url,
            "--name", self.name,
            "--concurrency", str(self.concurrency),
            "--ca-file", str(self.ca_cert),
            "--work-dir", str(self.workdir / "work"),
            *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """``kill -9`` of the agent machine: the agent process and every engine it runs."""
        if self.process is None:
            return
        groups = _engine_groups(self.process.pid)
        self.process.kill()
        self.process.wait()
        for group in groups:
            _killpg(group)
        self.engine_groups |= groups

    def terminate(self, timeout: float = SHUTDOWN_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM and wait; SIGKILL (with the engines) if it does not end in time."""
        if not self.running():
            return self.exit_code()
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def cleanup(self) -> None:
        """Whatever is left: the process and any engine session it started."""
        if self.running():
            self.kill()
        for group in self.engine_groups:
            _killpg(group)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def _engine_groups(pid: int) -> set[int]:
    """The process groups of ``pid``'s children that lead their own (the engines)."""
    groups = set()
    for child in _children(pid):
        try:
            if os.getpgid(child) == child:
                groups.add(child)
        except ProcessLookupError:
            continue
    return groups


def _killpg(group: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------------------------


@dataclass
class Cluster:
    """Servers sharing one PostgreSQL database, and the agents started against them."""

    root: Path
    database_url: str
    admin_token: str
    tls: DevTLS
    servers: list[ServerProcess]
    agents: list[AgentProcess] = field(default_factory=list)

    @property
    def ca_cert(self) -> Path:
        return self.tls.ca_cert

    def api(self, server: int = 0) -> Api:
        return Api(self.servers[server].url, self.ca_cert, self.admin_token)

    def start_agent(
        self,
        token: str,
        *,
        name: str | None = None,
        server: int = 0,
        concurrency: int = 1,
        extra_args: tuple[str, ...] = (),
        env_extra: Mapping[str, str] | None = None,
    ) -> AgentProcess:
        name = name or f"agent-{secrets.token_hex(3)}"
        agent = AgentProcess(
            name=name,
            workdir=self.root / "agents" / f"{name}-{len(self.agents)}",
            url=self.servers[server].url,
            ca_cert=self.ca_cert,
            token=token,
            concurrency=concurrency,
            extra_args=extra_args,
            env_extra=dict(env_extra or {}),
        )
        agent.start()
        self.agents.append(agent)
        return agent

    def stop_agents(self) -> None:
        """SIGKILL every agent and its engines. (A graceful stop waits for the agent's open
        long poll, seconds per agent, and what it does is tested where it matters.)"""
        for agent in self.agents:
            agent.cleanup()
        self.agents.clear()

    def describe(self, lines: int = 25) -> str:
        parts = [
            f"--- server {server.index} ({server.url}) ---\n{server.events_tail(lines)}"
            for server in self.servers
        ]
        for agent in self.agents:
            state = "running" if agent.running() else f"exited {agent.exit_code()}"
            parts.append(f"--- agent {agent.name} ({state}) ---\n{agent.log_tail(lines)}")
        return "\n".join(parts)

    def jobs(self) -> list[dict[str, Any]]:
        """Every row of the ``jobs`` table (read straight from the database)."""
        return asyncio.run(_fetch(self.database_url, "SELECT * FROM jobs ORDER BY created_at"))


async def _fetch(url: str, sql: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return [dict(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


def server_environment(
    *,
    admin_token: str,
    database_url: str,
    storage: Path,
    secret_key: str,
    settings: Mapping[str, str],
) -> dict[str, str]:
    env = _server_env(admin_token, database_url, None)
    env.update(
        TERRAPOD_STORAGE__PATH=str(storage),
        TERRAPOD_SECRET_KEY=secret_key,
        TERRAPOD_RUNS__BUILTIN_AGENT="false",
        TERRAPOD_LOG_LEVEL="info",
    )
    env.update(settings)
    return env


@contextmanager
def run_cluster(
    root: Path,
    *,
    database_url: str,
    admin_token: str,
    servers: int = 2,
    settings: Mapping[str, str] | None = None,
) -> Iterator[Cluster]:
    """``servers`` servers on ``database_url`` (PostgreSQL), started one after the other (the
    first runs the migrations and the bootstrap); agents started through the cluster are
    stopped when the block ends, then the servers."""
    root.mkdir(parents=True, exist_ok=True)
    tls = create_dev_tls(root / "tls", ["localhost", "127.0.0.1"])
    env = server_environment(
        admin_token=admin_token,
        database_url=database_url,
        storage=root / "objects",
        secret_key=secrets.token_urlsafe(48),
        settings=settings or {},
    )
    cluster = Cluster(root, database_url, admin_token, tls, [])
    try:
        for index in range(servers):
            workdir = root / f"server-{index}"
            workdir.mkdir()
            server = ServerProcess(index, workdir, free_port(), env, tls)
            cluster.servers.append(server)
            server.start()
        yield cluster
    finally:
        cluster.stop_agents()
        codes = {s.index: s.stop() for s in cluster.servers}
    unclean = {i: c for i, c in codes.items() if c is not None and not _exit_code_is_clean(c)}
    assert not unclean, f"servers did not stop cleanly: {unclean}\n{cluster.describe()}"


# --------------------------------------------------------------------------------------------
# the API, as the admin
# --------------------------------------------------------------------------------------------


def config_tarball(files: Mapping[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class ApiError(AssertionError):
    pass


def _check(response: httpx.Response, *ok: int) -> httpx.Response:
    if response.status_code not in ok:
        raise ApiError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:800]}"
        )
    return response


class Api:
    """The TFE API of one server, as the admin (httpx; JSON:API bodies)."""

    def __init__(self, url: str, ca_cert: Path, token: str) -> None:
        import ssl

        self.url = url
        self._ctx = ssl.create_default_context(cafile=str(ca_cert))
        self.http = httpx.Client(
            base_url=url,
            verify=self._ctx,
            headers={"Authorization": f"Bearer {token}", "Content-Type": JSONAPI},
            timeout=httpx.Timeout(30, connect=5),
            trust_env=False,
        )
        # Signed URLs (uploads, logs, state) are their own credential.
        self.anonymous = httpx.Client(verify=self._ctx, timeout=30, trust_env=False)

    def close(self) -> None:
        self.http.close()
        self.anonymous.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # organizations and agent pools ---------------------------------------------------------

    def create_organization(self, name: str) -> None:
        body = {
            "data": {
                "type": "organizations",
                "attributes": {"name": name, "email": f"{name}@example.test"},
            }
        }
        _check(self.http.post("/api/v2/organizations", json=body), 201)

    def create_pool(self, org: str, name: str) -> str:
        body = {
            "data": {
                "type": "agent-pools",
                "attributes": {"name": name, "organization-scoped": True},
            }
        }
        got = _check(self.http.post(f"/api/v2/organizations/{org}/agent-pools", json=body), 201)
        return str(got.json()["data"]["id"])

    def create_agent_token(self, pool_id: str, description: str = "e2e") -> tuple[str, str]:
        """(token id, token)."""
        body = {
            "data": {"type": "authentication-tokens", "attributes": {"description": description}}
        }
        got = _check(
            self.http.post(f"/api/v2/agent-pools/{pool_id}/authentication-tokens", json=body), 201
        ).json()["data"]
        return str(got["id"]), str(got["attributes"]["token"])

    def revoke_agent_token(self, token_id: str) -> None:
        _check(self.http.delete(f"/api/v2/authentication-tokens/{token_id}"), 204)

    def agents(self, pool_id: str) -> list[dict[str, Any]]:
        got = _check(self.http.get(f"/api/v2/agent-pools/{pool_id}/agents"), 200)
        return [
            {"id": item["id"], **item["attributes"]} for item in got.json()["data"]
        ]  # name, status, ip-address, last-ping-at

    # workspaces, configurations, runs ------------------------------------------------------

    def create_workspace(
        self, org: str, name: str, *, pool_id: str, terraform_version: str | None = None
    ) -> str:
        attributes: dict[str, Any] = {
            "name": name,
            "execution-mode": "agent",
            "agent-pool-id": pool_id,
        }
        if terraform_version is not None:
            attributes["terraform-version"] = terraform_version
        body = {"data": {"type": "workspaces", "attributes": attributes}}
        got = _check(self.http.post(f"/api/v2/organizations/{org}/workspaces", json=body), 201)
        return str(got.json()["data"]["id"])

    def upload_configuration(self, workspace_id: str, files: Mapping[str, str]) -> str:
        body = {
            "data": {
                "type": "configuration-versions",
                "attributes": {"auto-queue-runs": False},
            }
        }
        cv = _check(
            self.http.post(f"/api/v2/workspaces/{workspace_id}/configuration-versions", json=body),
            201,
        ).json()["data"]
        _check(
            self.anonymous.put(
                cv["attributes"]["upload-url"],
                content=config_tarball(files),
                headers={"Content-Type": "application/octet-stream"},
            ),
            200,
        )
        cv_id = str(cv["id"])
        wait_until(
            lambda: self._cv_status(cv_id) == "uploaded",
            timeout=30,
            what=f"configuration version {cv_id} uploaded",
        )
        return cv_id

    def _cv_status(self, cv_id: str) -> str:
        got = _check(self.http.get(f"/api/v2/configuration-versions/{cv_id}"), 200)
        return str(got.json()["data"]["attributes"]["status"])

    def create_run(
        self,
        workspace_id: str,
        cv_id: str,
        *,
        variables: Mapping[str, object] | None = None,
        auto_apply: bool = True,
    ) -> str:
        attributes: dict[str, Any] = {"auto-apply": auto_apply}
        if variables:
            attributes["variables"] = [
                {"key": k, "value": json.dumps(v)} for k, v in variables.items()
            ]
        body = {
            "data": {
                "type": "runs",
                "attributes": attributes,
                "relationships": {
                    "workspace": {"data": {"type": "workspaces", "id": workspace_id}},
                    "configuration-version": {
                        "data": {"type": "configuration-versions", "id": cv_id}
                    },
                },
            }
        }
        return str(_check(self.http.post("/api/v2/runs", json=body), 201).json()["data"]["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        """The run's attributes, with ``id`` and ``workspace-id``."""
        data = _check(self.http.get(f"/api/v2/runs/{run_id}"), 200).json()["data"]
        return {
            "id": data["id"],
            "workspace-id": data["relationships"]["workspace"]["data"]["id"],
            "plan-id": data["relationships"]["plan"]["data"]["id"],
            "apply-id": data["relationships"]["apply"]["data"]["id"],
            **data["attributes"],
        }

    def run_status(self, run_id: str) -> str:
        return str(self.run(run_id)["status"])

    def run_events(self, run_id: str) -> list[str]:
        """The descriptions of the run's events, oldest first."""
        got = _check(self.http.get(f"/api/v2/runs/{run_id}/run-events"), 200).json()
        return [str(item["attributes"].get("description") or "") for item in got["data"]]

    def workspace(self, workspace_id: str) -> dict[str, Any]:
        data = _check(self.http.get(f"/api/v2/workspaces/{workspace_id}"), 200).json()["data"]
        return {"id": data["id"], "relationships": data["relationships"], **data["attributes"]}

    def phase_log(self, kind: str, phase_id: str) -> str:
        """The whole log of a plan (``kind="plans"``) or an apply (``"applies"``)."""
        got = _check(self.http.get(f"/api/v2/{kind}/{phase_id}"), 200).json()["data"]
        url = got["attributes"]["log-read-url"]
        out = bytearray()
        while True:
            chunk = _check(
                self.anonymous.get(url, params={"offset": len(out), "limit": 65536}), 200
            ).content
            if not chunk:
                break
            out += chunk
        return out.decode(errors="replace")

    def state_versions(self, org: str, workspace: str) -> list[dict[str, Any]]:
        """The workspace's state versions, newest first, with ``id`` and ``run-id``."""
        params = {
            "filter[organization][name]": org,
            "filter[workspace][name]": workspace,
            "page[size]": 100,
        }
        got = _check(self.http.get("/api/v2/state-versions", params=params), 200).json()
        out = []
        for item in got["data"]:
            run = (item.get("relationships", {}).get("run") or {}).get("data")
            out.append(
                {"id": item["id"], "run-id": run["id"] if run else None, **item["attributes"]}
            )
        return out

    def current_state_version(self, workspace_id: str) -> dict[str, Any] | None:
        got = self.http.get(f"/api/v2/workspaces/{workspace_id}/current-state-version")
        if got.status_code == 404:
            return None
        data = _check(got, 200).json()["data"]
        run = (data.get("relationships", {}).get("run") or {}).get("data")
        return {"id": data["id"], "run-id": run["id"] if run else None, **data["attributes"]}

    def state_document(self, state_version: Mapping[str, Any]) -> dict[str, Any]:
        url = state_version["hosted-state-download-url"]
        got = _check(self.anonymous.get(url), 200)
        document: dict[str, Any] = got.json()
        return document


def state_resources(document: Mapping[str, Any]) -> dict[str, Any]:
    """``{"terraform_data.name": its input}`` for every resource in a state document."""
    out: dict[str, Any] = {}
    for resource in document.get("resources", []):
        for instance in resource.get("instances", []):
            attrs = instance.get("attributes", {})
            value = attrs.get("input")
            out[f"{resource['type']}.{resource['name']}"] = (
                value.get("value") if isinstance(value, dict) and "value" in value else value
            )
    return out
