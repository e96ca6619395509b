"""An httpx transport into an ASGI application in the same process, with streamed bodies.

The built-in agent of ``terrapod serve`` speaks the listener protocol to its own app through
this transport: every call goes through the app's middleware and routes exactly as a remote
agent's would, without a socket. Unlike ``httpx.ASGITransport``, which collects the whole
response before returning it, the response body flows through a small bounded queue, so
downloading a configuration or a plan file never holds it in memory; request bodies are
read by the app as it asks for them. The host of the URL does not matter: every request,
signed URLs on the server's external address included, goes to the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

_QUEUED_CHUNKS = 4


class _End:
    """The response body is complete."""


class _Body(httpx.AsyncByteStream):
    def __init__(
        self,
        chunks: asyncio.Queue[bytes | _End | BaseException],
        task: asyncio.Task[None],
        gone: asyncio.Event,
    ) -> None:
        self._chunks = chunks
        self._task = task
        self._gone = gone

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._chunks.get()
            if isinstance(item, _End):
                return
            if isinstance(item, BaseException):
                raise httpx.ReadError(f"the application failed: {type(item).__name__}")
            yield item

    async def aclose(self) -> None:
        # The client is done with the response (read or abandoned): the app sees a
        # disconnect, and an app still sending is stopped.
        self._gone.set()
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class InProcessTransport(httpx.AsyncBaseTransport):
    def __init__(self, app: ASGIApp, *, client: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self._app = app
        self._client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("an async request body is required")
        exchange = _Exchange(request.stream.__aiter__(), head=request.method == "HEAD")
        task = asyncio.create_task(
            exchange.run(self._app, _scope(request, self._client)),
            name=f"in-process {request.method} {request.url.path}",
        )
        try:
            status, headers = await exchange.started
        except asyncio.CancelledError:
            task.cancel()
            raise
        return httpx.Response(
            status, headers=headers, stream=_Body(exchange.chunks, task, exchange.gone)
        )


class _Exchange:
    """One request's ASGI ``receive`` and ``send``."""

    def __init__(self, body: AsyncIterator[bytes], *, head: bool) -> None:
        self._body = body
        self._head = head
        self._request_read = False
        self._ended = False
        self.gone = asyncio.Event()
        self.started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = (
            asyncio.get_running_loop().create_future()
        )
        self.chunks: asyncio.Queue[bytes | _End | BaseException] = asyncio.Queue(_QUEUED_CHUNKS)

    async def receive(self) -> dict[str, Any]:
        if self._request_read:
            await self.gone.wait()
            return {"type": "http.disconnect"}
        try:
            chunk = await self._body.__anext__()
        except StopAsyncIteration:
            self._request_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started.set_result((message["status"], list(message.get("headers", []))))
        elif message["type"] == "http.response.body" and not self._ended:
            data = message.get("body", b"")
            if data and not self._head:
                await self.chunks.put(data)
            if not message.get("more_body", False):
                self._ended = True
                await self.chunks.put(_End())

    async def run(self, app: ASGIApp, scope: dict[str, Any]) -> None:
        try:
            await app(scope, self.receive, self.send)
        except Exception as exc:  # noqa: BLE001 - the client sees a 500 or a broken body
            if not self.started.done():
                self.started.set_result((500, []))
            elif not self._ended:
                self._ended = True
                await self.chunks.put(exc)
        finally:
            if not self.started.done():
                self.started.set_result((500, []))
            if not self._ended:
                self._ended = True
                with contextlib.suppress(asyncio.QueueFull):  # nobody reads any more
                    self.chunks.put_nowait(_End())


def _scope(request: httpx.Request, client: tuple[str, int]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "headers": [(k.lower(), v) for k, v in request.headers.raw],
        "scheme": request.url.scheme,
        "path": request.url.path,
        "raw_path": request.url.raw_path.split(b"?")[0],
        "query_string": request.url.query,
        "server": (request.url.host, request.url.port),
        "client": client,
        "root_path": "",
    }
