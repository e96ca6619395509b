"""The FastAPI application factory and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, TextIO

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from terrapod import __version__
from terrapod.actions import api as actions_api
from terrapod.actions import service as actions
from terrapod.agent.asgi import InProcessTransport
from terrapod.agent.http import Backoff, Joined, ListenerClient
from terrapod.agent.http import build_client as build_agent_client
from terrapod.agent.inprocess import InProcessExecutor
from terrapod.agent.loop import Agent
from terrapod.agentpools import api as agentpools_api
from terrapod.agentpools import listener_api, listeners
from terrapod.agentpools import service as agentpools
from terrapod.auth import api as auth_api
from terrapod.auth import login_api
from terrapod.auth.service import TokenService
from terrapod.auth.tokens import PrincipalCache, UsageRecorder
from terrapod.bootstrap import BootstrapResult, bootstrap
from terrapod.config import Settings
from terrapod.configversions import api as configversions_api
from terrapod.configversions import service as configversions
from terrapod.crypto import SecretBox
from terrapod.db.engine import WRITE_OPTION, create_engine, create_sessionmaker
from terrapod.db.hooks import Hooks
from terrapod.db.transactions import write_transaction
from terrapod.errors import DomainError
from terrapod.events.bus import EventBus
from terrapod.jsonapi.errors import domain_error_response, error_response
from terrapod.keys import derive_key, load_master_secret
from terrapod.notifications import api as notifications_api
from terrapod.notifications import service as notifications
from terrapod.notifications.deliverer import Deliverer as NotificationDeliverer
from terrapod.observability.logging import get_logger
from terrapod.observability.metrics import Metrics
from terrapod.observability.middleware import ObservabilityMiddleware
from terrapod.organizations import api as organizations_api
from terrapod.runner.engines import EngineResolver
from terrapod.runs import api as runs_api
from terrapod.runs import service as runs_service
from terrapod.runs.machine import FINAL as FINAL_STATUSES
from terrapod.runtasks import api as runtasks_api
from terrapod.runtasks import schemas as runtasks_schemas
from terrapod.runtasks import service as runtasks
from terrapod.runtasks.delivery import TaskDeliveries
from terrapod.runtriggers import api as runtriggers_api
from terrapod.runtriggers import service as runtriggers
from terrapod.scheduler.runs import RunHousekeeping
from terrapod.state import api as state_api
from terrapod.state.service import StateContext, delete_objects_of_deleted_workspaces
from terrapod.storage import ObjectStore, build_object_store
from terrapod.storage import api as storage_api
from terrapod.storage.api import UploadHandler
from terrapod.storage.signing import UrlSigner
from terrapod.system import api as system_api
from terrapod.system.api import DOCS_STATIC_DIR
from terrapod.users import api as users_api
from terrapod.variables import api as variables_api
from terrapod.varsets import api as varsets_api
from terrapod.workspaces import api as workspaces_api

log = get_logger("terrapod.app")

TOKEN_USAGE_FLUSH_SECONDS = 30.0
POOL_GAUGES_SECONDS = 15.0

# Every router the application serves; the route-table snapshot test reads this too.
ROUTERS = (
    # Route matching is linear: the routers terraform hits on every command come first.
    system_api.router,
    workspaces_api.router,
    state_api.router,
    runs_api.router,
    configversions_api.router,
    storage_api.router,
    organizations_api.router,
    variables_api.router,
    varsets_api.router,
    runtriggers_api.router,
    notifications_api.router,
    runtasks_api.router,
    actions_api.router,
    agentpools_api.router,
    users_api.router,
    auth_api.router,
    login_api.router,
    runs_api.logs_router,
    listener_api.router,
)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = create_engine(settings)
    app.state.engine = engine
    app.state.object_store = build_object_store(settings)
    app.state.events = EventBus()
    app.state.sessionmaker = create_sessionmaker(
        engine, wire_hooks(app.state.object_store), events=app.state.events
    )
    app.state.state_ctx = StateContext(app.state.object_store, app.state.secret_box)
    result = await bootstrap(settings, app.state.sessionmaker, app.state.tokens)
    if result.generated_token:
        announce_admin_token(result)
    if app.state.tune_gc:
        tune_garbage_collector()
    background = [asyncio.create_task(_flush_token_usage_forever(app))]
    background += start_run_machinery(app)
    background.append(start_run_task_deliveries(app))
    background.append(start_notification_deliverer(app))
    background.append(asyncio.create_task(_refresh_pool_gauges_forever(app), name="pool gauges"))
    log.info("started", version=__version__, database=engine.dialect.name)
    try:
        yield
    finally:
        agent: Agent | None = app.state.agent
        if agent is not None:
            await agent.stop()
            await app.state.agent_http.aclose()
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await app.state.housekeeping.idle()
        await _flush_token_usage(app)
        await app.state.object_store.close()
        await engine.dispose()


def start_run_machinery(app: FastAPI) -> list[asyncio.Task[None]]:
    """Run housekeeping and, unless turned off, the built-in agent; both hear the bus."""
    settings: Settings = app.state.settings
    bus: EventBus = app.state.events
    housekeeping = RunHousekeeping(
        app.state.sessionmaker,
        app.state.object_store,
        heartbeat_timeout=timedelta(seconds=settings.runs.heartbeat_timeout_seconds),
        interval_seconds=settings.runs.housekeeping_seconds,
    )
    app.state.housekeeping = housekeeping
    bus.subscribe("logs", housekeeping.on_log_closed)
    metrics: Metrics = app.state.metrics
    bus.subscribe("run", lambda p: metrics.run_status_changes.labels(str(p["status"])).inc())
    tasks = [asyncio.create_task(housekeeping.run_forever(), name="run housekeeping")]
    app.state.agent = None
    if settings.runs.builtin_agent:
        agent = builtin_agent(app)
        app.state.agent = agent

        def on_run(payload: dict[str, Any]) -> None:
            if payload.get("status") in FINAL_STATUSES:
                agent.forget_run(str(payload["run_id"]))

        # A plan's directory is kept for its apply on this agent; a run that ends otherwise
        # (discarded, canceled, errored) no longer needs it.
        bus.subscribe("run", on_run)
        tasks.append(asyncio.create_task(_run_builtin_agent(agent), name="built-in agent"))
    return tasks


async def _refresh_pool_gauges_forever(app: FastAPI) -> None:
    """The agent pool gauges of /metrics, from the database every few seconds (a scrape
    never touches the database)."""
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    while True:
        try:
            async with app.state.sessionmaker() as session:
                cutoff = agentpools.heartbeat_cutoff(settings.runs.heartbeat_timeout_seconds)
                metrics.set_pool_gauges(await agentpools.gauges(session, cutoff))
        except Exception:
            log.exception("refreshing the agent pool gauges failed")
        await asyncio.sleep(POOL_GAUGES_SECONDS)


# Any address: the in-process transport takes every request, signed URLs on the external
# address included, to this app.
BUILTIN_AGENT_BASE_URL = "http://terrapod.builtin"


def builtin_agent(app: FastAPI) -> Agent:
    """The built-in agent: the same :class:`~terrapod.agent.loop.Agent` and HTTP client as
    ``terrapod agent``, speaking the listener protocol to this app in process (DESIGN.md), so
    every run through it takes the real agent path. It joins by registering itself in the
    database (no agent token; it runs the jobs of workspaces without an agent pool)."""
    settings: Settings = app.state.settings
    name = f"builtin-{socket.gethostname()}-{os.getpid()}"
    capacity = settings.runs.agent_concurrency
    http = build_agent_client(BUILTIN_AGENT_BASE_URL, transport=InProcessTransport(app))
    app.state.agent_http = http

    async def join() -> Joined:
        attempt = 0
        while True:
            try:
                async with write_transaction(app.state.sessionmaker) as session:
                    row, credential = await listeners.register_builtin(
                        session,
                        name,
                        capacity,
                        ttl_seconds=settings.agents.credential_ttl_seconds,
                    )
                return Joined(
                    agent_id=row.id,
                    credential=credential,
                    credential_expires_at=row.credential_expires_at,
                    heartbeat_seconds=settings.agents.heartbeat_seconds,
                )
            except (OSError, SQLAlchemyError) as exc:
                # The database is away (a restart): the agent waits for it like for a server.
                delay = Backoff().delay(attempt)
                log.warning("built-in agent cannot register", error=type(exc).__name__)
                await asyncio.sleep(delay)
                attempt += 1

    retries = app.state.metrics.agent.server_retries
    listener = ListenerClient(
        http,
        join,
        backoff=Backoff(on_retry=retries.labels("listener").inc),
        job_backoff=Backoff(on_retry=retries.labels("job").inc),
    )
    executor = InProcessExecutor(
        listener.job,
        # Absolute: the engine runs with the module directory as its working directory.
        workdir_root=(settings.runs.work_dir or settings.data_dir / "work").resolve(),
        engines=EngineResolver(settings.runs.engines),
    )
    return Agent(
        listener,
        executor,
        concurrency=capacity,
        abandon_poll_on_stop=True,
        metrics=app.state.metrics.agent,
    )


async def _run_builtin_agent(agent: Agent) -> None:
    try:
        await agent.run()
    except Exception:
        log.exception("the built-in agent stopped")


def start_notification_deliverer(app: FastAPI) -> asyncio.Task[None]:
    """The notification deliverer, woken by the bus when deliveries were queued."""
    deliverer = NotificationDeliverer(
        app.state.sessionmaker, app.state.secret_box, app.state.settings
    )
    app.state.notification_deliverer = deliverer
    app.state.events.subscribe(notifications.TOPIC, deliverer.wake)
    return asyncio.create_task(deliverer.run_forever(), name="notification deliverer")


def start_run_task_deliveries(app: FastAPI) -> asyncio.Task[None]:
    """The worker that sends run task requests (woken by the ``runtasks`` topic)."""
    deliveries = TaskDeliveries(
        app.state.sessionmaker, app.state.secret_box, app.state.url_signer, app.state.settings
    )
    app.state.runtask_deliveries = deliveries
    app.state.events.subscribe(runtasks.TOPIC, deliveries.wake)
    return asyncio.create_task(deliveries.run_forever(), name="run task deliveries")


def tune_garbage_collector() -> None:
    """Fewer, cheaper collections for a long-running server: everything alive after start-up
    is frozen out of collection, and young-generation collections run ten times less often.
    Measured with benchmarks/api_latency.py: about a fifth less CPU per request and half the
    p99 latency, because full collections caused most of the long tail."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


