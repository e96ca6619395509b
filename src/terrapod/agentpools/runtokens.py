"""Run tokens: the credential of one running job (docs/dev/agents.md, "Tables").

A run token is an ``auth_tokens`` row of kind ``run`` minted when an agent claims a job. It
carries the run, its workspace and organization, and, in ``description``, the job id and
phase it was minted for (``"job-… plan"``): the listener's job routes accept it for that job
only, and the ordinary API resolves it to a ``run`` principal that the permission layer limits
to its own workspace's state (``RUN_TOKEN_ACTIONS``); only an apply's token may create state
versions (a plan never writes state). It expires after the job timeout plus a margin.

When the job ends (finished, errored, canceled, handed back, failed by the sweep, or its run
ended by a person) :func:`terrapod.runs.queue.retire_run_tokens` turns it into kind
``run-ended``: the API no longer resolves it, and only the job's final PATCH still accepts it
for a short grace, so an agent that lost the answer can repeat its report. Housekeeping
deletes retired and expired tokens. Only the SHA-256 of a token is stored, so a job answered
again to a retried ``runs/next`` poll gets a new token and the earlier one is deleted
(:func:`revoke_for_job`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.auth.models import Token
from terrapod.auth.tokens import generate_token, hash_token
from terrapod.db.ids import new_id
from terrapod.runs.queue import RETIRED_RUN_TOKEN_KIND, RUN_TOKEN_KIND


@dataclass(frozen=True)
class MintedRunToken:
    token_id: str
    plaintext: str
    expires_at: datetime


@dataclass(frozen=True)
class JobToken:
    """What a presented run token stands for, on the job routes."""

    token_id: str
    run_id: str
    job_id: str
    workspace_id: str
    retired: bool
    """The job has ended: the token only acknowledges a repeated final report."""


async def mint(
    session: AsyncSession,
    *,
    run_id: str,
    job_id: str,
    phase: str,
    workspace_id: str,
    organization_id: str,
    lifetime: timedelta,
) -> MintedRunToken:
    """A new run token for ``job_id`` (claimed just now), valid for ``lifetime``."""
    plaintext = generate_token()
    expires = datetime.now(UTC) + lifetime
    token = Token(
        id=new_id("at"),
        kind=RUN_TOKEN_KIND,
        token_hash=hash_token(plaintext),
        organization_id=organization_id,
        run_id=run_id,
        workspace_id=workspace_id,
        description=f"{job_id} {phase}",
        expired_at=expires,
    )
    session.add(token)
    await session.flush()
    return MintedRunToken(token.id, plaintext, expires)


async def revoke_for_job(session: AsyncSession, run_id: str, job_id: str) -> None:
    """Delete the live run token(s) of ``job_id``: a new one replaces them (the job was
    answered again after a lost ``runs/next`` answer). Deleted, not retired: nobody has
    reported with them, so nothing may use them, not even a final PATCH (401)."""
    await session.execute(
        delete(Token)
        .where(
            Token.run_id == run_id,
            Token.kind == RUN_TOKEN_KIND,
            # A run token's description is its job id, a space and its phase (see mint).
            Token.description.startswith(f"{job_id} ", autoescape=True),
        )
        .execution_options(synchronize_session=False)
    )


async def lookup(session: AsyncSession, plaintext: str) -> JobToken | None:
    """The job a presented run token (current or retired within its grace) belongs to;
    None when it is no run token, or it has expired."""
    token = (
        await session.execute(
            select(Token).where(
                Token.token_hash == hash_token(plaintext),
                Token.kind.in_((RUN_TOKEN_KIND, RETIRED_RUN_TOKEN_KIND)),
            )
        )
    ).scalar_one_or_none()
    if token is None or token.run_id is None or token.workspace_id is None:
        return None
    job_id = (token.description or "").partition(" ")[0]
    if not job_id:
        return None
    if token.expired_at is not None and token.expired_at <= datetime.now(UTC):
        return None
    return JobToken(
        token_id=token.id,
        run_id=token.run_id,
        job_id=job_id,
        workspace_id=token.workspace_id,
        retired=token.kind == RETIRED_RUN_TOKEN_KIND,
    )
