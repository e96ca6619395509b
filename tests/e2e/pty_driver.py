"""A command on a pseudo-terminal, the way a person runs it: it sees a TTY on stdin, stdout and
stderr, so Terraform asks its questions ("Enter a value:") and reads the answers typed here.

Standard library only (``os.openpty`` + ``subprocess``). A thread drains the terminal all the
time, so the process never blocks on a full terminal buffer while a test does something else
(polls the API, drives a second process); tests wait for text with a deadline, never sleep.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import re
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_TIMEOUT_SECONDS = 90.0
# Wide enough that Terraform's own wrapping (it wraps diagnostics to the terminal's width)
# rarely splits a phrase a test looks for.
COLUMNS, ROWS = 200, 50


class PtyProcess:
    """``args`` running with a pseudo-terminal as its stdin, stdout and stderr.

    ``output`` is everything it printed so far (``\\r\\n`` folded to ``\\n``). Use it as a
    context manager: leaving the block kills the process if it is still running.
    """

    def __init__(self, args: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> None:
        self._master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        try:
            self.process = subprocess.Popen(
                list(args),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=dict(env),
                cwd=cwd,
                close_fds=True,
            )
        except BaseException:
            os.close(self._master)
            raise
        finally:
            os.close(slave)
        self._chunks: list[str] = []
        self._changed = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._drain, name=f"pty-{self.pid}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._chunks).replace("\r\n", "\n")

    def _drain(self) -> None:
        # Incremental: a UTF-8 sequence split between two reads is decoded once whole.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                chunk = b""
            if not chunk:
                break
            text = decoder.decode(chunk)
            with self._changed:
                self._chunks.append(text)
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def expect(self, pattern: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> re.Match[str]:
        """Wait until the output matches ``pattern`` (a regex); fail with the output so far."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = compiled.search("".join(self._chunks).replace("\r\n", "\n"))
                if match is not None:
                    return match
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    why = "exited" if self._closed else f"not seen within {timeout:g}s"
                    raise AssertionError(
                        f"{pattern!r} {why}; exit {self.process.poll()}; output:\n"
                        + "".join(self._chunks)
                    )
                self._changed.wait(min(remaining, 1.0))

    def send(self, text: str) -> None:
        """Type ``text`` (use ``\\r`` or ``\\n`` for Enter)."""
        os.write(self._master, text.encode())

    def send_line(self, text: str) -> None:
        self.send(text + "\r")

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the process, as the terminal would send it."""
        self.process.send_signal(signal.SIGINT)

    def wait(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> int:
        """Wait for the process to exit and for its last output; return its exit code."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {timeout:g}s; output:\n{self.output}"
            ) from None
        self._reader.join(timeout=timeout)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        with contextlib.suppress(OSError):
            os.close(self._master)

    def __enter__(self) -> PtyProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
