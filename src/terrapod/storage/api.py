"""HTTP face of the object store: ``GET``/``PUT /objects/<token>``.

These routes take no Authorization header: the signed token in the path (see
:mod:`terrapod.storage.signing`) is the credential, bound to one key and one method. The app
includes :data:`router` without a prefix and must keep ``/objects/`` out of its token
authentication.

The store and signer come from ``request.app.state.object_store`` and
``request.app.state.url_signer``.

Domains learn about finished uploads through upload hooks: a domain registers, at import
time, a coroutine for the key prefix it owns (e.g. the state domain for ``workspaces/``) and
finalizes its records there (state version uploaded, configuration version uploaded, …).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
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
_upload_hooks: list[tuple[str, UploadHook]] = []

router = APIRouter()

Token = Annotated[str, Path(description="Signed object token (see terrapod.storage.signing)")]


def register_upload_hook(prefix: str, hook: UploadHook) -> Callable[[], None]:
    """Run ``hook(request, info)`` after an object whose key starts with ``prefix`` has been
    stored through ``PUT /objects/<token>``; returns a function that unregisters it.

    Hooks are tried in registration order and only the first match runs, so prefixes should
    not overlap. A hook that raises a :class:`~terrapod.errors.DomainError` turns the
    response into the matching JSON:API error; the object stays stored either way (a hook
    that rejects it deletes it itself).
    """
    entry = (prefix, hook)
    _upload_hooks.append(entry)

    def unregister() -> None:
        if entry in _upload_hooks:
            _upload_hooks.remove(entry)

    return unregister


def _find_hook(key: str) -> UploadHook | None:
    return next((hook for prefix, hook in _upload_hooks if key.startswith(prefix)), None)


def _signer(request: Request) -> UrlSigner:
    signer: UrlSigner = request.app.state.url_signer
    return signer


def _store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.object_store
    return store


def _refused(exc: SignedUrlError) -> Response:
    detail = "signed URL expired" if isinstance(exc, SignatureExpired) else "invalid signature"
    return error_response(403, detail)


def _non_negative(request: Request, name: str) -> int | None:
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
        offset = _non_negative(request, "offset") or 0
    except ValueError:
        return error_response(400, "offset must be a non-negative integer")
    try:
        limit = _non_negative(request, "limit")
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
async def upload_object(request: Request, token: Token) -> Response:
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
    try:
        info = await _store(request).put(key, request.stream(), max_size=limit)
    except ObjectTooLarge:
        return error_response(413, f"upload larger than {limit} bytes")
    except ClientDisconnect:
        # Nothing was stored (puts are atomic); the client is gone, so this is for the logs.
        return error_response(400, "client disconnected during upload")
    hook = _find_hook(key)
    if hook is not None:
        try:
            await hook(request, info)
        except DomainError as exc:
            return domain_error_response(exc)
    return Response(status_code=200)
