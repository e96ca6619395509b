"""``GET``/``PUT /objects/<token>`` through HTTP, the way terraform and go-tfe use them."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from terrapod.errors import Conflict
from terrapod.jsonapi.errors import JSONAPI_CONTENT_TYPE
from terrapod.storage import keys
from terrapod.storage.api import UploadHandler, router
from terrapod.storage.base import ObjectInfo, ObjectStore
from terrapod.storage.signing import UrlSigner

STATE_KEY = keys.state_version("ws-abc", "sv-def")
LOG_KEY = keys.plan_log("run-abc")


@pytest.fixture
def signer() -> UrlSigner:
    return UrlSigner(b"k" * 32, default_ttl=60)


@pytest.fixture
def app(store: ObjectStore, signer: UrlSigner) -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    app.state.object_store = store
    app.state.url_signer = signer
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://tp.test") as client:
        yield client


@pytest.fixture
def hook_calls(app: FastAPI) -> list[ObjectInfo]:
    calls: list[ObjectInfo] = []

    async def record(request: Request, info: ObjectInfo) -> None:
        assert request.app.state.url_signer is not None
        calls.append(info)

    app.state.upload_handlers = [UploadHandler("workspaces/", record)]
    return calls


def assert_jsonapi_error(response: httpx.Response, status: int, detail: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == JSONAPI_CONTENT_TYPE
    (error,) = response.json()["errors"]
    assert error["status"] == str(status)
    assert detail in error["detail"]


async def test_put_without_authorization_then_get(
    client: httpx.AsyncClient, signer: UrlSigner, store: ObjectStore
) -> None:
    state = os.urandom(200_000)

    put = await client.put(
        signer.signed_path(STATE_KEY, "PUT"),
        content=state,
        headers={"Content-Type": "application/octet-stream"},
    )
    get = await client.get(signer.signed_path(STATE_KEY, "GET"))

    assert (put.status_code, put.content) == (200, b"")
    assert get.status_code == 200
    assert get.headers["content-type"] == "application/octet-stream"
    assert get.headers["content-length"] == str(len(state))
    assert get.content == state
    assert await store.get_bytes(STATE_KEY) == state


async def test_streamed_chunked_upload(client: httpx.AsyncClient, signer: UrlSigner) -> None:
    data = os.urandom(3 * 1024 * 1024)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    put = await client.put(signer.signed_path(STATE_KEY, "PUT"), content=body())
    get = await client.get(signer.signed_path(STATE_KEY, "GET"))

    assert put.status_code == 200
    assert hashlib.sha256(get.content).digest() == hashlib.sha256(data).digest()


async def test_log_reader_offsets(
    client: httpx.AsyncClient, signer: UrlSigner, store: ObjectStore
) -> None:
    # go-tfe replaces the URL's query with limit/offset and sends no Authorization header.
    log = b"\x02" + b"".join(f"line {i}\n".encode() for i in range(5000)) + b"\x03"
    await store.put_bytes(LOG_KEY, log)
    url = signer.signed_path(LOG_KEY, "GET")

    received = b""
    while True:
        response = await client.get(url, params={"limit": 65536, "offset": len(received)})
        assert response.status_code == 200
        if not response.content:
            break
        assert len(response.content) <= 65536
        received += response.content

    assert received == log


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"offset": "3"}, b"3456789"),
        ({"offset": "3", "limit": "2"}, b"34"),
        ({"limit": "0"}, b""),
        ({"offset": "10"}, b""),
        ({"offset": "99", "limit": "5"}, b""),
        ({"offset": "", "limit": ""}, b"0123456789"),
    ],
)
async def test_get_range(
    client: httpx.AsyncClient,
    signer: UrlSigner,
    store: ObjectStore,
    params: dict[str, str],
    expected: bytes,
) -> None:
    await store.put_bytes(LOG_KEY, b"0123456789")

    response = await client.get(signer.signed_path(LOG_KEY, "GET"), params=params)

    assert response.status_code == 200
    assert response.content == expected
    assert response.headers["content-length"] == str(len(expected))


@pytest.mark.parametrize("name", ["offset", "limit"])
@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "1e3", "٣", "9" * 30])
async def test_bad_range_parameter_is_400(
    client: httpx.AsyncClient, signer: UrlSigner, store: ObjectStore, name: str, value: str
) -> None:
    await store.put_bytes(LOG_KEY, b"0123456789")

    response = await client.get(signer.signed_path(LOG_KEY, "GET"), params={name: value})

    assert_jsonapi_error(response, 400, name)


async def test_missing_object_is_404(client: httpx.AsyncClient, signer: UrlSigner) -> None:
    response = await client.get(signer.signed_path(LOG_KEY, "GET"))

    assert_jsonapi_error(response, 404, "not found")


async def test_expired_token_is_403(
    client: httpx.AsyncClient, signer: UrlSigner, store: ObjectStore
) -> None:
    await store.put_bytes(STATE_KEY, b"{}")
    past = time.time() - 3600
    get_token = signer.sign(STATE_KEY, "GET", ttl=60, now=past)
    put_token = signer.sign(STATE_KEY, "PUT", ttl=60, now=past)

    get = await client.get(f"/objects/{get_token}")
    put = await client.put(f"/objects/{put_token}", content=b"new")

    assert_jsonapi_error(get, 403, "signed URL expired")
    assert_jsonapi_error(put, 403, "signed URL expired")
    assert await store.get_bytes(STATE_KEY) == b"{}"


async def test_tampered_token_is_403(
    client: httpx.AsyncClient, signer: UrlSigner, store: ObjectStore
) -> None:
    await store.put_bytes(STATE_KEY, b"{}")
    token = signer.sign(STATE_KEY, "GET")
    tampered = ("B" if token[0] != "B" else "C") + token[1:]

    response = await client.get(f"/objects/{tampered}")
    garbage = await client.get("/objects/not-a-token")

    assert_jsonapi_error(response, 403, "invalid signature")
    assert_jsonapi_error(garbage, 403, "invalid signature")


async def test_token_for_other_method_is_403(
    client: httpx.AsyncClient, signer: UrlSigner, store: ObjectStore, hook_calls: list[ObjectInfo]
) -> None:
    await store.put_bytes(STATE_KEY, b"original")

    get_with_put_token = await client.get(signer.signed_path(STATE_KEY, "PUT"))
    put_with_get_token = await client.put(signer.signed_path(STATE_KEY, "GET"), content=b"evil")

    assert_jsonapi_error(get_with_put_token, 403, "invalid signature")
    assert_jsonapi_error(put_with_get_token, 403, "invalid signature")
    assert await store.get_bytes(STATE_KEY) == b"original"
    assert hook_calls == []


async def test_upload_hook_runs_for_its_prefix_only(
    client: httpx.AsyncClient, signer: UrlSigner, hook_calls: list[ObjectInfo]
) -> None:
    await client.put(signer.signed_path(LOG_KEY, "PUT"), content=b"log")
    response = await client.put(signer.signed_path(STATE_KEY, "PUT"), content=b"state")

    assert response.status_code == 200
    assert [(i.key, i.size, i.md5) for i in hook_calls] == [
        (STATE_KEY, 5, hashlib.md5(b"state", usedforsecurity=False).hexdigest())
    ]


async def test_first_matching_hook_wins_and_domain_errors_map(
    app: FastAPI, client: httpx.AsyncClient, signer: UrlSigner, hook_calls: list[ObjectInfo]
) -> None:
    async def refuse(request: Request, info: ObjectInfo) -> None:
        raise Conflict("state version already finalized")

    app.state.upload_handlers.append(UploadHandler("runs/", refuse))
    refused = await client.put(signer.signed_path(LOG_KEY, "PUT"), content=b"x")
    accepted = await client.put(signer.signed_path(STATE_KEY, "PUT"), content=b"y")

    assert_jsonapi_error(refused, 409, "already finalized")
    assert accepted.status_code == 200 and len(hook_calls) == 1


async def test_guard_refuses_before_anything_is_stored(
    app: FastAPI, client: httpx.AsyncClient, signer: UrlSigner, store: ObjectStore
) -> None:
    finished: list[ObjectInfo] = []

    async def guard(request: Request, key: str) -> bool:
        return False

    async def finish(request: Request, info: ObjectInfo) -> None:
        finished.append(info)

    app.state.upload_handlers = [UploadHandler("workspaces/", finish, guard)]
    refused = await client.put(signer.signed_path(STATE_KEY, "PUT"), content=b"late")

    assert_jsonapi_error(refused, 409, "no longer accepts")
    assert await store.head(STATE_KEY) is None and finished == []


async def test_upload_over_limit_is_413_and_not_stored(
    app: FastAPI, client: httpx.AsyncClient, signer: UrlSigner, store: ObjectStore
) -> None:
    app.state.max_upload_bytes = 1000

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: caught while streaming
        for _ in range(20):
            yield b"z" * 100

    declared = await client.put(signer.signed_path(STATE_KEY, "PUT"), content=b"z" * 2000)
    chunked = await client.put(signer.signed_path(STATE_KEY, "PUT"), content=streamed())
    at_limit = await client.put(signer.signed_path(LOG_KEY, "PUT"), content=b"z" * 1000)

    assert_jsonapi_error(declared, 413, "1000 bytes")
    assert_jsonapi_error(chunked, 413, "1000 bytes")
    assert await store.head(STATE_KEY) is None
    assert at_limit.status_code == 200


async def test_get_is_not_cached(
    client: httpx.AsyncClient, signer: UrlSigner, store: ObjectStore
) -> None:
    await store.put_bytes(LOG_KEY, b"x")

    response = await client.get(signer.signed_path(LOG_KEY, "GET"))

    assert response.headers["cache-control"] == "no-store"