def wire_hooks(store: ObjectStore) -> Hooks:
    """The one place higher domains hook into lower ones (STYLE.md 6)."""
    hooks = Hooks()
    on_workspace, on_organization = delete_objects_of_deleted_workspaces(store)
    hooks.workspace_deleting.append(on_workspace)
    hooks.organization_deleting.append(on_organization)
    on_workspace, on_organization = configversions.delete_tarballs_of_deleted_workspaces(store)
    hooks.workspace_deleting.append(on_workspace)
    hooks.organization_deleting.append(on_organization)
    on_workspace, on_organization = runs_service.delete_run_objects(store)
    hooks.workspace_deleting.append(on_workspace)
    hooks.organization_deleting.append(on_organization)
    hooks.workspace_unlocked.append(runs_service.on_workspace_unlocked)
    hooks.configuration_uploaded.append(runs_service.on_configuration_uploaded)
    hooks.run_changed.append(runtriggers.on_run_changed)
    hooks.run_changed.append(notifications.on_run_changed)
    hooks.run_changed.append(runtasks.on_run_changed)
    hooks.task_stage_reached.append(runtasks.on_task_stage_reached)
    hooks.run_task_stages.append(runtasks_schemas.on_run_task_stages)
    hooks.job_finished.append(actions.on_job_finished)
    hooks.agent_pool_use.append(agentpools.on_agent_pool_use)
    return hooks


