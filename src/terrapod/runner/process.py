"""Running engine commands for one job, under the job's cancel, force and timeout rules.

Each command runs in a session of its own, so a Ctrl-C aimed at the agent's terminal does not
reach it and everything it starts (provisioners) can be killed together. Cancel sends SIGINT
to the engine alone — Terraform then stops as from Ctrl-C, ending or halting what it is doing
and writing state. Force, and a timeout's grace period running out, SIGKILL the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import cast

from terrapod.runner.engines import Engine
from terrapod.runner.spec import JobControl

Sink = Callable[[bytes], Awaitable[None]]

# How long a timed-out engine may take to stop after SIGINT before it is killed.
TIMEOUT_GRACE_SECONDS = 30.0
_READ_SIZE = 64 * 1024


class EngineCommands:
    """Runs ``engine`` commands with ``env`` until ``deadline`` (event-loop time), which
    spans all of them."""

    def __init__(
        self, engine: Engine, env: Mapping[str, str], control: JobControl, *, deadline: float
    ) -> None:
        self._engine = engine
        self._env = dict(env)
        self._control = control
        self._deadline = deadline
        self.timed_out = False
        """Set once the job's time ran out; every command after that fails at once."""

    @property
    def stopped(self) -> bool:
        """The job was canceled, force-canceled or timed out: start nothing more."""
        return self.timed_out or self._control.cancel.is_set() or self._control.force.is_set()

    async def run(
        self, args: Sequence[str], *, cwd: Path, output: Sink, stdout_file: Path | None = None
    ) -> int:
        """Run ``engine args`` in ``cwd`` and return its exit code (negative: killed by that
        signal). Its output goes to ``output`` — stdout and stderr interleaved, or only
        stderr when ``stdout_file`` receives stdout."""
        with contextlib.ExitStack() as files:
            stdout = files.enter_context(stdout_file.open("wb")) if stdout_file else None
            process = await asyncio.create_subprocess_exec(
                self._engine.path,
                *args,
                cwd=cwd,
                env=self._env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout or asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        # Whichever of the two is the pipe made above.
        stream = cast("asyncio.StreamReader", process.stderr if stdout_file else process.stdout)
        pump = asyncio.create_task(_pump(stream, output))
        try:
            await self._supervise(process)
        finally:
            if process.returncode is None:
                _kill_session(process.pid)
                await process.wait()
            # Whatever the engine left behind in its session goes too, so nothing keeps
            # the output pipe open or outlives the job.
            _kill_session(process.pid)
            await self._drain(pump)
        return await process.wait()

    async def _supervise(self, process: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        exited = asyncio.ensure_future(process.wait())
        cancel = asyncio.ensure_future(self._control.cancel.wait())
        force = asyncio.ensure_future(self._control.force.wait())
        kill_at: float | None = None
        try:
            while not exited.done():
                waiting = {exited, force} if cancel.done() else {exited, force, cancel}
                until = kill_at if kill_at is not None else self._deadline
                await asyncio.wait(
                    waiting,
                    timeout=max(until - loop.time(), 0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if exited.done():
                    break
                if force.done() or (kill_at is not None and loop.time() >= kill_at):
                    _kill_session(process.pid)
                    await exited
                elif cancel.done() and not cancel.cancelled() and kill_at is None:
                    _interrupt(process)
                    # Waiting on a finished future would spin; drop it from the set.
                    cancel.cancel()
                elif loop.time() >= self._deadline and not self.timed_out:
                    self.timed_out = True
                    _interrupt(process)
                    kill_at = loop.time() + TIMEOUT_GRACE_SECONDS
        finally:
            for waiter in (exited, cancel, force):
                waiter.cancel()

    async def _drain(self, pump: asyncio.Task[None]) -> None:
        """Let the rest of the output through; a pipe some escaped process still holds open
        is given up on once the job's time (and grace) is over."""
        remaining = self._deadline + TIMEOUT_GRACE_SECONDS - asyncio.get_running_loop().time()
        done, _ = await asyncio.wait({pump}, timeout=max(remaining, 0))
        if done:
            pump.result()  # the output sink's failure, if it had one
        else:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


async def _pump(stream: asyncio.StreamReader, output: Sink) -> None:
    failure: Exception | None = None
    while chunk := await stream.read(_READ_SIZE):
        if failure is None:
            try:
                await output(chunk)
            except Exception as exc:  # noqa: BLE001 - raised below, once the output ends
                # Keep reading: an engine blocked on a full pipe could never finish, and an
                # apply that loses its log is better than one killed halfway.
                failure = exc
    if failure is not None:
        raise failure


def _interrupt(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)


def _kill_session(pid: int) -> None:
    # start_new_session made the engine the leader of a process group with its own pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
