"""``terrapod`` command line: serve, migrate, admin, agent."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
import yaml
from pydantic import ValidationError
from pydantic_settings import SettingsError

from terrapod.config import ConfigFileMissing, Settings, load_settings

app = typer.Typer(
    help="Terrapod: a self-hosted platform for running Terraform as a team (TFE V2 API).",
    no_args_is_help=True,
    add_completion=False,
)
admin_app = typer.Typer(
    help="Administer users, organizations and tokens directly in the database.",
    no_args_is_help=True,
)
app.add_typer(admin_app, name="admin")

T = TypeVar("T")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory (SQLite file, objects, keys). Env: TERRAPOD_DATA_DIR"
    ),
]


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        typer.echo("Invalid Terrapod settings:\n" + "\n".join(lines), err=True)
        raise typer.Exit(2) from None
    except (ConfigFileMissing, SettingsError, yaml.YAMLError) as exc:
        typer.echo(f"Invalid Terrapod settings: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on. Env: TERRAPOD_HOST")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on. Env: TERRAPOD_PORT")] = None,
    data_dir: DataDir = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM server certificate (chain).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for --tls-cert.")] = None,
    dev_tls: Annotated[
        bool,
        typer.Option(
            "--dev-tls",
            help="Create a local CA and server certificate in <data-dir>/tls (once) and serve "
            "HTTPS with them; prints how to point terraform at this server.",
        ),
    ] = False,
    migrate: Annotated[
        bool, typer.Option(help="Apply database migrations before starting.")
    ] = True,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (PostgreSQL only).")] = 1,
) -> None:
    """Start the Terrapod server (the TFE V2 API, state storage and the web endpoints)."""
    import uvicorn

    from terrapod.db.migrate import upgrade
    from terrapod.observability.logging import configure_logging

    settings = _settings(host=host, port=port, data_dir=data_dir)
    configure_logging(settings.log_level, settings.log_format)
    if (tls_cert is None) != (tls_key is None):
        typer.echo("--tls-cert and --tls-key go together", err=True)
        raise typer.Exit(2)
    if dev_tls and tls_cert is not None:
        typer.echo("--dev-tls cannot be combined with --tls-cert/--tls-key", err=True)
        raise typer.Exit(2)
    if workers > 1 and settings.is_sqlite:
        typer.echo("--workers > 1 needs PostgreSQL (TERRAPOD_DATABASE__URL)", err=True)
        raise typer.Exit(2)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate:
        upgrade(settings)
    if dev_tls:
        from terrapod.devtls import create_dev_tls

        names = sorted({"localhost", "127.0.0.1", "::1", settings.host} - {"0.0.0.0", "::"})
        paths = create_dev_tls(settings.data_dir / "tls", names)
        tls_cert, tls_key = paths.server_cert, paths.server_key
        _print_terraform_hints(settings, paths.ca_cert)
    if settings.runtasks.callback_base_url is None and settings.external_url is None:
        # Task services call back on the address this server really serves, TLS included.
        settings.runtasks.callback_base_url = own_address(settings, tls=tls_cert is not None)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ssl_certfile": str(tls_cert) if tls_cert else None,
        "ssl_keyfile": str(tls_key) if tls_key else None,
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 30,
        # Named, not "auto": a missing httptools must fail here, not fall back to h11
        # (+70 us per request).
        "http": "httptools",
        # uvloop, with a short TLS close so that idle keep-alive clients (agents) do not hold
        # a stopping server for the whole graceful-shutdown timeout (terrapod.serveloop).
        "loop": "terrapod.serveloop:ServeLoop",
    }
    if workers > 1:
        # Worker processes import terrapod.asgi, which reads settings from the environment:
        # hand them the data dir this command resolved (flags included).
        os.environ["TERRAPOD_DATA_DIR"] = str(settings.data_dir)
        if settings.runtasks.callback_base_url:
            os.environ["TERRAPOD_RUNTASKS__CALLBACK_BASE_URL"] = settings.runtasks.callback_base_url
        uvicorn.run("terrapod.asgi:app", workers=workers, **options)
    else:
        uvicorn.Server(uvicorn.Config(_app_factory(settings), **options)).run()


def own_address(settings: Settings, *, tls: bool) -> str:
    """The URL this server answers on, for those it tells to call back (run-task services)
    when no external URL is configured: its scheme, and ``localhost`` for a wildcard listen
    address (the --dev-tls certificate names it)."""
    host = "localhost" if settings.host in ("0.0.0.0", "::", "") else settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{settings.port}"


def _app_factory(settings: Settings) -> Any:
    from terrapod.app import create_app

    return create_app(settings, tune_gc=True)


def _print_terraform_hints(settings: Settings, ca_cert: Path) -> None:
    host = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0", "::", "::1") else settings.host
    address = f"{host}:{settings.port}"
    typer.echo(
        f"""
  Terrapod is serving HTTPS at https://{address} with a development CA.
  To point terraform at it:

    export SSL_CERT_FILE={ca_cert.resolve()}
    # the token variable's name contains a colon, so set it with env(1):
    env 'TF_TOKEN_{address}=<your token>' terraform init
    # or put this in your CLI config file (~/.terraformrc):
    credentials "{address}" {{
      token = "<your token>"
    }}

  and in your configuration:

    terraform {{
      cloud {{
        hostname     = "{address}"
        organization = "{settings.default_organization}"
        workspaces {{ name = "my-workspace" }}
      }}
    }}
