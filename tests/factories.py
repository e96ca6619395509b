"""Test data made through the services (never raw inserts), one helper per kind."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from terrapod.access.principal import SYSTEM
from terrapod.db.engine import WRITE_OPTION
from terrapod.organizations import service as organizations
from terrapod.users import service as users


@dataclass
class Actor:
    user_id: str
    username: str
    token: str

    def client(self, app: FastAPI) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="https://terrapod.test",
            headers={"Authorization": f"Bearer {self.token}"},
        )


async def make_user(
    app: FastAPI, *, organization: str | None = None, role: str = "member", admin: bool = False
) -> Actor:
    name = f"user-{secrets.token_hex(4)}"
    async with app.state.sessionmaker() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        user = await users.create_user(
            session, SYSTEM, username=name, email=f"{name}@example.test", is_admin=admin
        )
        if organization is not None:
            org = await organizations.get_by_name(session, SYSTEM, organization)
            await organizations.add_member(session, SYSTEM, org, user.id, role)
        issued = await app.state.tokens.create_user_token(session, SYSTEM, user.id)
        await session.commit()
    return Actor(user.id, name, issued.plaintext)


async def make_org(app: FastAPI, name: str | None = None) -> str:
    name = name or f"org-{secrets.token_hex(4)}"
    async with app.state.sessionmaker() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        await organizations.create(session, SYSTEM, {"name": name, "email": f"{name}@example.test"})
        await session.commit()
    return name
