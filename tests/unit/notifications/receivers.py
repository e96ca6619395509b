"""Real destinations for notification tests: an HTTP receiver and an SMTP server, each on
127.0.0.1 in a thread of its own, so async tests, sync tests and a server in another process
can all deliver to them.

``HttpReceiver`` answers each request with the next status of its script (then 200) and keeps
every request (with ``hold=True`` it answers only once ``release`` is set); ``SmtpServer``
(aiosmtpd) keeps every message. Both offer ``wait_for``, which polls with a deadline for an
asynchronous outcome.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


class HttpReceiver:
    def __init__(self, statuses: list[int] | None = None, *, hold: bool = False) -> None:
        self.script = list(statuses or [])
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    status = receiver.script.pop(0) if receiver.script else 200
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, status)
                    )
                receiver.release.wait(timeout=60)
                answer = b'{"ok": true}' if status < 300 else b"try again later"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Receiver", "test")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def bodies(self) -> list[bytes]:
        with self._lock:
            return [r.body for r in self.requests]

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], within: float = 15.0
    ) -> list[Received]:
        deadline = time.monotonic() + within
        while True:
            seen = self.snapshot()
            if predicate(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver did not get what was expected; got {seen!r}")
            await asyncio.sleep(0.05)

    def wait_for_sync(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 60.0
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            seen = self.snapshot()
            if predicate(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver did not get what was expected; got {seen!r}")
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Keep:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    # aiosmtpd calls it by this name.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.server.lock:
            self.server.messages.append(
                (list(envelope.rcpt_tos), message_from_bytes(envelope.content))
            )
        return "250 Message accepted for delivery"


class SmtpServer:
    """An SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[list[str], Message]] = []
        self.lock = threading.Lock()
        self._controller = Controller(_Keep(self), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def snapshot(self) -> list[tuple[list[str], Message]]:
        with self.lock:
            return list(self.messages)

    async def wait_for(
        self, predicate: Callable[[list[tuple[list[str], Message]]], bool], within: float = 15.0
    ) -> list[tuple[list[str], Message]]:
        deadline = time.monotonic() + within
        while True:
            seen = self.snapshot()
            if predicate(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"SMTP server did not get what was expected; got {seen!r}")
            await asyncio.sleep(0.05)