"""
    )


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply database migrations up to the newest schema, then exit."""
    from terrapod.db.migrate import upgrade

    settings = _settings(data_dir=data_dir)
    upgrade(settings)
    typer.echo("database is at the newest schema")


def _run_admin(settings: Settings, action: Callable[..., Awaitable[T]]) -> T:
    from terrapod.app import announce_admin_token
    from terrapod.auth.service import TokenService
    from terrapod.auth.tokens import PrincipalCache
    from terrapod.bootstrap import bootstrap
    from terrapod.db.engine import WRITE_OPTION, create_engine, create_sessionmaker
    from terrapod.db.migrate import upgrade
    from terrapod.errors import DomainError

    upgrade(settings)

    async def run() -> T:
        engine = create_engine(settings)
        try:
            # A fresh install gets its default organization and admin even when an admin
            # command, not `serve`, touches the database first.
            tokens = TokenService(PrincipalCache(0))
            sessionmaker = create_sessionmaker(engine)
            fresh = await bootstrap(settings, sessionmaker, tokens)
            if fresh.generated_token:
                # stderr: the command's JSON on stdout stays machine-readable.
                announce_admin_token(fresh, sys.stderr)
            async with sessionmaker() as session:
                await session.connection(execution_options={WRITE_OPTION: True})
                result = await action(session, tokens)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None


def _emit(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, indent=2))


