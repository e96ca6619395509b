"""Phase logs: appended while the engine runs, read by offset, archived when the phase ends.

The byte stream is what go-tfe's log reader expects (DESIGN.md, "Runs"): STX (0x02) first,
then the engine's output, then ETX (0x03) once the phase has ended. While the phase runs the
bytes live in ``log_chunks`` rows (any server replica can serve them); when it has ended,
:func:`archive` moves them into one object-store object and deletes the rows. Readers ask
by offset and never see the difference.
"""

from __future__ import annotations

import re

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.events.bus import publish_after_commit
from terrapod.runs.models import Apply, LogChunk, Plan, Run
from terrapod.storage import keys
from terrapod.storage.base import ObjectNotFound, ObjectStore

STX = b"\x02"
ETX = b"\x03"
# Largest piece one read returns (go-tfe asks for at most 64 KiB).
MAX_READ = 1024 * 1024
# Largest single append; agents split bigger writes.
MAX_APPEND = 1024 * 1024

_LOG_KEY_RE = re.compile(r"^runs/(run-[A-Za-z0-9]{16})/(plan|apply)\.log$")


async def load_phase(
    session: AsyncSession, phase_id: str, *, for_update: bool = False
) -> Plan | Apply | None:
    """A plan (``plan-…``) or an apply (``apply-…``) by id."""
    if phase_id.startswith("plan-"):
        return await session.get(Plan, phase_id, with_for_update=for_update)
    if phase_id.startswith("apply-"):
        return await session.get(Apply, phase_id, with_for_update=for_update)
    return None


def key_of(phase: Plan | Apply) -> str:
    return keys.plan_log(phase.run_id) if isinstance(phase, Plan) else keys.apply_log(phase.run_id)


def phase_of_key(key: str) -> tuple[str, str] | None:
    """(run id, "plan" | "apply") for a log key, or None when it is not one."""
    match = _LOG_KEY_RE.match(key)
    return (match.group(1), match.group(2)) if match else None


async def _append(session: AsyncSession, phase: Plan | Apply, data: bytes) -> None:
    start = phase.log_length
    session.add(LogChunk(phase_id=phase.id, start=start, end=start + len(data), data=data))
    phase.log_length = start + len(data)


async def open_(session: AsyncSession, phase: Plan | Apply) -> None:
    """The phase started: its log begins with STX."""
    if phase.log_length == 0:
        await _append(session, phase, STX)


async def close(session: AsyncSession, phase: Plan | Apply) -> None:
    """The phase ended: its log ends with ETX and is queued for archiving."""
    await _append(session, phase, ETX)
    publish_after_commit(session, "logs", {"phase_id": phase.id, "run_id": phase.run_id})


async def append(session: AsyncSession, run: Run, phase_name: str, data: bytes) -> bool:
    """Append engine output to the running phase; False when the phase is no longer running
    (force-canceled or failed by the sweep), so the writer can stop."""
    phase = await load_phase(
        session, run.plan_id if phase_name == "plan" else run.apply_id, for_update=True
    )
    if phase is None or phase.status != "running":
        return False
    for offset in range(0, len(data), MAX_APPEND):
        await _append(session, phase, data[offset : offset + MAX_APPEND])
    return True


async def read(
    session: AsyncSession, store: ObjectStore, phase: Plan | Apply, offset: int, limit: int
) -> bytes:
    """Up to ``limit`` bytes of the log from ``offset`` (empty past the end)."""
    limit = min(limit, MAX_READ)
    if limit <= 0 or offset >= phase.log_length:
        return b""
    if not phase.log_archived:
        data = await _read_chunks(session, phase.id, offset, limit)
        if data is not None:
            return data
        # The chunks are gone: the log was archived after ``phase`` was read (reads are not
        # one snapshot on SQLite). Look again.
        await session.refresh(phase)
        if not phase.log_archived:
            return b""
    try:
        stream = await store.open(key_of(phase), offset=offset, length=limit)
    except ObjectNotFound:
        return b""
    async with stream:
        return b"".join([chunk async for chunk in stream])


async def _read_chunks(
    session: AsyncSession, phase_id: str, offset: int, limit: int
) -> bytes | None:
    rows = await session.execute(
        select(LogChunk.start, LogChunk.data)
        .where(
            LogChunk.phase_id == phase_id,
            LogChunk.end > offset,
            LogChunk.start < offset + limit,
        )
        .order_by(LogChunk.start)
    )
    parts = [(start, data) for start, data in rows]
    if not parts:
        return None
    joined = b"".join(data for _, data in parts)
    skip = offset - parts[0][0]
    return joined[skip : skip + limit]


async def archive(session: AsyncSession, store: ObjectStore, phase_id: str) -> bool:
    """Move an ended phase's log into the object store; True when it was archived now."""
    phase = await load_phase(session, phase_id, for_update=True)
    if phase is None or phase.log_archived or phase.status == "running":
        return False
    rows = await session.execute(
        select(LogChunk.data).where(LogChunk.phase_id == phase.id).order_by(LogChunk.start)
    )
    await store.put_bytes(key_of(phase), b"".join(rows.scalars()))
    phase.log_archived = True
    await session.execute(delete(LogChunk).where(LogChunk.phase_id == phase.id))
    return True


async def unarchived(session: AsyncSession) -> list[str]:
    """Ended phases whose logs are still in the database (archiving was interrupted)."""
    found: list[str] = []
    for model in (Plan, Apply):
        rows = await session.execute(
            select(model.id).where(
                model.log_archived.is_(False),
                model.log_length > 0,
                model.status.in_(("finished", "errored", "canceled")),
            )
        )
        found.extend(rows.scalars())
    return found
