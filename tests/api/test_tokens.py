"""User and organization tokens: shown once, stored hashed, revocable."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from terrapod.auth.models import Token
from tests.factories import make_org, make_user


def token_body(**attrs: object) -> dict[str, object]:
    return {"data": {"type": "authentication-tokens", "attributes": attrs}}


async def _me(client: httpx.AsyncClient) -> str:
    return str((await client.get("/api/v2/account/details")).json()["data"]["id"])


async def test_account_details_names_the_user(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/api/v2/account/details")
    assert r.status_code == 200
    attrs = r.json()["data"]["attributes"]
    assert attrs["username"] == "admin" and attrs["email"] == "admin@localhost"


async def test_user_token_lifecycle(app: FastAPI, admin: httpx.AsyncClient) -> None:
    user_id = await _me(admin)
    r = await admin.post(
        f"/api/v2/users/{user_id}/authentication-tokens", json=token_body(description="ci")
    )
    assert r.status_code == 201
    created = r.json()["data"]
    secret = created["attributes"]["token"]
    assert secret and created["attributes"]["description"] == "ci"

    # The token works, and is never shown again.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="https://t",
        headers={"Authorization": f"Bearer {secret}"},
    ) as c:
        assert (await c.get("/api/v2/account/details")).status_code == 200
        shown = (await admin.get(f"/api/v2/authentication-tokens/{created['id']}")).json()["data"]
        assert shown["attributes"]["token"] is None
        listed = (await admin.get(f"/api/v2/users/{user_id}/authentication-tokens")).json()
        assert created["id"] in [t["id"] for t in listed["data"]]
        assert all(t["attributes"]["token"] is None for t in listed["data"])

        # Only the hash is stored.
        async with app.state.sessionmaker() as session:
            row = (
                await session.execute(select(Token).where(Token.id == created["id"]))
            ).scalar_one()
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in (row.description or "")

        # Revocation takes effect at once, cache or not.
        assert (
            await admin.delete(f"/api/v2/authentication-tokens/{created['id']}")
        ).status_code == 204
        assert (await c.get("/api/v2/account/details")).status_code == 401
        assert (
            await admin.get(f"/api/v2/authentication-tokens/{created['id']}")
        ).status_code == 404


async def test_expired_token_is_refused(app: FastAPI, admin: httpx.AsyncClient) -> None:
    user_id = await _me(admin)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    r = await admin.post(
        f"/api/v2/users/{user_id}/authentication-tokens",
        json=token_body(**{"expired-at": soon.isoformat().replace("+00:00", "Z")}),
    )
    assert r.status_code == 201
    token_id = r.json()["data"]["id"]
    async with app.state.sessionmaker() as session:
        row = await session.get(Token, token_id)
        assert row is not None
        row.expired_at = datetime.now(UTC) - timedelta(seconds=1)
        await session.commit()
    app.state.tokens.cache.clear()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="https://t",
        headers={"Authorization": f"Bearer {r.json()['data']['attributes']['token']}"},
    ) as c:
        assert (await c.get("/api/v2/account/details")).status_code == 401


async def test_past_expiry_and_bad_types_are_422(admin: httpx.AsyncClient) -> None:
    user_id = await _me(admin)
    for attrs, pointer in (
        ({"expired-at": "2001-01-01T00:00:00Z"}, "/data/attributes/expired-at"),
        ({"expired-at": "tomorrow"}, "/data/attributes/expired-at"),
        ({"description": 5}, "/data/attributes/description"),
    ):
        r = await admin.post(
            f"/api/v2/users/{user_id}/authentication-tokens", json=token_body(**attrs)
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["source"]["pointer"] == pointer


async def test_users_cannot_touch_each_others_tokens(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    alice = await make_user(app, organization="default")
    bob = await make_user(app, organization="default")
    async with alice.client(app) as c:
        assert (
            await c.get(f"/api/v2/users/{bob.user_id}/authentication-tokens")
        ).status_code == 404
        r = await c.post(f"/api/v2/users/{bob.user_id}/authentication-tokens", json=token_body())
        assert r.status_code == 404
        mine = await c.post(
            f"/api/v2/users/{alice.user_id}/authentication-tokens", json=token_body()
        )
        assert mine.status_code == 201
    async with bob.client(app) as c:
        tid = mine.json()["data"]["id"]
        assert (await c.get(f"/api/v2/authentication-tokens/{tid}")).status_code == 404
        assert (await c.delete(f"/api/v2/authentication-tokens/{tid}")).status_code == 404


async def test_organization_token_replaces_and_scopes(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    await make_org(app, "elsewhere")
    first = await admin.post(
        "/api/v2/organizations/default/authentication-token", json=token_body()
    )
    assert first.status_code == 201
    second = await admin.post("/api/v2/organizations/default/authentication-token")
    assert second.status_code == 201
    old, new = (x.json()["data"]["attributes"]["token"] for x in (first, second))
    shown = (await admin.get("/api/v2/organizations/default/authentication-token")).json()["data"]
    assert shown["id"] == second.json()["data"]["id"] and shown["attributes"]["token"] is None

    def client(token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="https://t",
            headers={"Authorization": f"Bearer {token}"},
        )

    async with client(old) as c:
        assert (await c.get("/api/v2/organizations/default")).status_code == 401
    async with client(new) as c:
        assert (await c.get("/api/v2/organizations/default")).status_code == 200
        assert (await c.get("/api/v2/organizations/elsewhere")).status_code == 404
        assert [o["id"] for o in (await c.get("/api/v2/organizations")).json()["data"]] == [
            "default"
        ]
        # An organization token cannot mint organization tokens or delete the organization.
        assert (
            await c.post("/api/v2/organizations/default/authentication-token")
        ).status_code == 403
        assert (await c.delete("/api/v2/organizations/default")).status_code == 403
        assert (await c.get("/api/v2/account/details")).status_code == 404
    assert (
        await admin.delete("/api/v2/organizations/default/authentication-token")
    ).status_code == 204
    async with client(new) as c:
        assert (await c.get("/api/v2/organizations/default")).status_code == 401
    assert (
        await admin.get("/api/v2/organizations/default/authentication-token")
    ).status_code == 404


async def test_audit_trails_token_type_is_refused_clearly(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/api/v2/organizations/default/authentication-token?token=audit-trails")
    assert r.status_code == 422
    assert "audit-trails" in r.json()["errors"][0]["detail"]
