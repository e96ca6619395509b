"""Token rules: issuing, listing, revoking, and resolving a presented token to a principal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from terrapod.access.permissions import Action, authorize
from terrapod.access.principal import Principal
from terrapod.auth.models import Token
from terrapod.auth.tokens import PrincipalCache, generate_token, hash_token
from terrapod.db.ids import new_id
from terrapod.errors import Invalid, NotFound
from terrapod.organizations.models import Membership, Organization
from terrapod.users.models import User

KIND_USER = "user"
KIND_ORGANIZATION = "organization"
# An agent token (terrapod.agentpools): joins agents to its pool (``agent_pool_id``; its
# ``organization_id`` is the pool's). Never an API credential: resolve() ignores it.
KIND_AGENT_POOL = "agent-pool"
# A running job's credential (terrapod.agentpools.runtokens); ``description`` holds its job id
# and phase ("job-… plan").
KIND_RUN = "run"


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token: the only moment the plaintext exists."""

    token: Token
    plaintext: str


async def token_page(
    session: AsyncSession, *where: ColumnElement[bool], offset: int, limit: int
) -> tuple[Sequence[Token], int]:
    """One page of the tokens matching ``where``, oldest first, and how many match."""
    total = (
        await session.execute(select(func.count()).select_from(Token).where(*where))
    ).scalar_one()
    rows = await session.execute(
        select(Token).where(*where).order_by(Token.created_at, Token.id).offset(offset).limit(limit)
    )
    return rows.scalars().all(), total


