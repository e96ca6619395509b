"""User rules: creating accounts and reading them."""

from __future__ import annotations

import functools
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.permissions import Action, authorize
from terrapod.access.principal import Principal
from terrapod.db.ids import new_id
from terrapod.errors import Conflict, Invalid, NotFound
from terrapod.users.models import User

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")

_hasher = PasswordHasher()


def validate_username(username: str) -> str:
    if not USERNAME_RE.match(username):
        raise Invalid(
            "username must be 1-100 characters of letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit",
            pointer="/data/attributes/username",
        )
    return username


def validate_email(email: str) -> str:
    if len(email) > 255 or not EMAIL_RE.match(email):
        raise Invalid(f"{email!r} is not an email address", pointer="/data/attributes/email")
    return email


async def create_user(
    session: AsyncSession,
    principal: Principal,
    *,
    username: str,
    email: str,
    is_admin: bool = False,
    is_service_account: bool = False,
    password: str | None = None,
) -> User:
    authorize(principal, Action.PLATFORM_ADMIN)
    validate_username(username)
    validate_email(email)
    taken = (
        await session.execute(
            select(func.count())
            .select_from(User)
            .where(
                (func.lower(User.username) == username.lower())
                | (func.lower(User.email) == email.lower())
            )
        )
    ).scalar_one()
    if taken:
        raise Conflict("a user with that username or email already exists")
    user = User(
        id=new_id("user"),
        username=username,
        email=email,
        is_admin=is_admin,
        is_service_account=is_service_account,
        password_hash=_hasher.hash(password) if password else None,
    )
    session.add(user)
    await session.flush()
    return user


MIN_PASSWORD_LENGTH = 12


async def set_password(
    session: AsyncSession, principal: Principal, user: User, password: str
) -> None:
    """Set a user's password (argon2id hash; the password itself is never stored)."""
    authorize(principal, Action.PLATFORM_ADMIN)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"passwords must be at least {MIN_PASSWORD_LENGTH} characters long")
    user.password_hash = _hasher.hash(password)
    await session.flush()


async def authenticate(session: AsyncSession, username: str, password: str) -> User | None:
    """The active user with this username (or email) and password, else None."""
    user = await find_user(session, username)
    if user is None or not user.is_active or not user.password_hash:
        # Spend the same time as a real check so timing does not reveal who exists.
        _password_matches(_dummy_hash(), password)
        return None
    return user if _password_matches(user.password_hash, password) else None


@functools.cache
def _dummy_hash() -> str:
    # Computed on first use: argon2 takes 64 MiB, which start-up need not pay.
    return _hasher.hash("terrapod-timing-equalizer")


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def get_user(session: AsyncSession, principal: Principal, user_id: str) -> User:
    authorize(principal, Action.USER_READ, user_id=user_id, what="user")
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    return user


async def find_user(session: AsyncSession, name_or_email: str) -> User | None:
    """Look a user up by username or email (CLI use; no authorization)."""
    return (
        await session.execute(
            select(User).where((User.username == name_or_email) | (User.email == name_or_email))
        )
    ).scalar_one_or_none()


async def count_users(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(User))).scalar_one()
