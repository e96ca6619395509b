"""First start: an organization ``default`` and an admin who owns it, with an API token.

Runs on every start but only acts on a database with no users, so deleting the default
organization later is respected. Safe when several replicas start at once: the loser of the
race sees the unique-constraint error and finds the work done.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from terrapod.access.principal import SYSTEM
from terrapod.auth.service import TokenService
from terrapod.config import Settings
from terrapod.db.engine import WRITE_OPTION
from terrapod.organizations import service as organizations
from terrapod.users import service as users


@dataclass(frozen=True)
class BootstrapResult:
    created: bool
    admin_username: str | None = None
    organization: str | None = None
    # Set only when Terrapod generated the token: it must be shown to the operator once.
    generated_token: str | None = None


async def bootstrap(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], tokens: TokenService
) -> BootstrapResult:
    async with sessionmaker() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        if await users.count_users(session) > 0:
            return BootstrapResult(created=False)
        try:
            admin = await users.create_user(
                session,
                SYSTEM,
                username=settings.admin_username,
                email=settings.admin_email,
                is_admin=True,
            )
            await organizations.create(
                session,
                SYSTEM,
                {"name": settings.default_organization, "email": settings.admin_email},
                owner_id=admin.id,
            )
            generated = None
            if settings.admin_token is not None:
                await tokens.issue_with_plaintext(
                    session,
                    user_id=admin.id,
                    plaintext=settings.admin_token.get_secret_value(),
                    description="bootstrap admin token (TERRAPOD_ADMIN_TOKEN)",
                )
            else:
                issued = await tokens.create_user_token(
                    session, SYSTEM, admin.id, description="bootstrap admin token"
                )
                generated = issued.plaintext
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return BootstrapResult(created=False)
    return BootstrapResult(
        created=True,
        admin_username=admin.username,
        organization=settings.default_organization,
        generated_token=generated,
    )
