"""Who is calling: the principal a request's token resolves to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

# "run": a running job's run token (auth_tokens kind "run"): run_id, workspace_id, job_id
# and organization_id are set, and the permission layer limits it to its workspace's state.
PrincipalKind = Literal["user", "organization", "system", "run"]


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    token_id: str | None
    user_id: str | None = None
    username: str | None = None
    # For organization tokens: the one organization the token acts for.
    organization_id: str | None = None
    is_admin: bool = False
    # organization id -> role ("owner" | "member") for user principals.
    roles: Mapping[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None
    # For run tokens: the run, and the one workspace the token reaches (also set by the
    # built-in agent's system principal that persists state for a run).
    run_id: str | None = None
    workspace_id: str | None = None
    # For run tokens: the one job (jobs.id) the token was minted for, and its phase
    # ("plan" | "apply"): only an apply's token may write state.
    job_id: str | None = None
    job_phase: str | None = None

    @property
    def is_user(self) -> bool:
        return self.kind == "user"


# Used by the CLI's admin commands and bootstrap, which act with full rights and no token.
SYSTEM = Principal(kind="system", token_id=None, username="system", is_admin=True)


class PrincipalResolver(Protocol):
    """Turns a presented bearer token into a principal (implemented by the auth domain)."""

    async def resolve(self, session: AsyncSession, plaintext: str) -> Principal | None: ...