@admin_app.command("create-user")
def create_user(
    username: Annotated[str, typer.Option(help="Login name.")],
    email: Annotated[str, typer.Option(help="Email address.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make a platform administrator.")] = False,
    organization: Annotated[
        str | None, typer.Option(help="Add the user to this organization.")
    ] = None,
    role: Annotated[str, typer.Option(help="Role in --organization: owner or member.")] = "member",
    token: Annotated[
        bool, typer.Option("--token", help="Also issue an API token and print it.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Create a user, optionally with an organization role and an API token."""
    from terrapod.access.principal import SYSTEM
    from terrapod.organizations import service as organizations
    from terrapod.users import service as users

    async def action(session: Any, tokens: Any) -> dict[str, Any]:
        user = await users.create_user(
            session, SYSTEM, username=username, email=email, is_admin=admin
        )
        out: dict[str, Any] = {"id": user.id, "username": user.username}
        if organization:
            org = await organizations.get_by_name(session, SYSTEM, organization)
            await organizations.add_member(session, SYSTEM, org, user.id, role)
            out["organization"] = org.name
            out["role"] = role
        if token:
            issued = await tokens.create_user_token(
                session, SYSTEM, user.id, description="created by terrapod admin"
            )
            out["token"] = issued.plaintext
        return out

    _emit(_run_admin(_settings(data_dir=data_dir), action))


@admin_app.command("create-org")
def create_org(
    name: Annotated[str, typer.Option(help="Organization name.")],
    email: Annotated[str, typer.Option(help="Contact email.")],
    owner: Annotated[str | None, typer.Option(help="Username or email of its owner.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an organization."""
    from terrapod.access.principal import SYSTEM
    from terrapod.errors import NotFound
    from terrapod.organizations import service as organizations
    from terrapod.users import service as users

    async def action(session: Any, _tokens: Any) -> dict[str, Any]:
        owner_id = None
        if owner:
            user = await users.find_user(session, owner)
            if user is None:
                raise NotFound(f"no user {owner!r}")
            owner_id = user.id
        org = await organizations.create(
            session, SYSTEM, {"name": name, "email": email}, owner_id=owner_id
        )
        return {"id": org.id, "name": org.name}

    _emit(_run_admin(_settings(data_dir=data_dir), action))


@admin_app.command("set-role")
def set_role(
    user: Annotated[str, typer.Option(help="Username or email.")],
    organization: Annotated[str, typer.Option(help="Organization name.")],
    role: Annotated[str, typer.Option(help="owner or member.")] = "member",
    data_dir: DataDir = None,
) -> None:
    """Give an existing user a role in an organization (adds or changes the membership)."""
    from terrapod.access.principal import SYSTEM
    from terrapod.errors import NotFound
    from terrapod.organizations import service as organizations
    from terrapod.users import service as users

    async def action(session: Any, _tokens: Any) -> dict[str, Any]:
        found = await users.find_user(session, user)
        if found is None:
            raise NotFound(f"no user {user!r}")
        org = await organizations.get_by_name(session, SYSTEM, organization)
        await organizations.add_member(session, SYSTEM, org, found.id, role)
        return {"user": found.username, "organization": org.name, "role": role}

    _emit(_run_admin(_settings(data_dir=data_dir), action))


@admin_app.command("set-password")
def set_password(
    user: Annotated[str, typer.Option(help="Username or email.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Set a user's password (used to sign in for `terraform login`)."""
    from terrapod.access.principal import SYSTEM
    from terrapod.errors import NotFound
    from terrapod.users import service as users

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def action(session: Any, _tokens: Any) -> dict[str, Any]:
        found = await users.find_user(session, user)
        if found is None:
            raise NotFound(f"no user {user!r}")
        await users.set_password(session, SYSTEM, found, password)
        return {"user": found.username, "password": "set"}

    _emit(_run_admin(_settings(data_dir=data_dir), action))


@admin_app.command("create-token")
def create_token(
    user: Annotated[
        str | None, typer.Option(help="Issue a user token for this username or email.")
    ] = None,
    organization: Annotated[
        str | None, typer.Option(help="Issue (replace) this organization's token instead.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the token is for.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Issue an API token for automation and print it (the only time it is shown)."""
    from terrapod.access.principal import SYSTEM
    from terrapod.errors import NotFound
    from terrapod.organizations import service as organizations
    from terrapod.users import service as users

    if (user is None) == (organization is None):
        typer.echo("give exactly one of --user or --organization", err=True)
        raise typer.Exit(2)

    async def action(session: Any, tokens: Any) -> dict[str, Any]:
        if user is not None:
            found = await users.find_user(session, user)
            if found is None:
                raise NotFound(f"no user {user!r}")
            issued = await tokens.create_user_token(
                session, SYSTEM, found.id, description=description
            )
        else:
            org = await organizations.get_by_name(session, SYSTEM, organization or "")
            issued = await tokens.create_org_token(session, SYSTEM, org, description=description)
        return {"id": issued.token.id, "token": issued.plaintext}

    _emit(_run_admin(_settings(data_dir=data_dir), action))


# -- terrapod agent ------------------------------------------------------------------------------

agent_app = typer.Typer(
    help="Run jobs for an agent pool: join the server with an agent token, claim its pool's "
    "jobs and run them (outbound connections only).",
    no_args_is_help=False,
)
app.add_typer(agent_app, name="agent")

CaFile = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        envvar="TERRAPOD_CA_FILE",
        help="PEM CA bundle to verify the server with (default: the system CAs, or SSL_CERT_FILE).",
    ),
]
WorkDir = Annotated[
    Path | None,
    typer.Option(
        "--work-dir",
        envvar="TERRAPOD_AGENT_WORK_DIR",
        help="Where jobs run (default: a private directory under the system temp dir). ",
    ),
]
LogLevel = Annotated[
    str, typer.Option("--log-level", envvar="TERRAPOD_LOG_LEVEL", help="debug, info, warning")
]
LogFormat = Annotated[
    str, typer.Option("--log-format", envvar="TERRAPOD_LOG_FORMAT", help="json or console")
]


# ``terrapod agent --executor kubernetes`` (terrapod.agent.kubernetes; docs/usage/agents.md).
_K8S = "Kubernetes executor"
K8sNamespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        envvar="TERRAPOD_K8S_NAMESPACE",
        rich_help_panel=_K8S,
        help="Where the Jobs run. Default in a pod: its own namespace.",
    ),
]
K8sImage = Annotated[
    str | None,
    typer.Option(
        "--image",
        envvar="TERRAPOD_K8S_IMAGE",
        rich_help_panel=_K8S,
        help="The jobs' image (Terrapod installed, `terrapod` on its PATH).",
    ),
]
K8sServiceAccount = Annotated[
    str | None,
    typer.Option(
        "--service-account",
        envvar="TERRAPOD_K8S_SERVICE_ACCOUNT",
        rich_help_panel=_K8S,
        help="The jobs' service account (its token is not mounted).",
    ),
]
K8sKubeconfig = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        envvar="TERRAPOD_K8S_KUBECONFIG",
        rich_help_panel=_K8S,
        help="Default: in-cluster credentials in a pod, else $KUBECONFIG or ~/.kube/config.",
    ),
]
K8sContext = Annotated[
    str | None,
    typer.Option("--kube-context", rich_help_panel=_K8S, help="A kubeconfig context."),
]
K8sCaConfigMap = Annotated[
    str | None,
    typer.Option(
        "--ca-configmap",
        envvar="TERRAPOD_K8S_CA_CONFIGMAP",
        rich_help_panel=_K8S,
        help="A ConfigMap whose ca.crt the jobs trust for the server.",
    ),
]
K8sPullSecrets = Annotated[
    list[str] | None,
    typer.Option("--image-pull-secret", rich_help_panel=_K8S, help="Repeatable: imagePullSecrets."),
]
K8sTtl = Annotated[
    int,
    typer.Option(
        "--ttl-after-finished",
        envvar="TERRAPOD_K8S_TTL_AFTER_FINISHED",
        min=0,
        rich_help_panel=_K8S,
        help="Seconds the cluster keeps a finished Job the agent did not delete.",
    ),
]
K8sKeep = Annotated[
    bool,
    typer.Option(
        "--keep-finished",
        rich_help_panel=_K8S,
        help="Leave finished Jobs and Secrets to the TTL (debugging).",
    ),
]


@agent_app.callback(invoke_without_command=True)
def agent(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", envvar="TERRAPOD_URL", help="The server (https://terrapod.example.com)."
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="A file holding the agent token (instead of the TERRAPOD_AGENT_TOKEN "
            "environment variable; the token is never a command-line value).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", envvar="TERRAPOD_AGENT_NAME", help="Default: the host name."),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            envvar="TERRAPOD_AGENT_CONCURRENCY",
            min=1,
            max=64,
            help="Jobs run at once.",
        ),
    ] = 1,
    work_dir: WorkDir = None,
    ca_file: CaFile = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            envvar="TERRAPOD_AGENT_EXECUTOR",
            help="in-process (run Terraform here) or kubernetes (a Job per run phase).",
        ),
    ] = "in-process",
    namespace: K8sNamespace = None,
    image: K8sImage = None,
    service_account: K8sServiceAccount = None,
    kubeconfig: K8sKubeconfig = None,
    kube_context: K8sContext = None,
    ca_configmap: K8sCaConfigMap = None,
    image_pull_secret: K8sPullSecrets = None,
    ttl_after_finished: K8sTtl = 3600,
    keep_finished: K8sKeep = False,
    engine: Annotated[
        list[str] | None,
        typer.Option(
            "--engine",
            help="Another Terraform version jobs may use, VERSION=PATH (repeatable); the "
            "embedded Terraform is always there.",
        ),
    ] = None,
    provider_mirror: Annotated[
        Path | None,
        typer.Option(
            "--provider-mirror",
            envvar="TERRAPOD_AGENT_PROVIDER_MIRROR",
            help="A filesystem mirror of providers for the jobs (as runs.provider_mirror).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            envvar="TERRAPOD_AGENT_METRICS_PORT",
            min=0,
            max=65535,
            help="Serve Prometheus metrics on http://HOST:PORT/metrics (default: off; 0: a "
            "free port, logged).",
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            "--metrics-host",
            envvar="TERRAPOD_AGENT_METRICS_HOST",
            help="The address the metrics listen on.",
        ),
    ] = "127.0.0.1",
    log_level: LogLevel = "info",
    log_format: LogFormat = "json",
) -> None:
    """Join an agent pool and run its jobs until SIGTERM (plans are handed back, applies
    finish; a second SIGTERM or Ctrl-C cancels them too)."""
    if ctx.invoked_subcommand is not None:
        return
    from terrapod.observability.logging import configure_logging

    configure_logging(_choice(log_level, ("debug", "info", "warning", "error")), log_format)
    if not url:
        _fail("give the server's address: --url or TERRAPOD_URL")
    if executor not in ("in-process", "kubernetes"):
        _fail("--executor is in-process or kubernetes")
    kubernetes = None
    if executor == "kubernetes":
        from terrapod.agent.kubernetes import KubernetesOptions, in_cluster_namespace

        namespace = namespace or in_cluster_namespace()
        if not namespace or not image:
            _fail("--executor kubernetes needs --namespace (outside a cluster) and --image")
        kubernetes = KubernetesOptions(
            namespace=namespace,
            image=image,
            service_account=service_account,
            kubeconfig=kubeconfig,
            context=kube_context,
            ca_configmap=ca_configmap,
            image_pull_secrets=tuple(image_pull_secret or ()),
            ttl_after_finished_seconds=ttl_after_finished,
            keep_finished=keep_finished,
        )
    token = _agent_token(token_file)
    raise typer.Exit(
        asyncio.run(
            _run_agent(
                url=str(url),
                token=token,
                name=name or socket.gethostname(),
                concurrency=concurrency,
                work_dir=_work_dir(work_dir),
                ca_file=ca_file,
                kubernetes=kubernetes,
                engines=_engines(engine or []),
                provider_mirror=provider_mirror.resolve() if provider_mirror else None,
                metrics_address=(metrics_host, metrics_port) if metrics_port is not None else None,
            )
        )
    )


@agent_app.command("run-job")
def run_job(
    ticket_file: Annotated[
        Path, typer.Option("--ticket-file", help="The job's ticket (JSON, JobTicket.to_dict).")
    ],
    work_dir: WorkDir = None,
    ca_file: CaFile = None,
    log_level: LogLevel = "info",
    log_format: LogFormat = "json",
) -> None:
    """Run one claimed job in this process and report its end (what a Kubernetes executor's
    pod runs). Exits 0 once the end is reported, whatever the job's outcome."""
    from terrapod.agent.ticket import JobTicket
    from terrapod.observability.logging import configure_logging
    from terrapod.runner.wire import WireError

    configure_logging(_choice(log_level, ("debug", "info", "warning", "error")), log_format)
    try:
        ticket = JobTicket.from_dict(json.loads(ticket_file.read_bytes()))
    except (OSError, ValueError, WireError) as exc:
        _fail(f"cannot read the ticket: {exc}")
    raise typer.Exit(asyncio.run(_run_one_job(ticket, _work_dir(work_dir), ca_file)))


def _engines(values: list[str]) -> dict[str, Path]:
    engines: dict[str, Path] = {}
    for value in values:
        version, _, path = value.partition("=")
        if not version or not path:
            _fail(f"--engine takes VERSION=PATH, not {value!r}")
        engines[version.strip()] = Path(path).resolve()
    return engines


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(2)


def _choice(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        _fail(f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _agent_token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            _fail(f"cannot read --token-file: {exc.strerror}")
    else:
        token = os.environ.get("TERRAPOD_AGENT_TOKEN", "").strip()
    if not token:
        _fail("give the agent token in TERRAPOD_AGENT_TOKEN or a --token-file")
    return token


def _work_dir(work_dir: Path | None) -> Path:
    import tempfile

    if work_dir is None:
        return Path(tempfile.mkdtemp(prefix="terrapod-agent-")).resolve()
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return work_dir.resolve()


def _install_stop_handlers(request_stop: Callable[[], None]) -> None:
    import signal

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop)


async def _run_agent(
    *,
    url: str,
    token: str,
    name: str,
    concurrency: int,
    work_dir: Path,
    ca_file: Path | None,
    kubernetes: Any = None,
    engines: dict[str, Path] | None = None,
    provider_mirror: Path | None = None,
    metrics_address: tuple[str, int] | None = None,
) -> int:
    from prometheus_client import CollectorRegistry, ProcessCollector

    from terrapod.agent.executor import Executor
    from terrapod.agent.http import (
        Backoff,
        ListenerClient,
        Unauthorized,
        build_client,
        token_joiner,
    )
    from terrapod.agent.inprocess import InProcessExecutor
    from terrapod.agent.loop import Agent
    from terrapod.observability.logging import get_logger
    from terrapod.observability.metrics import AgentMetrics
    from terrapod.runner.engines import EngineResolver

    log = get_logger("terrapod.agent")
    # A registry of the agent's own: its metrics and the process's, nothing of the server's.
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    metrics = AgentMetrics(registry)
    listener_retry = Backoff(on_retry=metrics.server_retries.labels("listener").inc)
    job_retry = Backoff(on_retry=metrics.server_retries.labels("job").inc)
    metrics_server = None
    if metrics_address is not None:
        try:
            metrics_server = _serve_metrics(registry, *metrics_address)
        except OSError as exc:
            log.error("cannot serve metrics", address=list(metrics_address), error=str(exc))
            return 2
    try:
        async with build_client(url, ca_file=ca_file) as http:
            joiner = token_joiner(
                http, token, name=name, capacity=concurrency, backoff=listener_retry
            )
            listener = ListenerClient(http, joiner, backoff=listener_retry, job_backoff=job_retry)
            executor: Executor
            if kubernetes is not None:
                from terrapod.agent.kubernetes import KubernetesError, build_kubernetes_executor

                try:
                    executor = build_kubernetes_executor(kubernetes, listener.job)
                except KubernetesError as exc:
                    log.error("cannot reach Kubernetes", error=str(exc))
                    return 2
            else:
                executor = InProcessExecutor(
                    listener.job,
                    workdir_root=work_dir,
                    engines=EngineResolver(engines),
                    provider_mirror=provider_mirror,
                )
            agent = Agent(listener, executor, concurrency=concurrency, metrics=metrics)
            _install_stop_handlers(agent.request_stop)
            log.info("agent starting", url=url, name=name, concurrency=concurrency)
            try:
                await agent.run()
            except Unauthorized as exc:
                log.error("the server refused the agent token", error=str(exc))
                return 1
            log.info("agent stopped")
            return 0
    finally:
        if metrics_server is not None:
            await asyncio.to_thread(metrics_server.shutdown)
            metrics_server.server_close()


def _serve_metrics(registry: Any, host: str, port: int) -> Any:
    """``--metrics-port``: Prometheus text on http://HOST:PORT/metrics, from a thread of its
    own (prometheus-client's WSGI server), so a scrape never waits for the agent's loop."""
    from prometheus_client import start_http_server

    from terrapod.observability.logging import get_logger

    server, _ = start_http_server(port, addr=host, registry=registry)
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    get_logger("terrapod.agent").info(
        "serving metrics", url=f"http://{shown}:{bound_port}/metrics", port=bound_port
    )
    return server


async def _run_one_job(ticket: Any, work_dir: Path, ca_file: Path | None) -> int:
    from terrapod.agent.http import Backoff, JobClient, build_client
    from terrapod.agent.inprocess import InProcessExecutor
    from terrapod.agent.loop import run_one_job
    from terrapod.observability.logging import get_logger
    from terrapod.runner.engines import EngineResolver
    from terrapod.runner.spec import JobControl

    log = get_logger("terrapod.agent")
    control = JobControl()
    handing_back = asyncio.Event()
    stops = 0

    def request_stop() -> None:
        # As the agent loop: a plan is handed back, an apply finishes; then cancel, force.
        nonlocal stops
        stops += 1
        if stops == 1 and ticket.phase == "plan":
            handing_back.set()
            control.force.set()
        elif stops == 2:
            control.cancel.set()
        elif stops > 2:
            control.force.set()

    _install_stop_handlers(request_stop)
    async with build_client(ticket.base_url, ca_file=ca_file) as http:
        job = JobClient(http, ticket, backoff=Backoff())
        executor = InProcessExecutor(
            lambda _: job, workdir_root=work_dir, engines=EngineResolver(), provider_mirror=None
        )
        log.info("job started", job=ticket.job_id, run=ticket.run_id, phase=ticket.phase)
        outcome = await run_one_job(job, executor, control, handing_back=handing_back)
        log.info("job ended", job=ticket.job_id, run=ticket.run_id, outcome=outcome)
    return 0


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
