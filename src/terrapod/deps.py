"""FastAPI dependency aliases shared by every router.

``SessionDep`` is the request's one database session: it commits when the route returns and
rolls back when it raises, before the response is sent (``scope="function"``), so a client
that sees 2xx knows its change is durable. The principal is resolved on the same session, so
a request never holds more than one connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from terrapod.access.principal import Principal, PrincipalResolver
from terrapod.config import Settings
from terrapod.db.engine import WRITE_OPTION
from terrapod.db.hooks import run_after_commit
from terrapod.errors import Unauthenticated
from terrapod.storage.base import ObjectStore
from terrapod.storage.signing import UrlSigner

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in _session(request, write=request.method not in _READ_METHODS):
        yield session


async def get_session_writing_last(request: Request) -> AsyncIterator[AsyncSession]:
    """For a writing route that waits on the network before its one small write (a test
    notification): no write lock is taken up front, so on SQLite other writers are not held
    up while it waits; its single-statement write commits on its own. The same as
    :func:`get_session` on PostgreSQL."""
    async for session in _session(request, write=False):
        yield session


async def _session(request: Request, *, write: bool) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        if write:
            # Tells the SQLite engine to BEGIN IMMEDIATE (see db/engine.py); no-op on PostgreSQL.
            await session.connection(execution_options={WRITE_OPTION: True})
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        await run_after_commit(session)


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
WritingLastSessionDep = Annotated[AsyncSession, Depends(get_session_writing_last, scope="function")]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def current_principal(request: Request, session: SessionDep) -> Principal:
    return await _principal(request, session)


async def current_principal_writing_last(
    request: Request, session: WritingLastSessionDep
) -> Principal:
    """The principal, resolved on the request's :data:`WritingLastSessionDep` session (one
    session per request, as always)."""
    return await _principal(request, session)


async def _principal(request: Request, session: AsyncSession) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("an API token is required: send Authorization: Bearer <token>")
    tokens: PrincipalResolver = request.app.state.tokens
    principal = await tokens.resolve(session, token)
    if principal is None:
        raise Unauthenticated("the API token is invalid, expired or revoked")
    if principal.token_id is not None:
        request.app.state.token_usage.touch(principal.token_id)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
PrincipalWritingLastDep = Annotated[Principal, Depends(current_principal_writing_last)]


async def get_settings(request: Request) -> Settings:
    # async: FastAPI runs plain-def dependencies in a thread pool (~85 us each).
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def base_url(request: Request) -> str:
    """Absolute base URL for links handed to clients (upload URLs, log URLs)."""
    settings: Settings = request.app.state.settings
    if settings.external_url:
        return settings.external_url
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


# (object key, HTTP method) -> absolute signed URL a client can use without a token
UrlFor = Callable[[str, str], str]


async def get_url_for(request: Request) -> UrlFor:
    root = base_url(request)
    signer: UrlSigner = request.app.state.url_signer

    def url_for(key: str, method: str) -> str:
        return root + signer.signed_path(key, method)

    return url_for


UrlForDep = Annotated[UrlFor, Depends(get_url_for)]


async def get_object_store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.object_store
    return store


ObjectStoreDep = Annotated[ObjectStore, Depends(get_object_store)]