def announce_admin_token(result: BootstrapResult, stream: TextIO = sys.stdout) -> None:
    # Written to the terminal, never to the structured log: this is the one time the token
    # exists in plain text outside the operator's hands.
    stream.write(
        "\n"
        f"  Terrapod created the organization '{result.organization}' and the admin user "
        f"'{result.admin_username}'.\n"
        f"  Admin API token (shown once, store it now):\n\n    {result.generated_token}\n\n"
    )
    stream.flush()


async def _flush_token_usage(app: FastAPI) -> None:
    used = app.state.token_usage.drain()
    if not used:
        return
    try:
        async with app.state.sessionmaker() as session:
            await session.connection(execution_options={WRITE_OPTION: True})
            await app.state.tokens.record_usage(session, used)
            await session.commit()
    except Exception:
        log.exception("token usage flush failed")


async def _flush_token_usage_forever(app: FastAPI) -> None:
    while True:
        await asyncio.sleep(TOKEN_USAGE_FLUSH_SECONDS)
        await _flush_token_usage(app)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> Response:
        return domain_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ())]
        where, name = (loc[0], loc[-1]) if loc else ("request", "")
        detail = (
            f"{where} parameter {name!r}: {first.get('msg')}" if name else str(first.get("msg"))
        )
        status = 422 if where == "body" else 400
        return error_response(status, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such endpoint or resource"
        return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> Response:
        # The database refused a value (out of range, too long, bad encoding). Attribute
        # models check widths and ranges first; this is the net under them, so bad input is
        # never a 500.
        log.warning("database refused a value", error=str(exc.orig)[:200])
        return error_response(422, "a value in the request is out of range or too long")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.error("unhandled error", error=type(exc).__name__, exc_info=exc)
        return error_response(500, "internal error; the server log has the details")


def create_app(settings: Settings, *, tune_gc: bool = False) -> FastAPI:
    """The application. ``tune_gc`` (set by ``terrapod serve``) tunes the process's garbage
    collector at start-up; tests leave it alone."""
    app = FastAPI(
        title="Terrapod",
        version=__version__,
        summary="Terraform Enterprise V2 API compatible platform",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    metrics = Metrics()
    metrics.build_info.labels(__version__).set(1)
    master = load_master_secret(settings)
    app.state.settings = settings
    app.state.tune_gc = tune_gc
    app.state.metrics = metrics
    app.state.max_request_body_bytes = settings.max_request_body_bytes
    app.state.tokens = TokenService(PrincipalCache(settings.token_cache_ttl_seconds))
    app.state.token_usage = UsageRecorder()
    app.state.url_signer = UrlSigner(
        derive_key(master, "signed-urls"), settings.signed_url_ttl_seconds
    )
    app.state.secret_box = SecretBox(derive_key(master, "secrets-at-rest"))
    app.state.login_key = derive_key(master, "terraform-login-form")
    app.state.upload_handlers = [
        UploadHandler(state_api.UPLOAD_PREFIX, state_api.upload_hook, state_api.upload_guard),
        UploadHandler(
            configversions_api.UPLOAD_PREFIX,
            configversions_api.upload_hook,
            configversions_api.upload_guard,
        ),
    ]
    _install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/docs-static", StaticFiles(directory=DOCS_STATIC_DIR), name="docs-static")
    app.add_middleware(
        ObservabilityMiddleware, metrics=metrics, trusted_proxies=settings.trusted_proxies
    )
    return app
