"""HTTP face of the object store: ``GET``/``PUT /objects/<token>``.

These routes take no Authorization header: the signed token in the path (see
:mod:`terrapod.storage.signing`) is the credential, bound to one key and one method. The app
includes :data:`router` without a prefix and must keep ``/objects/`` out of its token
authentication.

The store and signer come from ``request.app.state.object_store`` and
``request.app.state.url_signer``.

Domains learn about uploads through :class:`UploadHandler` entries in
``app.state.upload_handlers``, one per key prefix a domain owns (e.g. the state domain for
``workspaces/``): an optional guard refuses an upload before a byte is stored (a state version
that already has its content), and ``finish`` finalizes the domain's records afterwards.
Handlers live on the app, not in a module global, so every app (and every test) has its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from terrapod.errors import DomainError
from terrapod.jsonapi.errors import domain_error_response, error_response
from terrapod.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStream,
    ObjectTooLarge,
)
from terrapod.storage.signing import (
    OBJECTS_PATH,
    SignatureExpired,
    SignedUrlError,
    UrlSigner,
)

# Largest accepted upload unless ``app.state.max_upload_bytes`` says otherwise.
MAX_UPLOAD_BYTES = 5 * 1024**3

UploadHook = Callable[[Request, ObjectInfo], Awaitable[None]]
UploadGuard = Callable[[Request, str], Awaitable[bool]]


@dataclass(frozen=True)
class UploadHandler:
    """What happens around ``PUT /objects/<token>`` for keys starting with ``prefix``.

    ``guard(request, key)`` runs first; False refuses the upload with 409 and stores nothing.
    ``finish(request, info)`` runs after the object is stored; a
    :class:`~terrapod.errors.DomainError` it raises becomes the matching JSON:API error (the
    object stays stored unless ``finish`` deletes it). Only the first matching handler runs,
    so prefixes should not overlap.
    """

    prefix: str
    finish: UploadHook
    guard: UploadGuard | None = None


router = APIRouter()

Token = Annotated[str, Path(description="Signed object token (see terrapod.storage.signing)")]


def _find_handler(request: Request, key: str) -> UploadHandler | None:
    handlers: list[UploadHandler] = getattr(request.app.state, "upload_handlers", [])
    return next((h for h in handlers if key.startswith(h.prefix)), None)


def _signer(request: Request) -> UrlSigner:
    signer: UrlSigner = request.app.state.url_signer
    return signer


def _store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.object_store
    return store


def _refused(exc: SignedUrlError) -> Response:
    detail = "signed URL expired" if isinstance(exc, SignatureExpired) else "invalid signature"
    return error_response(403, detail)


def non_negative_query(request: Request, name: str) -> int | None:
    """Query parameter ``name`` as an int >= 0; None when absent; ValueError when bad."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    # isdecimal() also admits other scripts' digits; keep to ASCII like every HTTP client.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise ValueError(name)
    return int(raw)


async def _chunks(stream: ObjectStream) -> AsyncIterator[bytes]:
    # Closing in `finally` releases the file or S3 connection even when the client goes away
    # mid-download (the generator is closed instead of exhausted).
    try:
        async for chunk in stream:
            yield chunk
    finally:
        await stream.aclose()


@router.get(f"{OBJECTS_PATH}/{{token}}", operation_id="download_object", include_in_schema=False)
async def download_object(request: Request, token: Token) -> Response:
    """Stream the object the token grants GET on; ``offset``/``limit`` select a byte range
    (go-tfe's log reader sends both, replacing any query string the URL had)."""
    try:
        key = _signer(request).verify(token, "GET")
    except SignedUrlError as exc:
        return _refused(exc)
    try:
        offset = non_negative_query(request, "offset") or 0
    except ValueError:
        return error_response(400, "offset must be a non-negative integer")
    try:
        limit = non_negative_query(request, "limit")
    except ValueError:
        return error_response(400, "limit must be a non-negative integer")
    try:
        stream = await _store(request).open(key, offset=offset, length=limit)
    except ObjectNotFound:
        return error_response(404, "object not found")
    return StreamingResponse(
        _chunks(stream),
        media_type="application/octet-stream",
        headers={"Content-Length": str(stream.length), "Cache-Control": "no-store"},
        # Also closes a stream whose generator never started (e.g. a HEAD-like abort).
        background=BackgroundTask(stream.aclose),
    )


@router.put(f"{OBJECTS_PATH}/{{token}}", operation_id="upload_object", include_in_schema=False)
async def upload_object(request: Request, token: Token) -> Response:  # noqa: PLR0911 - one return per refusal
    """Store the request body under the key the token grants PUT on, then run the matching
    upload hook. 200 with an empty body; 413 when larger than the upload limit."""
    try:
        key = _signer(request).verify(token, "PUT")
    except SignedUrlError as exc:
        return _refused(exc)
    limit: int = getattr(request.app.state, "max_upload_bytes", MAX_UPLOAD_BYTES)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        # Refuse before reading a byte of a body we would throw away.
        return error_response(413, f"upload larger than {limit} bytes")
    handler = _find_handler(request, key)
    if handler is not None and handler.guard is not None and not await handler.guard(request, key):
        return error_response(409, "this upload URL no longer accepts content")
    try:
        info = await _store(request).put(key, request.stream(), max_size=limit)
    except ObjectTooLarge:
        return error_response(413, f"upload larger than {limit} bytes")
    except ClientDisconnect:
        # Nothing was stored (puts are atomic); the client is gone, so this is for the logs.
        return error_response(400, "client disconnected during upload")
    if handler is not None:
        try:
            await handler.finish(request, info)
        except DomainError as exc:
            return domain_error_response(exc)
    return Response(status_code=200)