class TokenService:
    def __init__(self, cache: PrincipalCache) -> None:
        self.cache = cache

    # -- resolution (hot path) ----------------------------------------------------------

    async def resolve(self, session: AsyncSession, plaintext: str) -> Principal | None:
        """The principal for a presented token, or None when unknown, expired or disabled."""
        token_hash = hash_token(plaintext)
        cached = self.cache.get(token_hash)
        if cached is not None:
            return cached
        row = (
            await session.execute(
                select(Token, User)
                .outerjoin(User, User.id == Token.user_id)
                .where(Token.token_hash == token_hash)
            )
        ).first()
        if row is None:
            return None
        token, user = row
        principal: Principal | None
        if token.expired_at is not None and token.expired_at <= datetime.now(UTC):
            return None
        if token.kind == KIND_USER:
            if user is None or not user.is_active:
                return None
            memberships = await session.execute(
                select(Membership.organization_id, Membership.role).where(
                    Membership.user_id == user.id
                )
            )
            roles = {row[0]: row[1] for row in memberships}
            principal = Principal(
                kind="user",
                token_id=token.id,
                user_id=user.id,
                username=user.username,
                is_admin=user.is_admin,
                roles=roles,
                expires_at=token.expired_at,
            )
        elif token.kind == KIND_ORGANIZATION:
            principal = Principal(
                kind="organization",
                token_id=token.id,
                organization_id=token.organization_id,
                username=f"api-org-{token.organization_id}",
                expires_at=token.expired_at,
            )
        elif token.kind == KIND_RUN:
            principal = _run_principal(token)
        else:
            return None
        # A run token is not cached: it is retired the moment its job ends, and the state
        # routes it reaches must stop accepting it at once, on every replica.
        if principal is not None and token.kind != KIND_RUN:
            self.cache.put(token_hash, principal)
        return principal

    async def record_usage(self, session: AsyncSession, used: dict[str, datetime]) -> None:
        for token_id, at in used.items():
            await session.execute(update(Token).where(Token.id == token_id).values(last_used_at=at))

    # -- user tokens --------------------------------------------------------------------

    async def create_user_token(
        self,
        session: AsyncSession,
        principal: Principal,
        user_id: str,
        *,
        description: str | None = None,
        expired_at: datetime | None = None,
    ) -> IssuedToken:
        authorize(principal, Action.USER_MANAGE_TOKENS, user_id=user_id, what="user")
        if await session.get(User, user_id) is None:
            raise NotFound("user not found")
        _check_expiry(expired_at)
        return await self._issue(
            session,
            kind=KIND_USER,
            user_id=user_id,
            organization_id=None,
            description=description,
            expired_at=expired_at,
            created_by=principal.user_id,
        )

    async def list_user_tokens(
        self, session: AsyncSession, principal: Principal, user_id: str, *, offset: int, limit: int
    ) -> tuple[Sequence[Token], int]:
        authorize(principal, Action.USER_MANAGE_TOKENS, user_id=user_id, what="user")
        if await session.get(User, user_id) is None:
            raise NotFound("user not found")
        return await token_page(
            session, Token.user_id == user_id, Token.kind == KIND_USER, offset=offset, limit=limit
        )

    async def get_token(self, session: AsyncSession, principal: Principal, token_id: str) -> Token:
        """A user token (its user, or a platform admin) or an agent token (an owner of the
        pool's organization); other kinds are not served here."""
        token = await session.get(Token, token_id)
        if token is not None and token.kind == KIND_USER and token.user_id is not None:
            authorize(
                principal,
                Action.USER_MANAGE_TOKENS,
                user_id=token.user_id,
                what="authentication token",
            )
            return token
        if token is not None and token.kind == KIND_AGENT_POOL and token.organization_id:
            authorize(
                principal,
                Action.ORG_MANAGE_AGENT_POOLS,
                organization_id=token.organization_id,
                what="authentication token",
            )
            return token
        raise NotFound("authentication token not found")

    async def delete_token(
        self, session: AsyncSession, principal: Principal, token_id: str
    ) -> None:
        token = await self.get_token(session, principal, token_id)
        await session.delete(token)
        await session.flush()
        self.cache.clear()

    # -- organization tokens (one per organization; creating one replaces the old) -----

    async def create_org_token(
        self,
        session: AsyncSession,
        principal: Principal,
        organization: Organization,
        *,
        expired_at: datetime | None = None,
        description: str | None = None,
    ) -> IssuedToken:
        authorize(
            principal,
            Action.ORG_MANAGE_TOKENS,
            organization_id=organization.id,
            what="organization",
        )
        _check_expiry(expired_at)
        await session.execute(
            delete(Token).where(
                Token.organization_id == organization.id, Token.kind == KIND_ORGANIZATION
            )
        )
        self.cache.clear()
        return await self._issue(
            session,
            kind=KIND_ORGANIZATION,
            user_id=None,
            organization_id=organization.id,
            description=description,
            expired_at=expired_at,
            created_by=principal.user_id,
        )

    async def get_org_token(
        self, session: AsyncSession, principal: Principal, organization: Organization
    ) -> Token:
        authorize(
            principal,
            Action.ORG_MANAGE_TOKENS,
            organization_id=organization.id,
            what="organization",
        )
        token = (
            await session.execute(
                select(Token).where(
                    Token.organization_id == organization.id, Token.kind == KIND_ORGANIZATION
                )
            )
        ).scalar_one_or_none()
        if token is None:
            raise NotFound("organization has no authentication token")
        return token

    async def delete_org_token(
        self, session: AsyncSession, principal: Principal, organization: Organization
    ) -> None:
        token = await self.get_org_token(session, principal, organization)
        await session.delete(token)
        await session.flush()
        self.cache.clear()

    # -- internals ----------------------------------------------------------------------

    async def issue_with_plaintext(
        self, session: AsyncSession, *, user_id: str, plaintext: str, description: str
    ) -> Token:
        """Store a token whose value the operator chose (``TERRAPOD_ADMIN_TOKEN``)."""
        if len(plaintext) < 32:
            raise Invalid("a chosen API token must be at least 32 characters long")
        token = Token(
            id=new_id("at"),
            kind=KIND_USER,
            token_hash=hash_token(plaintext),
            user_id=user_id,
            description=description,
        )
        session.add(token)
        await session.flush()
        return token

    async def _issue(
        self,
        session: AsyncSession,
        *,
        kind: str,
        user_id: str | None,
        organization_id: str | None,
        description: str | None,
        expired_at: datetime | None,
        created_by: str | None,
    ) -> IssuedToken:
        plaintext = generate_token()
        token = Token(
            id=new_id("at"),
            kind=kind,
            token_hash=hash_token(plaintext),
            user_id=user_id,
            organization_id=organization_id,
            description=description,
            expired_at=expired_at,
            created_by_id=created_by,
        )
        session.add(token)
        await session.flush()
        return IssuedToken(token, plaintext)


def _run_principal(token: Token) -> Principal | None:
    """A run token's principal: its run, workspace and job (terrapod.agentpools.runtokens);
    the permission layer limits it to that workspace's state."""
    if token.run_id is None or token.workspace_id is None or not token.description:
        return None
    job_id, _, phase = token.description.partition(" ")
    return Principal(
        kind="run",
        token_id=token.id,
        username=f"run {token.run_id}",
        organization_id=token.organization_id,
        run_id=token.run_id,
        workspace_id=token.workspace_id,
        job_id=job_id,
        job_phase=phase or None,
        expires_at=token.expired_at,
    )


def _check_expiry(expired_at: datetime | None) -> None:
    if expired_at is not None and expired_at <= datetime.now(UTC):
        raise Invalid("expired-at must be in the future", pointer="/data/attributes/expired-at")
